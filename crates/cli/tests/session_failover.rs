//! Web server failures with real processes: a session written on ws1
//! continues on ws2 after ws1 is killed with `kill -9` (C6, C7, invariant
//! 1), and a paused ws1 whose session was taken over never serves its old
//! copy once resumed (fencing, invariants 2-4).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;
mod support;

use std::time::{Duration, Instant};

use cluster_support::{
    copies_by_store, old_hosts_late_write_is_refused, Browser, Cluster, ClusterConfig, Stamp,
    StoredCopy, WebProcess,
};
use support::{free_port, wait_until, StoreProcess, DEADLINE};

/// 5 increments on ws1, `kill -9` ws1, the same cookie on ws2 continues at 6.
fn counter_continues_on_ws2_after_kill9(replicas: usize) {
    let mut c = Cluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.replicas(replicas).session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1").addr(), c.web("ws2").addr());
    let mut b = Browser::new();
    let mut last = None;
    for i in 1..=5 {
        let a = b.increment(ws1);
        assert_eq!(a.value, i, "{a:?}");
        assert_eq!(a.server, "ws1");
        assert_eq!(a.source, if i == 1 { "new" } else { "cache" }, "{a:?}");
        last = Some(a);
    }
    let last = last.unwrap();
    let cookie = b.cookie.clone().expect("ws1 set a session cookie");
    let id = b.id();

    // Sync mode: the 5th answer left ws1 only after `replicas` stores had it.
    let copies = &copies_by_store(&c.store_addrs(), std::slice::from_ref(&id))[&id];
    let holding: Vec<_> = copies
        .iter()
        .flatten()
        .filter(|s| s.live && s.stamp == last.stamp)
        .collect();
    assert_eq!(
        holding.len(),
        replicas,
        "copies of the acknowledged version: {copies:?}"
    );
    for copy in holding {
        assert_eq!(copy.counter(), 5);
        assert_eq!(copy.owner, "ws1");
    }

    let status = c.web_mut("ws1").kill9();
    assert!(!status.success(), "ws1 was killed: {status}");

    let a = b.increment(ws2);
    assert_eq!(
        (a.value, a.server.as_str(), a.source.as_str()),
        (6, "ws2", "store"),
        "ws2 continues from the last acknowledged value: {a:?}"
    );
    assert!(
        a.stamp.generation > last.stamp.generation,
        "a takeover claims a new generation: {} after {}",
        a.stamp,
        last.stamp
    );
    assert_eq!(
        b.cookie.as_deref(),
        Some(cookie.as_str()),
        "the session keeps its id"
    );
    let a2 = b.counter(ws2);
    assert_eq!((a2.value, a2.source.as_str()), (6, "cache"), "{a2:?}");

    // The stores hold ws2's version on `replicas` of them.
    let copies = &copies_by_store(&c.store_addrs(), std::slice::from_ref(&id))[&id];
    let holding = copies
        .iter()
        .flatten()
        .filter(|s| s.live && s.stamp == a.stamp && s.counter() == 6 && s.owner == "ws2")
        .count();
    assert_eq!(holding, replicas, "copies of ws2's version: {copies:?}");
}

#[test]
fn r1_counter_continues_on_another_server_after_kill9() {
    counter_continues_on_ws2_after_kill9(1);
}

#[test]
fn r2_counter_continues_on_another_server_after_kill9() {
    counter_continues_on_ws2_after_kill9(2);
}

#[test]
fn an_old_hosts_late_write_is_refused_and_the_new_hosts_value_kept() {
    let c = Cluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1").addr(), c.web("ws2").addr());
    old_hosts_late_write_is_refused(ws1, ws2, &c.store_addrs(), copies_by_store);
}

#[test]
fn paused_server_never_serves_its_old_copy_after_a_takeover() {
    const LEASE: Duration = Duration::from_millis(1000);
    let c = Cluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.session("lease_ms", "1000")
            .session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1"), c.web("ws2"));
    // ws2 is kept healthy, as a director would; ws1's lease is the subject.
    let _ws2_lease = ws2.heartbeat();
    let mut b = Browser::new();
    for i in 1..=3 {
        assert_eq!(b.increment(ws1.addr()).value, i);
    }
    let id = b.id();

    // Arm ws1's lease with an authenticated health check, then freeze ws1.
    let epoch_before = ws1.health()["epoch"].as_u64().expect("epoch");
    let armed = Instant::now();
    ws1.sigstop();

    // The session moves to ws2 and changes there.
    let a = b.increment(ws2.addr());
    assert_eq!((a.value, a.source.as_str()), (4, "store"), "{a:?}");
    let a = b.increment(ws2.addr());
    assert_eq!(a.value, 5, "{a:?}");
    let (moved_value, moved_stamp) = (a.value, a.stamp);

    // Wait out ws1's lease (no health check reaches it), then resume it.
    wait_until(DEADLINE, "ws1's lease has run out", || {
        armed.elapsed() > LEASE * 2
    });
    ws1.sigcont();

    // ws1 must never answer its old copy (3): ws2's value, or an error.
    let mut newest: (u64, Stamp) = (moved_value, moved_stamp);
    let r = b.get(ws1.addr(), "/api/counter");
    if r.status == 200 {
        let a = cluster_support::Answer::from(&r);
        assert_eq!(a.value, moved_value, "ws1 served a stale copy: {a:?}");
        assert_eq!(a.source, "store", "ws1 must re-load the session: {a:?}");
        assert!(a.stamp > moved_stamp, "ws1 claimed the session anew: {a:?}");
        newest = (a.value, a.stamp);
    } else {
        assert!(r.status >= 400, "{r:?}");
    }
    // A write through ws1 builds on ws2's value, or fails.
    let r = b.post(ws1.addr(), "/api/counter", None);
    if r.status == 200 {
        let a = cluster_support::Answer::from(&r);
        assert_eq!(
            a.value,
            moved_value + 1,
            "ws1 wrote on top of a stale copy: {a:?}"
        );
        newest = (a.value, a.stamp);
    } else {
        assert!(r.status >= 400, "{r:?}");
    }

    let epoch_after = ws1.health()["epoch"].as_u64().expect("epoch");
    assert_ne!(
        epoch_before, epoch_after,
        "ws1 fenced itself when its lease ran out"
    );

    // The stores keep ws2's value (or ws1's later change on top of it):
    // never the old one, never lower.
    let copies = &copies_by_store(&c.store_addrs(), std::slice::from_ref(&id))[&id];
    let best = copies
        .iter()
        .flatten()
        .filter(|s| s.live)
        .max_by_key(|s| s.stamp)
        .expect("a live copy");
    assert_eq!(
        (best.counter(), best.stamp),
        newest,
        "newest stored copy: {copies:?}"
    );
    for copy in copies.iter().flatten() {
        if copy.stamp >= moved_stamp {
            assert!(
                copy.counter() >= moved_value,
                "a copy went back: {copies:?}"
            );
        }
    }
    let at_newest = copies
        .iter()
        .flatten()
        .filter(|s| s.stamp == newest.1)
        .count();
    assert_eq!(
        at_newest, 2,
        "the newest version is on both replicas: {copies:?}"
    );
}

#[test]
fn a_request_routed_for_an_old_epoch_is_refused_untouched() {
    let c = Cluster::start(2, &["ws1"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let ws1 = c.web("ws1");
    let mut b = Browser::new();
    b.increment(ws1.addr());
    assert_eq!(b.increment(ws1.addr()).value, 2);
    let cookie = format!("sticky.sid={}", b.cookie.clone().expect("a session cookie"));
    let routed = |epoch: u64| {
        let e = epoch.to_string();
        cluster_support::http_request(
            ws1.addr(),
            "GET",
            "/api/counter",
            &[("Cookie", &cookie), ("sticky-epoch", &e)],
            None,
        )
        .expect("GET /api/counter")
    };
    let old = ws1.health()["epoch"].as_u64().expect("epoch");
    let a = cluster_support::Answer::from(&routed(old));
    assert_eq!((a.value, a.source.as_str()), (2, "cache"), "{a:?}");

    // ws1 fences itself (as on a lease expiry); the director still knows
    // the old epoch.
    let new = ws1.fence()["epoch"].as_u64().expect("epoch");
    assert_ne!(old, new);
    let r = routed(old);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.header("sticky-fenced"), Some(new.to_string().as_str()));
    assert_eq!(
        ws1.health()["sessions"].as_u64(),
        Some(0),
        "the refused request must not load the session"
    );
    // Routed for the new epoch: loaded from the stores.
    let a = cluster_support::Answer::from(&routed(new));
    assert_eq!((a.value, a.source.as_str()), (2, "store"), "{a:?}");
    // Without the header (no director in front), as before.
    assert_eq!(b.counter(ws1.addr()).value, 2);
    ws1.assert_no_panic();
}

/// A store that already holds a later version of the same host tenure (a
/// copy of ours that was retried or reordered, e.g. an async copy that
/// timed out on a paused store and was applied when it resumed) is not a
/// move: the write counts as stored there, the session stays cached and
/// the change is acknowledged. Found by `sticky chaos` in async mode, where
/// treating it as a move dropped the cache and lost acknowledged writes.
#[test]
fn a_store_holding_a_later_copy_of_our_own_is_not_a_move() {
    let c = Cluster::start(2, &["ws1"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let ws1 = c.web("ws1").addr();
    let mut b = Browser::new();
    b.increment(ws1);
    let a = b.increment(ws1);
    assert_eq!(a.value, 2);
    let id = b.id();
    // On one store, the same generation with a higher seq, same data.
    let s1 = c.store_addrs()[0];
    let copy = cluster_support::sess_get(s1, &id).expect("s1 holds the session");
    let ahead = (a.stamp.seq + 10).to_string();
    let generation = a.stamp.generation.to_string();
    let mut conn = support::RespConn::connect(s1).unwrap();
    let reply = conn
        .cmd(&[
            b"SESS.PUT",
            id.as_bytes(),
            generation.as_bytes(),
            ahead.as_bytes(),
            b"ws1",
            b"60000",
            &copy.payload,
        ])
        .unwrap();
    assert!(format!("{reply:?}").contains("OK"), "{reply:?}");

    let a = b.increment(ws1);
    assert_eq!((a.value, a.source.as_str()), (3, "cache"), "{a:?}");
    let a = b.counter(ws1);
    assert_eq!((a.value, a.source.as_str()), (3, "cache"), "{a:?}");
    // A higher generation is still a move: 409, and the copy is dropped.
    let claimed = (a.stamp.generation + 1).to_string();
    let reply = conn
        .cmd(&[
            b"SESS.PUT",
            id.as_bytes(),
            claimed.as_bytes(),
            b"1",
            b"ws9",
            b"60000",
            &copy.payload,
        ])
        .unwrap();
    assert!(format!("{reply:?}").contains("OK"), "{reply:?}");
    let r = b.post(ws1, "/api/counter", None);
    assert_eq!(r.status, 409, "{r:?}");
}

/// Invariant 1 against a takeover that sees too few stores (found by
/// chaos): ws2 can reach only the store that holds no copy of the session
/// (R=2 of 3; the other two are, in its cluster file, at addresses where
/// nothing listens, as they would be behind a partition). The highest copy
/// it can see is none at all, which it must not take for "no session": it
/// answers 503 and changes nothing. Once it reaches the stores, the same
/// cookie continues where ws1 left off.
#[test]
fn a_takeover_that_reaches_too_few_stores_refuses_rather_than_lose_the_session() {
    let stores: Vec<StoreProcess> = (0..3).map(|_| StoreProcess::start(&[])).collect();
    let addrs: Vec<_> = stores.iter().map(StoreProcess::addr).collect();
    let cfg = ClusterConfig::new(&addrs, &["ws1", "ws2"]).write();
    let mut ws1 = WebProcess::start(cfg.path(), "ws1");
    let mut b = Browser::new();
    for i in 1..=3 {
        assert_eq!(b.increment(ws1.addr()).value, i);
    }
    let id = b.id();
    let copies = copies_by_store(&addrs, std::slice::from_ref(&id))[&id].clone();
    let holders: Vec<usize> = (0..addrs.len()).filter(|&i| copies[i].is_some()).collect();
    assert_eq!(holders.len(), 2, "R=2: {copies:?}");
    assert!(ws1.kill9().code().is_none(), "ws1 was killed");

    let mut partial = cfg.clone();
    for &i in &holders {
        let nowhere = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
        partial = partial.store_addr(&format!("s{}", i + 1), nowhere);
    }
    let partial = partial.write();
    let mut ws2 = WebProcess::start(partial.path(), "ws2");
    for _ in 0..3 {
        let r = b.get(ws2.addr(), "/api/counter");
        assert_eq!(
            r.status,
            503,
            "a takeover from 1 of 3 stores must be refused: {}",
            r.text()
        );
    }
    assert!(
        ws2.log_text().contains("takeover refused"),
        "ws2 says why:\n{}",
        ws2.log_tail(20)
    );
    // Nothing was claimed or created anywhere.
    let after = copies_by_store(&addrs, std::slice::from_ref(&id))[&id].clone();
    let shape = |c: &[Option<StoredCopy>]| -> Vec<_> {
        c.iter()
            .map(|c| {
                c.as_ref()
                    .map(|c| (c.live, c.stamp, c.owner.clone(), c.payload.clone()))
            })
            .collect()
    };
    assert_eq!(
        shape(&after),
        shape(&copies),
        "the stores' copies are untouched"
    );

    // ws2 again, now reaching every store: the session continues at 4.
    assert!(ws2.kill9().code().is_none(), "ws2 was killed");
    let ws2 = WebProcess::start(cfg.path(), "ws2");
    let a = b.increment(ws2.addr());
    assert_eq!(
        (a.value, a.server.as_str(), a.source.as_str()),
        (4, "ws2", "store"),
        "{a:?}"
    );
}
