//! Where sessions live, checked on the stores themselves with `SESS.GET`:
//! R=1 gives disjoint subsets whose union is every session (C4), R=2 puts
//! every session on exactly two stores (C5); with R=2, a store killed with
//! `kill -9` loses nothing, every session is back on two live stores within
//! a bounded time, and a restarted store is brought up to date (C9).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;
mod support;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use cluster_support::{assert_no_newer_copy, copies_by_store, holders, Acked, Browser, Cluster};
use support::{wait_until, StoreProcess};

/// Re-copying after a store failure (detection by the 500 ms pinger, then
/// a rate-limited background scan) must finish within this.
const RECOPY_DEADLINE: Duration = Duration::from_secs(40);

/// `n` new sessions on `web` ([`cluster_support::create_sessions`]), each
/// with its own id.
fn create_sessions(web: SocketAddr, n: usize) -> (Vec<Browser>, Acked) {
    let (browsers, acked) = cluster_support::create_sessions(web, n);
    assert_eq!(acked.len(), n, "every session has its own id");
    (browsers, acked)
}

#[test]
fn r1_stores_hold_disjoint_subsets_covering_every_session() {
    let c = Cluster::start(3, &["ws1"], |cfg| {
        cfg.replicas(1).session("store_timeout_ms", "3000")
    });
    let (_browsers, acked) = create_sessions(c.web("ws1").addr(), 60);
    let addrs = c.store_addrs();
    let on = holders(&addrs, &acked, copies_by_store);
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
        let held = cluster_support::store_sessions(*addr, &ids);
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
    let c = Cluster::start(3, &["ws1"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let (_browsers, acked) = create_sessions(c.web("ws1").addr(), 60);
    let addrs = c.store_addrs();
    let on = holders(&addrs, &acked, copies_by_store);
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
        .map(|a| cluster_support::store_sessions(*a, &ids).len())
        .sum();
    assert_eq!(total, 120, "exactly two copies per session, no more");
}

#[test]
fn r2_a_killed_store_loses_nothing_and_a_restarted_one_is_brought_up_to_date() {
    let mut c = Cluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let ws1 = c.web("ws1").addr();
    let ws2 = c.web("ws2").addr();
    let (mut browsers, mut acked) = create_sessions(ws1, 50);
    let addrs = c.store_addrs();
    let before = holders(&addrs, &acked, copies_by_store);
    for (id, on) in &before {
        assert_eq!(
            on.len(),
            2,
            "session {id} on two stores before the failure: {on:?}"
        );
    }
    // The sessions whose replica set includes s2.
    let on_s2: Vec<String> = before
        .iter()
        .filter(|(_, on)| on.contains(&1))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!on_s2.is_empty());

    let s2_port = c.stores[1].port();
    c.stores[1].kill9();

    // Nothing is lost: every session still answers its value on ws1, and
    // half of them are changed (written to the live stores in sync mode);
    // the other half must be re-copied in the background.
    for (i, b) in browsers.iter_mut().enumerate() {
        let id = b.id();
        if i % 2 == 0 {
            let a = b.increment(ws1);
            assert_eq!(a.value, acked[&id].0 + 1, "{a:?}");
            assert_eq!(a.source, "cache");
            acked.insert(id, (a.value, a.stamp));
        } else {
            let a = b.counter(ws1);
            assert_eq!((a.value, a.stamp), acked[&id], "{a:?}");
        }
    }

    // Within a bounded time every session is on both live stores again.
    let live = [addrs[0], addrs[2]];
    wait_until(
        RECOPY_DEADLINE,
        "every session is on the 2 live stores",
        || {
            holders(&live, &acked, copies_by_store)
                .values()
                .all(|on| on.len() == 2)
        },
    );
    assert_no_newer_copy(&live, &acked, copies_by_store);

    // s2 comes back empty on the same port; the sessions placed on it are
    // copied back to it.
    c.stores[1] = StoreProcess::start_on_port(s2_port, &[]);
    let s2_acked: Acked = on_s2.iter().map(|id| (id.clone(), acked[id])).collect();
    wait_until(
        RECOPY_DEADLINE,
        "the restarted s2 holds its sessions again",
        || {
            holders(&[addrs[1]], &s2_acked, copies_by_store)
                .values()
                .all(|on| on.len() == 1)
        },
    );
    assert_no_newer_copy(&addrs, &acked, copies_by_store);

    // End to end: with ws1 gone, ws2 reads every session from the stores
    // at its last acknowledged value.
    c.web_mut("ws1").kill9();
    for b in &mut browsers {
        let id = b.id();
        let a = b.counter(ws2);
        assert_eq!(
            (a.value, a.source.as_str()),
            (acked[&id].0, "store"),
            "{a:?}"
        );
    }
}

#[test]
fn r2_a_store_and_the_host_killed_together_lose_nothing() {
    // No time for any re-copy: the surviving replica alone carries each
    // session of the killed store (invariant 1).
    let mut c = Cluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let ws1 = c.web("ws1").addr();
    let ws2 = c.web("ws2").addr();
    let (mut browsers, acked) = create_sessions(ws1, 30);
    c.stores[1].kill9();
    c.web_mut("ws1").kill9();
    for b in &mut browsers {
        let id = b.id();
        let a = b.increment(ws2);
        assert_eq!(
            (a.value, a.source.as_str()),
            (acked[&id].0 + 1, "store"),
            "{a:?}"
        );
    }
}
