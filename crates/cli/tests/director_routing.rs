//! Sticky routing through a real `sticky director` in front of real
//! backend processes: one client stays on one server; new clients spread
//! evenly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;

use sticky_test_support::director::{cluster_file, route_target, BackendProcess, DirectorProcess};
use sticky_test_support::Sticky;

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Not a test of its own: the backend process the other tests start
/// (returns at once in a normal run).
#[test]
fn director_test_backend() {
    sticky_test_support::director::stand_in::run_if_requested();
}

fn three() -> [BackendProcess; 3] {
    ["ws1", "ws2", "ws3"].map(BackendProcess::start)
}

#[test]
fn one_client_sticks_to_one_server_for_1000_requests() {
    let [ws1, ws2, ws3] = three();
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false), (&ws3, false)], ""),
    );
    let mut client = d.client();
    let first = client.get("/").unwrap();
    assert_eq!(first.status, 200);
    let server = first.backend().unwrap().to_owned();
    let cookie = first
        .set_cookie_line("sticky.route")
        .expect("a new client gets a route cookie")
        .to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert_eq!(route_target(&client.cookies["sticky.route"]), server);
    for n in 1..1000 {
        let resp = client.get("/").unwrap();
        assert_eq!(resp.status, 200, "request {n}: {}", resp.text());
        assert_eq!(resp.backend(), Some(server.as_str()), "request {n} moved");
        assert!(
            resp.set_cookie_line("sticky.route").is_none(),
            "request {n}: cookie re-sent"
        );
    }
    let served = d.server(&server)["requests"].as_u64().unwrap();
    assert_eq!(served, 1000);
}

#[test]
fn three_hundred_new_clients_spread_evenly_over_three_servers() {
    let [ws1, ws2, ws3] = three();
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false), (&ws3, false)], ""),
    );
    let addr = d.public;
    // One new client after another. (With concurrent clients the split
    // follows least-in-flight, which on a loaded machine rightly favours
    // whichever backend the scheduler ran last: timing, not routing.)
    let mut counts: HashMap<String, usize> = HashMap::new();
    for _ in 0..300 {
        let mut c = sticky_test_support::HttpClient::new(addr);
        let resp = c.get("/").unwrap();
        assert_eq!(resp.status, 200);
        let server = resp.backend().unwrap().to_owned();
        // The cookie names the server that answered.
        assert_eq!(route_target(&c.cookies["sticky.route"]), server);
        *counts.entry(server).or_default() += 1;
    }
    assert_eq!(counts.values().sum::<usize>(), 300);
    for name in ["ws1", "ws2", "ws3"] {
        let n = counts.get(name).copied().unwrap_or(0);
        assert!(
            (75..=125).contains(&n),
            "{name} got {n} of 300 new clients: {counts:?}"
        );
    }
}
