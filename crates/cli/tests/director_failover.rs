//! Failover through a real `sticky director`: `kill -9` of a backend under
//! load (to the other servers, or to the standby), fencing of a server
//! that comes back, evacuation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use sticky_test_support::director::stand_in::{STALLED_FIRST, STALLED_REST};
use sticky_test_support::director::{
    cluster_file, metric, BackendOptions, BackendProcess, DirectorProcess, Load, ENDED_ON_DOWN,
};
use sticky_test_support::{temp_dir, wait_until, HttpClient, Response, Sticky, DEADLINE};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Not a test of its own: the backend process the other tests start
/// (returns at once in a normal run).
#[test]
fn director_test_backend() {
    sticky_test_support::director::stand_in::run_if_requested();
}

const CLIENTS: usize = 30;

/// Kills ws1 under load; returns, for each of ws1's clients, the server
/// it ended on. Asserts that no request failed and that each moved client
/// got a route cookie for its new server.
fn kill_under_load(d: &DirectorProcess, ws1: &mut BackendProcess) -> Vec<String> {
    let load = Load::start(d.public, CLIENTS, "/");
    load.wait_progress(&vec![0; CLIENTS], 5);
    let at_kill = load.snapshot();
    let on_ws1: Vec<usize> = (0..CLIENTS)
        .filter(|&i| load.last_server(i).as_deref() == Some("ws1"))
        .collect();
    assert!(
        on_ws1.len() >= 5,
        "only {} of {CLIENTS} clients on ws1",
        on_ws1.len()
    );

    ws1.kill9();
    d.wait_state("ws1", "down");
    load.wait_progress(&at_kill, 10);
    let reports = load.stop();

    let failures: Vec<String> = reports.iter().flat_map(|r| r.failures.clone()).collect();
    assert!(
        failures.is_empty(),
        "{} failed requests: {failures:?}",
        failures.len()
    );

    let mut ends = Vec::new();
    for &i in &on_ws1 {
        let r = &reports[i];
        let after = &r.served_by[at_kill[i]..];
        // A request in flight at the kill may still have been answered by
        // ws1; everything after the first answer from elsewhere is not.
        let moved_at = after
            .iter()
            .position(|s| s != "ws1")
            .unwrap_or_else(|| panic!("client {i} never left ws1: {after:?}"));
        let new_server = &after[moved_at];
        assert!(
            after[moved_at..].iter().all(|s| s == new_server),
            "client {i} did not stick to its new server: {after:?}"
        );
        let cookie = r
            .route_cookies
            .iter()
            .find(|(n, _)| *n == at_kill[i] + moved_at)
            .unwrap_or_else(|| panic!("client {i} got no new route cookie when it moved"));
        assert_eq!(
            &cookie.1, new_server,
            "client {i}'s new cookie names another server"
        );
        ends.push(new_server.clone());
    }
    // The other clients stayed where they were.
    for i in (0..CLIENTS).filter(|i| !on_ws1.contains(i)) {
        let before = &reports[i].served_by[at_kill[i] - 1];
        assert!(
            reports[i].served_by[at_kill[i]..]
                .iter()
                .all(|s| s == before),
            "client {i} of {before} moved although its server is alive"
        );
    }
    let d_failovers = d.cluster()["director"]["failovers"].as_u64().unwrap();
    assert!(d_failovers >= on_ws1.len() as u64);
    assert!(d.server("ws1")["failovers"].as_u64().unwrap() >= on_ws1.len() as u64);
    ends
}

#[test]
fn kill9_under_load_spreads_the_clients_over_the_others_without_a_failed_request() {
    let [mut ws1, ws2, ws3] = ["ws1", "ws2", "ws3"].map(BackendProcess::start);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false), (&ws3, false)], ""),
    );
    let ends = kill_under_load(&d, &mut ws1);
    let used: BTreeSet<&str> = ends.iter().map(String::as_str).collect();
    assert_eq!(
        used,
        BTreeSet::from(["ws2", "ws3"]),
        "ws1's clients should spread over ws2 and ws3: {ends:?}"
    );
}

#[test]
fn kill9_under_load_moves_every_client_to_the_standby() {
    let [mut ws1, ws2, ws3, sb] = ["ws1", "ws2", "ws3", "sb"].map(BackendProcess::start);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(
            &[(&ws1, false), (&ws2, false), (&ws3, false), (&sb, true)],
            "",
        ),
    );
    let ends = kill_under_load(&d, &mut ws1);
    assert!(
        ends.iter().all(|s| s == "sb"),
        "ws1's clients should all go to the standby: {ends:?}"
    );
    assert_eq!(d.server("sb")["role"], "standby");
}

/// A new client that lands on `name` (new clients go round the servers).
fn client_on(d: &DirectorProcess, name: &str, path: &str) -> HttpClient {
    for _ in 0..20 {
        let mut c = d.client();
        let resp = c.get(path).unwrap();
        if resp.backend() == Some(name) {
            return c;
        }
    }
    panic!("no new client landed on {name}");
}

/// A server that only missed its health checks (alive, cache intact) is
/// routed to again when it answers, **without** a fence: its lease at the
/// stores, not the director, says whether it may still serve its cache (a
/// real web server whose lease lapsed fences itself and reports a new
/// epoch; one that kept it still owns its sessions, which nobody else
/// could claim meanwhile). These stand-in backends have no leases, so the
/// stale-read side of this is shown on real web servers
/// (`session_backends`, `chaos`, `chaos_net`), not here.
#[test]
fn a_server_back_after_missed_health_checks_is_routed_to_without_a_fence() {
    let store = temp_dir("director-store");
    let opts = BackendOptions {
        store: Some(store.clone()),
        ..Default::default()
    };
    let [ws1, ws2, ws3] =
        ["ws1", "ws2", "ws3"].map(|n| BackendProcess::start_with(n, opts.clone()));
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false), (&ws3, false)], ""),
    );

    let mut a = client_on(&d, "ws1", "/count");
    let old_cookies = a.cookies.clone();
    let old_epoch = ws1.epoch();

    // ws1 stops answering its health checks: its clients fail over.
    ws1.post("/_test/sick");
    d.wait_state("ws1", "down");
    let r = a.get("/count").unwrap();
    assert_ne!(r.backend(), Some("ws1"));

    // It comes back with the same epoch: routed to again, not fenced.
    ws1.post("/_test/well");
    d.wait_state("ws1", "up");
    assert_eq!(ws1.fences(), 0, "the director no longer fences ws1");
    assert_eq!(ws1.epoch(), old_epoch);
    let mut back = HttpClient::new(d.public);
    back.cookies = old_cookies;
    let r = back.get("/value").unwrap();
    assert_eq!(r.backend(), Some("ws1"), "{}", r.text());
    let _ = std::fs::remove_dir_all(store);
}

/// ws1 and ws2 over one shared store directory, behind a director that
/// has seen both up.
fn two_servers_sharing_a_store() -> (
    std::path::PathBuf,
    BackendProcess,
    BackendProcess,
    DirectorProcess,
) {
    let store = temp_dir("director-store");
    let opts = BackendOptions {
        store: Some(store.clone()),
        ..Default::default()
    };
    let [ws1, ws2] = ["ws1", "ws2"].map(|n| BackendProcess::start_with(n, opts.clone()));
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false), (&ws2, false)], ""));
    d.wait_all_up();
    (store, ws1, ws2, d)
}

#[test]
fn a_server_that_fenced_itself_while_up_gets_the_request_again_with_its_new_epoch() {
    let (store, ws1, _ws2, d) = two_servers_sharing_a_store();
    let mut a = client_on(&d, "ws1", "/count");
    // The director learns a new epoch from its health checks (every
    // 300 ms); a request sent right after ws1 fences itself almost always
    // beats that: ws1 refuses it untouched, and the director, which never
    // moved ws1's sessions, sends it to ws1 again with the new epoch. A
    // few tries make that certain; every answer must be right either way.
    let mut count = 1;
    let mut refused_then_served = false;
    for _ in 0..5 {
        d.wait_all_up();
        let refused = ws1.refused_stale();
        let old_epoch = ws1.epoch();
        ws1.post("/_test/fence");
        let r = a.get("/count").unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        count += 1;
        assert_eq!(r.backend(), Some("ws1"), "{}", r.text());
        assert_eq!(r.field("count"), Some(count.to_string()), "{}", r.text());
        // ws1's cache was dropped: the session came from the store.
        assert_eq!(r.field("source").as_deref(), Some("store"));
        assert_ne!(r.field("epoch"), Some(old_epoch.to_string()));
        if ws1.refused_stale() > refused {
            refused_then_served = true;
            break;
        }
    }
    assert!(
        refused_then_served,
        "no request ever beat the health check to a fenced ws1"
    );
    assert_eq!(d.state("ws1"), "up", "ws1 was never marked down");
    assert!(d.log_text().contains("fenced itself while up"));
    let _ = std::fs::remove_dir_all(store);
}

#[test]
fn a_request_queued_at_a_server_evacuated_meanwhile_goes_elsewhere_untouched() {
    let (store, ws1, _ws2, d) = two_servers_sharing_a_store();
    let mut a = client_on(&d, "ws1", "/count");
    let refused = ws1.refused_stale();
    // A request held at ws1 for 2 s (checked for its epoch only then, as
    // at a paused server); meanwhile ws1 is evacuated (its clients move)
    // and fences itself.
    let slow = std::thread::spawn(move || a.get("/_test/slow?ms=2000").unwrap());
    // The director has it in flight at ws1.
    wait_until(DEADLINE, "the slow request reached ws1", || {
        d.server("ws1")["active"].as_u64() == Some(1)
    });
    let resp = d.admin_post("/api/servers/ws1/evacuate");
    assert_eq!(resp.status, 200, "{}", resp.text());
    ws1.post("/_test/fence");
    let r = slow.join().unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.backend(), Some("ws2"), "{}", r.text());
    assert_eq!(ws1.refused_stale(), refused + 1);
    assert!(d
        .log_text()
        .contains("fenced: it refused a request routed for its old epoch"));
    let _ = std::fs::remove_dir_all(store);
}

/// A server killed and restarted is routed to again once it answers its
/// health checks, without a fence (a real web server restarts with a new
/// random epoch and an empty cache).
#[test]
fn a_restarted_server_is_routed_to_again_without_a_fence() {
    let store = temp_dir("director-store");
    let opts = |epoch| BackendOptions {
        store: Some(store.clone()),
        epoch,
    };
    let mut ws1 = BackendProcess::start_with("ws1", opts(Some(4242)));
    let ws2 = BackendProcess::start_with("ws2", opts(None));
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false), (&ws2, false)], ""));

    let mut a = client_on(&d, "ws1", "/count");
    let old_cookies = a.cookies.clone();
    ws1.kill9();
    // The next request finds the connection refused: marked down at once,
    // re-sent to ws2.
    let r = a.get("/count").unwrap();
    assert_eq!(
        (r.backend(), r.field("count").as_deref()),
        (Some("ws2"), Some("2"))
    );
    assert_eq!(d.state("ws1"), "down");

    ws1.restart(Some(4343));
    d.wait_state("ws1", "up");
    assert_eq!(ws1.fences(), 0);
    let mut stale = HttpClient::new(d.public);
    stale.cookies = old_cookies;
    let r = stale.get("/value").unwrap();
    assert_eq!(r.backend(), Some("ws1"), "{}", r.text());
    let _ = std::fs::remove_dir_all(store);
}

#[test]
fn evacuating_a_server_moves_every_client_and_loses_nothing() {
    let store = temp_dir("director-store");
    let opts = BackendOptions {
        store: Some(store.clone()),
        ..Default::default()
    };
    let [ws1, ws2, ws3] =
        ["ws1", "ws2", "ws3"].map(|n| BackendProcess::start_with(n, opts.clone()));
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false), (&ws3, false)], ""),
    );
    let load = Load::start(d.public, CLIENTS, "/count");
    load.wait_progress(&vec![0; CLIENTS], 5);
    let on_ws1 = (0..CLIENTS)
        .filter(|&i| load.last_server(i).as_deref() == Some("ws1"))
        .count();
    assert!(on_ws1 >= 5, "only {on_ws1} clients on ws1");

    let resp = d.admin_post("/api/servers/ws1/evacuate");
    assert_eq!(resp.status, 200, "{}", resp.text());
    assert_eq!(d.state("ws1"), "evacuating");
    // Requests in flight at the evacuation finish; after that, none.
    load.wait_progress(&load.snapshot(), 3);
    let ws1_requests = ws1.requests();
    load.wait_progress(&load.snapshot(), 10);
    assert_eq!(
        ws1.requests(),
        ws1_requests,
        "a request reached ws1 after the evacuation"
    );
    let reports = load.stop();

    let failures: Vec<String> = reports.iter().flat_map(|r| r.failures.clone()).collect();
    assert!(failures.is_empty(), "{failures:?}");
    // No session data lost: each client's counter went 1, 2, 3... with no
    // repeat and no gap, across the move.
    let mut moved_to = BTreeMap::<String, usize>::new();
    for (i, r) in reports.iter().enumerate() {
        let counts: Vec<u64> = r
            .bodies
            .iter()
            .map(|b| {
                b.split_whitespace()
                    .find_map(|w| w.strip_prefix("count="))
                    .and_then(|v| v.parse().ok())
                    .unwrap()
            })
            .collect();
        let expected: Vec<u64> = (1..=counts.len() as u64).collect();
        assert_eq!(counts, expected, "client {i} lost or repeated a change");
        assert_ne!(r.served_by.last().map(String::as_str), Some("ws1"));
        if r.served_by.iter().any(|s| s == "ws1") {
            *moved_to
                .entry(r.served_by.last().cloned().unwrap())
                .or_default() += 1;
        }
    }
    assert_eq!(moved_to.values().sum::<usize>(), on_ws1);

    // Enabled again, ws1 must show a new epoch first: it is fenced.
    let resp = d.admin_post("/api/servers/ws1/enable");
    assert_eq!(resp.status, 200);
    d.wait_state("ws1", "up");
    assert_eq!(ws1.fences(), 1);
    wait_until(DEADLINE, "new clients reach ws1 again", || {
        (0..6).any(|_| d.client().get("/").unwrap().backend() == Some("ws1"))
    });
    let _ = std::fs::remove_dir_all(store);
}

/// What became of a request held by ws1 (`/_test/slow`, 20 s) when the
/// director's health checks marked ws1 down meanwhile
/// (`director_extra` sets the forwarding path and `end_requests_on_down`).
/// Returns its answer and the director's metrics after it.
fn a_request_held_when_its_server_is_marked_down(director_extra: &str) -> (Response, String) {
    let [ws1, ws2] = ["ws1", "ws2"].map(BackendProcess::start);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(
            &[(&ws1, false), (&ws2, false)],
            &format!("response_timeout_ms = 60000\n{director_extra}"),
        ),
    );
    let mut c = client_on(&d, "ws1", "/value");
    let held = std::thread::spawn(move || c.get("/_test/slow?ms=20000"));
    wait_until(DEADLINE, "the slow request is at ws1", || {
        d.server("ws1")["active"].as_u64() == Some(1)
    });
    // ws1 stops answering its health checks (as when a link to it is cut:
    // its requests then wait for TCP to resend them after the heal).
    ws1.post("/_test/sick");
    d.wait_state("ws1", "down");
    let answer = held.join().unwrap().unwrap();
    let metrics = d.admin_get("/metrics").text();
    (answer, metrics)
}

/// Like [`a_request_held_when_its_server_is_marked_down`], for a
/// response whose body ws1 stops sending after its first
/// [`STALLED_FIRST`] bytes for `stall_ms`: the outcome of the body's read,
/// the time it took, when ws1 was marked down (both from the request's
/// start) and the director's metrics.
fn a_body_held_when_its_server_is_marked_down(
    director_extra: &str,
    stall_ms: u64,
) -> (std::io::Result<Response>, Duration, Duration, String) {
    let [ws1, ws2] = ["ws1", "ws2"].map(BackendProcess::start);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false)], director_extra),
    );
    let mut c = client_on(&d, "ws1", "/value");
    let started = Instant::now();
    let held = std::thread::spawn(move || {
        let r = c.get(&format!("/_test/stall?ms={stall_ms}"));
        (r, started.elapsed())
    });
    wait_until(DEADLINE, "the stalled response is under way", || {
        d.server("ws1")["active"].as_u64() == Some(1)
    });
    ws1.post("/_test/sick");
    d.wait_state("ws1", "down");
    let down_at = started.elapsed();
    let (r, took) = held.join().unwrap();
    let metrics = d.admin_get("/metrics").text();
    (r, took, down_at, metrics)
}

/// By default, a response whose body waits for a server the health
/// checks mark down ends at once too (the client sees it cut short), on
/// the fast path and on hyper's: it does not wait for bytes that may come
/// only after a heal, or for the idle timeout (120 s).
#[test]
fn a_response_body_from_a_server_marked_down_ends_at_once() {
    for path in ["fast_path = true", "fast_path = false"] {
        let (r, took, _, metrics) = a_body_held_when_its_server_is_marked_down(path, 20_000);
        let e = r.expect_err("a body cut short is not a whole response");
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{path}: {e}");
        // Well before ws1 would have sent the rest (20 s): ended by the
        // mark, not by anything that waits for the server.
        assert!(
            took < Duration::from_secs(15),
            "{path}: ended after {took:?}"
        );
        assert_eq!(metric(&metrics, ENDED_ON_DOWN), 1.0, "{path}");
    }
}

/// With `end_requests_on_down = false` the body waits for the server,
/// which sends the rest of it.
#[test]
fn a_response_body_from_a_server_marked_down_may_wait_for_it() {
    let (r, took, down_at, metrics) =
        a_body_held_when_its_server_is_marked_down("end_requests_on_down = false", 4_000);
    assert!(
        down_at < took,
        "ws1 was marked down after the body ended ({down_at:?}, {took:?}): nothing tested"
    );
    let r = r.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), STALLED_FIRST + STALLED_REST.len());
    assert!(r.body.ends_with(STALLED_REST));
    assert!(
        took >= Duration::from_secs(4),
        "the rest came after {took:?}"
    );
    assert_eq!(metric(&metrics, ENDED_ON_DOWN), 0.0);
}

/// By default, a request waiting for a server the health checks mark
/// down ends at once with `504`, on the fast path and on hyper's: it does
/// not wait for an answer that may come only after a heal, or never.
#[test]
fn a_request_waiting_for_a_server_marked_down_ends_at_once() {
    for path in ["fast_path = true", "fast_path = false"] {
        let started = Instant::now();
        let (r, metrics) = a_request_held_when_its_server_is_marked_down(path);
        assert_eq!(r.status, 504, "{path}: {}", r.text());
        assert!(
            r.text().contains("stopped answering its health checks"),
            "{path}: {}",
            r.text()
        );
        // Well before ws1 would have answered (20 s): ended by the mark,
        // not by anything that waits for the server.
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{path}: ended after {:?}",
            started.elapsed()
        );
        assert_eq!(metric(&metrics, ENDED_ON_DOWN), 1.0, "{path}");
    }
}

/// With `end_requests_on_down = false` the request waits for the server,
/// which answers it (as HAProxy does without `on-marked-down
/// shutdown-sessions`).
#[test]
fn a_request_waiting_for_a_server_marked_down_may_wait_for_it() {
    let (r, metrics) =
        a_request_held_when_its_server_is_marked_down("end_requests_on_down = false");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.text(), "ws1\n");
    assert_eq!(metric(&metrics, ENDED_ON_DOWN), 0.0);
}
