//! Async replication mode, smoke test: answers leave before the stores
//! have the change, and every change reaches its replicas within a
//! deadline; after that, a `kill -9` of the host loses nothing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use sticky_test_support::{copies_by_store, wait_until, Browser, Cluster, Stamp, Sticky, DEADLINE};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

#[test]
fn async_writes_reach_the_stores_within_a_deadline() {
    let mut c = Cluster::start(STICKY, 3, &["ws1", "ws2"], |cfg| {
        cfg.replicas(2)
            .mode("async")
            .session("store_timeout_ms", "5000")
    });
    let (ws1, ws2) = (c.web("ws1").addr(), c.web("ws2").addr());
    let mut browsers: Vec<Browser> = (0..20).map(|_| Browser::new()).collect();
    let mut acked: HashMap<String, (u64, Stamp)> = HashMap::new();
    for round in 1..=5 {
        for b in &mut browsers {
            let a = b.increment(ws1);
            assert_eq!(a.value, round, "{a:?}");
            acked.insert(b.id(), (a.value, a.stamp));
        }
    }
    let ids: Vec<String> = acked.keys().cloned().collect();
    let addrs = c.store_addrs();
    wait_until(
        DEADLINE,
        "every session's newest version is on 2 stores",
        || {
            let copies = copies_by_store(&addrs, &ids);
            ids.iter().all(|id| {
                let (value, stamp) = acked[id];
                copies[id]
                    .iter()
                    .flatten()
                    .filter(|c| c.live && c.stamp == stamp && c.counter() == value)
                    .count()
                    == 2
            })
        },
    );

    c.web_mut("ws1").kill9();
    for b in &mut browsers {
        let a = b.increment(ws2);
        assert_eq!((a.value, a.source.as_str()), (6, "store"), "{a:?}");
    }
}
