//! Where sessions live, checked on the stores themselves with `SESS.GET`:
//! R=1 gives disjoint subsets whose union is every session (C4), R=2 puts
//! every session on exactly two stores (C5). What happens when a store is
//! killed (C9) is in `session_backends.rs`, on both store backends.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::net::SocketAddr;

use sticky_test_support::{holders, Acked, Browser, Cluster, Sticky, StoreBackend};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// `n` new sessions on `web` ([`sticky_test_support::create_sessions`]), each
/// with its own id.
fn create_sessions(web: SocketAddr, n: usize) -> (Vec<Browser>, Acked) {
    let (browsers, acked) = sticky_test_support::create_sessions(web, n);
    assert_eq!(acked.len(), n, "every session has its own id");
    (browsers, acked)
}

#[test]
fn r1_stores_hold_disjoint_subsets_covering_every_session() {
    let c = Cluster::start(STICKY, 3, &["ws1"], |cfg| {
        cfg.replicas(1).session("store_timeout_ms", "3000")
    });
    let (_browsers, acked) = create_sessions(c.web("ws1").addr(), 60);
    let addrs = c.store_addrs();
    let on = holders(&addrs, &acked, StoreBackend::Sticky);
    let mut per_store = [0usize; 3];
    for (id, stores) in &on {
        assert_eq!(
            stores.len(),
            1,
            "session {id} must be on exactly one store: {stores:?}"
        );
        per_store[stores[0]] += 1;
    }
    // Disjoint (each on one store) and covering (all 60 found); every store
    // holds a share (the chance that one of 3 gets none of 60 is ~1e-10).
    assert_eq!(per_store.iter().sum::<usize>(), 60);
    assert!(per_store.iter().all(|&n| n > 0), "subsets {per_store:?}");
    // And the stores hold nothing else of these sessions.
    for (i, addr) in addrs.iter().enumerate() {
        let ids: Vec<String> = acked.keys().cloned().collect();
        let held = sticky_test_support::store_sessions(*addr, &ids);
        assert_eq!(
            held.len(),
            per_store[i],
            "s{} holds copies it should not",
            i + 1
        );
    }
}

#[test]
fn r2_every_session_is_on_exactly_two_stores() {
    let c = Cluster::start(STICKY, 3, &["ws1"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let (_browsers, acked) = create_sessions(c.web("ws1").addr(), 60);
    let addrs = c.store_addrs();
    let on = holders(&addrs, &acked, StoreBackend::Sticky);
    let mut pairs = HashSet::new();
    for (id, stores) in &on {
        assert_eq!(
            stores.len(),
            2,
            "session {id} must be on exactly two stores: {stores:?}"
        );
        pairs.insert(stores.clone());
    }
    // Every store takes part: all three pairs occur (chance of missing
    // one of 3 pairs over 60 sessions is ~1e-10).
    assert_eq!(pairs.len(), 3, "pairs used: {pairs:?}");
    let ids: Vec<String> = acked.keys().cloned().collect();
    let total: usize = addrs
        .iter()
        .map(|a| sticky_test_support::store_sessions(*a, &ids).len())
        .sum();
    assert_eq!(total, 120, "exactly two copies per session, no more");
}
