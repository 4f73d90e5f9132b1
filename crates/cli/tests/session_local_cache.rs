//! Local speed (C1, invariant 5): a request whose session is in the web
//! server's cache makes no store round trip, as the stores' own command
//! counters (`INFO commandstats`) show.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use sticky_test_support::{sess_command_calls, Browser, Cluster, Sticky};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

fn all_calls(c: &Cluster) -> Vec<BTreeMap<String, u64>> {
    c.store_addrs()
        .into_iter()
        .map(sess_command_calls)
        .collect()
}

#[test]
fn cache_hits_make_zero_store_round_trips() {
    let c = Cluster::start(STICKY, 3, &["ws1"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "5000")
    });
    let ws1 = c.web("ws1").addr();
    let mut b = Browser::new();
    b.increment(ws1);
    b.post(
        ws1,
        "/api/cart/items",
        Some(&serde_json::json!({"item": "tea"})),
    )
    .json_ok();
    let written = b.increment(ws1);
    assert_eq!(written.value, 2);

    let before = all_calls(&c);
    // The writes above did reach the stores (the counters work).
    let puts: u64 = before.iter().map(|m| m["sess.put"]).sum();
    assert_eq!(puts, 6, "3 writes on 2 replicas each: {before:?}");

    for _ in 0..50 {
        let a = b.counter(ws1);
        assert_eq!(
            (a.value, a.source.as_str(), a.stamp),
            (2, "cache", written.stamp),
            "{a:?}"
        );
    }
    for _ in 0..10 {
        let a = sticky_test_support::Answer::from(&b.get(ws1, "/api/cart"));
        assert_eq!(
            (a.items(), a.source.as_str()),
            (vec!["tea".to_owned()], "cache")
        );
    }
    let after = all_calls(&c);
    assert_eq!(before, after, "cache hits made store round trips");
}

#[test]
fn concurrent_requests_of_one_session_lose_no_change() {
    let c = Cluster::start(STICKY, 2, &["ws1"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "5000")
    });
    let ws1 = c.web("ws1").addr();
    let mut b = Browser::new();
    assert_eq!(b.increment(ws1).value, 1);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let mut b = b.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    b.increment(ws1);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let a = b.counter(ws1);
    assert_eq!((a.value, a.source.as_str()), (41, "cache"), "{a:?}");
    let id = b.id();
    for addr in c.store_addrs() {
        let copy =
            sticky_test_support::sess_get(addr, &id).expect("a copy on each of the 2 stores");
        assert_eq!((copy.stamp, copy.counter()), (a.stamp, 41));
    }
}
