//! `GET /api/history`: the dashboard's last 15 minutes. The samples come
//! every `history_interval` (shortened here); the events carry wall-clock
//! times and tell a server's death, the failover of its clients, the
//! takeovers another server reports in its metrics, and an operator's
//! drain, in order.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{Method, StatusCode};
use serde_json::Value;
use sticky_director::{AdminState, EventKind, History};

use crate::support::{config, get, request, wait_until, Running, WebServer, DEADLINE};

fn wall_ms() -> u64 {
    u64::try_from(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

/// The history as the admin listener answers it.
async fn history(director: &Running) -> Value {
    let answer = get(director.admin, "/api/history", &[]).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.header("content-type"), Some("application/json"));
    serde_json::from_str(&answer.body).unwrap()
}

/// Whether an event of `kind` about `subject` whose message contains
/// `text` is in `h`.
fn has(h: &History, kind: EventKind, subject: &str, text: &str) -> bool {
    h.events
        .iter()
        .any(|e| e.kind == kind && e.subject == subject && e.message.contains(text))
}

#[tokio::test]
async fn the_history_tells_a_death_its_failover_and_takeovers_with_times() {
    let before = wall_ms();
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let mut config = config(&[&ws1, &ws2], true);
    config.history_interval = Duration::from_millis(100);
    let director = Running::start(config).await;

    // Samples come every interval, with the request rate.
    let first = get(director.public, "/", &[]).await;
    let owner = first.header("x-backend").unwrap().to_owned();
    let cookie = first.set_cookie().unwrap();
    wait_until("three samples, one counting the request", || {
        let h = director.director.history();
        async move { h.samples.len() >= 3 && h.samples.iter().any(|s| s.requests_per_sec > 0.0) }
    })
    .await;

    // The client's server dies; its next request fails over.
    let (dead, alive) = if owner == "ws1" {
        (ws1, ws2)
    } else {
        (ws2, ws1)
    };
    let dead_name = dead.name.clone();
    dead.stop().await;
    let moved = get(director.public, "/", &[("cookie", &cookie)]).await;
    assert_eq!(moved.header("x-backend"), Some(alive.name.as_str()));
    // The server it moved to took the session over from the stores.
    alive.set_takeovers(1);
    let told = |h: &History| {
        has(h, EventKind::ServerDown, &dead_name, "down")
            && has(
                h,
                EventKind::Failover,
                &dead_name,
                "1 request from its clients",
            )
            && has(h, EventKind::Takeover, &alive.name, "took over 1 session")
            && h.samples.iter().any(|s| s.failovers == 1)
            && h.samples.iter().any(|s| s.takeovers == Some(1))
    };
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !told(&director.director.history()) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the failover and the takeover not in the history within {DEADLINE:?}: {:#?}",
            director.director.history()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    director
        .director
        .set_admin_state(&alive.name, AdminState::Draining)
        .unwrap();

    // Over HTTP, with times: in order, between the test's start and now.
    let json = history(&director).await;
    let h: History = serde_json::from_value(json.clone()).unwrap();
    let after = wall_ms();
    assert_eq!(h.interval_ms, 100);
    assert!(has(&h, EventKind::Started, "director", "2 web servers"));
    assert!(has(&h, EventKind::Admin, &alive.name, "drained"));
    for e in &h.events {
        assert!(
            (before..=after).contains(&e.at_ms),
            "{e:?} not between {before} and {after}"
        );
    }
    assert!(h
        .events
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].at_ms <= w[1].at_ms));
    let order: Vec<EventKind> = h
        .events
        .iter()
        .map(|e| e.kind)
        .filter(|k| {
            matches!(
                k,
                EventKind::Started | EventKind::ServerDown | EventKind::Failover | EventKind::Admin
            )
        })
        .collect();
    let mut story = order.clone();
    story.dedup();
    assert_eq!(
        story,
        [
            EventKind::Started,
            EventKind::ServerDown,
            EventKind::Failover,
            EventKind::Admin
        ],
        "the story in order: {order:?}"
    );
    let down = json["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "server_down")
        .unwrap();
    assert_eq!(down["subject"], dead_name.as_str());
    assert!(down["at_ms"].as_u64().is_some(), "{down}");
    assert_eq!(down["epoch"], 1, "the dead server's epoch: {down}");
    let sample = &json["samples"][0];
    for field in [
        "at_ms",
        "requests_per_sec",
        "failovers",
        "servers_up",
        "stores_up",
    ] {
        assert!(!sample[field].is_null(), "{field} missing: {sample}");
    }
    assert!(h.samples.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));

    // Read-only: only GET (and HEAD) answer.
    let post = request(director.admin, Method::POST, "/api/history", &[]).await;
    assert_ne!(post.status, StatusCode::OK);
    director.stop().await;
}
