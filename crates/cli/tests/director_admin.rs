//! Operating a real `sticky director`: the JSON API, the dashboard, the
//! Prometheus metrics, drain, reloading the server list (API and SIGHUP),
//! graceful shutdown.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use sticky_test_support::director::{
    cluster_file, metric, route_target, BackendProcess, DirectorProcess,
};
use sticky_test_support::{wait_until, HttpClient, Sticky, DEADLINE};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Not a test of its own: the backend process the other tests start
/// (returns at once in a normal run).
#[test]
fn director_test_backend() {
    sticky_test_support::director::stand_in::run_if_requested();
}

#[test]
fn api_dashboard_and_metrics_show_the_cluster() {
    let [ws1, ws2, sb] = ["ws1", "ws2", "sb"].map(BackendProcess::start);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false), (&sb, true)], ""),
    );
    let mut c = d.client();
    for _ in 0..10 {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
    let cluster = d.cluster();
    let servers = cluster["servers"].as_array().unwrap();
    assert_eq!(servers.len(), 3);
    for (s, b, role) in [
        (&servers[0], &ws1, "web"),
        (&servers[1], &ws2, "web"),
        (&servers[2], &sb, "standby"),
    ] {
        assert_eq!(s["name"], b.name.as_str());
        assert_eq!(s["addr"], b.addr().to_string());
        assert_eq!(s["role"], role);
        assert_eq!(s["state"], "up");
        assert_eq!(s["epoch"].as_u64(), Some(b.epoch()), "{s}");
        for field in ["sessions", "active", "requests", "failovers"] {
            assert!(s[field].is_u64(), "{field} missing: {s}");
        }
    }
    let served: u64 = servers
        .iter()
        .map(|s| s["requests"].as_u64().unwrap())
        .sum();
    assert_eq!(served, 10);
    assert_eq!(cluster["director"]["requests"], 10);
    assert_eq!(cluster["director"]["servers_up"], 3);

    let page = d.admin_get("/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.text().contains("/api/cluster") && page.text().contains("setInterval"));

    // The dashboard's story: its start and every server up, with times
    // (GET, no token).
    let history = d.admin_get("/api/history").json_ok();
    let events = history["events"].as_array().unwrap();
    let now = history["now_ms"].as_u64().unwrap();
    for (kind, subject) in [
        ("started", "director"),
        ("server_up", "ws1"),
        ("server_up", "ws2"),
        ("server_up", "sb"),
    ] {
        let e = events
            .iter()
            .find(|e| e["kind"] == kind && e["subject"] == subject)
            .unwrap_or_else(|| panic!("no {kind} event for {subject}: {history}"));
        let at = e["at_ms"].as_u64().unwrap();
        assert!(at <= now && now - at < 600_000, "{e} (now {now})");
    }
    assert_eq!(history["interval_ms"], 5000);

    let metrics = d.admin_get("/metrics");
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    for needle in [
        "sticky_director_requests_total 10",
        "sticky_director_server_up{server=\"ws1\"} 1",
        "sticky_director_server_requests_total{server=\"sb\"} 0",
        "sticky_director_server_state{server=\"ws2\",state=\"up\"} 1",
        "# HELP sticky_director_failovers_total",
        "# TYPE sticky_director_response_seconds histogram",
        "sticky_director_response_seconds_count 10",
    ] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }

    assert_eq!(d.admin_post("/api/servers/ws9/drain").status, 404);
    assert_eq!(d.admin_post("/api/servers/ws1/reboot").status, 404);
    assert_eq!(d.admin_get("/api/servers/ws1/drain").status, 405);
    assert_eq!(d.admin_get("/nope").status, 404);
    let forged = HttpClient::new(d.admin)
        .request(
            "POST",
            "/api/servers/ws1/evacuate",
            &[("Origin", "http://evil.example")],
            b"",
        )
        .unwrap();
    assert_eq!(forged.status, 403, "a cross-site POST must be refused");
    assert_eq!(d.state("ws1"), "up");
}

#[test]
fn the_response_time_histogram_puts_a_slow_answer_in_its_bucket() {
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false)], ""));
    let mut c = d.client();
    for _ in 0..5 {
        assert_eq!(c.get("/").unwrap().status, 200);
    }
    // Answered after 300 ms: above the 0.25 s bound, within 0.5 s only if
    // the machine is not stalled; always within +Inf.
    assert_eq!(c.get("/_test/slow?ms=300").unwrap().status, 200);
    let text = d.admin_get("/metrics").text();
    let bucket = |le: &str| {
        metric(
            &text,
            &format!("sticky_director_response_seconds_bucket{{le=\"{le}\"}}"),
        )
    };
    assert_eq!(metric(&text, "sticky_director_response_seconds_count"), 6.0);
    assert_eq!(bucket("+Inf"), 6.0);
    assert!(
        bucket("0.25") <= 5.0,
        "the 300 ms answer counted at or under 0.25 s:\n{text}"
    );
    let sum = metric(&text, "sticky_director_response_seconds_sum");
    assert!(sum >= 0.3, "sum {sum} below the slow answer's 0.3 s");
    // Cumulative: never decreasing.
    let mut last = 0.0;
    for le in [
        "0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1",
        "2.5", "5", "10", "+Inf",
    ] {
        let n = bucket(le);
        assert!(n >= last, "bucket {le} ({n}) below the one before ({last})");
        last = n;
    }
    // The JSON API (the dashboard's p50/p99) shows the same histogram: the
    // bounds in microseconds, cumulative counts ending with the total.
    let times = d.cluster()["director"]["response_times"].clone();
    let sticky_director::ResponseTimes { le_us, cumulative } =
        serde_json::from_value(times.clone()).expect("response_times");
    assert_eq!(le_us.len(), 14, "{times}");
    assert_eq!(le_us[8], 250_000, "{times}");
    assert_eq!(cumulative.len(), le_us.len() + 1, "{times}");
    assert!(cumulative.windows(2).all(|w| w[0] <= w[1]), "{times}");
    // The admin request for /metrics is not proxied: still 6.
    assert_eq!(cumulative[le_us.len()], 6, "{times}");
    assert!(
        cumulative[8] <= 5,
        "the 300 ms answer at or under 250 ms: {times}"
    );
}

#[test]
fn drain_stops_new_clients_but_keeps_existing_ones() {
    let [ws1, ws2] = ["ws1", "ws2"].map(BackendProcess::start);
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false), (&ws2, false)], ""));
    let mut on_ws1 = loop {
        let mut c = d.client();
        if c.get("/").unwrap().backend() == Some("ws1") {
            break c;
        }
    };
    let resp = d.admin_post("/api/servers/ws1/drain");
    assert_eq!(resp.status, 200);
    assert_eq!(d.state("ws1"), "draining");
    for _ in 0..30 {
        assert_eq!(
            d.client().get("/").unwrap().backend(),
            Some("ws2"),
            "a new client reached a draining server"
        );
        let resp = on_ws1.get("/").unwrap();
        assert_eq!(
            resp.backend(),
            Some("ws1"),
            "an existing client left a draining server"
        );
        assert!(resp.set_cookie_line("sticky.route").is_none());
    }
    assert_eq!(d.admin_post("/api/servers/ws1/enable").status, 200);
    // Back from a drain: no fencing needed, new clients at once.
    assert_eq!(d.state("ws1"), "up");
    let servers: BTreeSet<String> = (0..10)
        .map(|_| d.client().get("/").unwrap().backend().unwrap().to_owned())
        .collect();
    assert!(servers.contains("ws1"));
    assert_eq!(ws1.fences(), 0);
}

#[test]
fn the_server_list_reloads_by_api_and_by_sighup() {
    let [ws1, ws2, ws3] = ["ws1", "ws2", "ws3"].map(BackendProcess::start);
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false), (&ws2, false)], ""));
    let ws1_epoch = d.server("ws1")["epoch"].clone();
    let mut on_ws1 = loop {
        let mut c = d.client();
        if c.get("/").unwrap().backend() == Some("ws1") {
            break c;
        }
    };

    // Add ws3 over the API.
    d.rewrite_config(&cluster_file(
        &[(&ws1, false), (&ws2, false), (&ws3, false)],
        "",
    ));
    let resp = d.admin_post("/api/reload");
    assert_eq!(resp.status, 200, "{}", resp.text());
    let summary: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
    assert_eq!(summary["added"], serde_json::json!(["ws3"]));
    d.wait_state("ws3", "up");
    wait_until(DEADLINE, "new clients reach ws3", || {
        (0..6).any(|_| d.client().get("/").unwrap().backend() == Some("ws3"))
    });
    // Untouched servers kept their state.
    assert_eq!(d.server("ws1")["epoch"], ws1_epoch);
    assert_eq!(d.state("ws1"), "up");

    // A broken file changes nothing.
    std::fs::write(&d.config, "this is not toml [").unwrap();
    let resp = d.admin_post("/api/reload");
    assert_eq!(resp.status, 400);
    assert!(resp.text().contains("reload failed"), "{}", resp.text());
    assert_eq!(d.cluster()["servers"].as_array().unwrap().len(), 3);

    // Remove ws1 with SIGHUP: its clients move, with a new cookie.
    d.rewrite_config(&cluster_file(&[(&ws2, false), (&ws3, false)], ""));
    d.signal("HUP");
    wait_until(DEADLINE, "ws1 is gone from the list", || {
        d.state("ws1") == "absent"
    });
    let resp = on_ws1.get("/").unwrap();
    let now = resp.backend().unwrap().to_owned();
    assert_ne!(now, "ws1");
    assert_eq!(route_target(&on_ws1.cookies["sticky.route"]), now);
    assert!(!d.admin_get("/metrics").text().contains("server=\"ws1\""));
}

#[test]
fn sigterm_finishes_requests_in_flight_then_exits() {
    let ws1 = BackendProcess::start("ws1");
    let mut d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false)], ""));
    let addr = d.public;
    let slow = std::thread::spawn(move || HttpClient::new(addr).get("/_test/slow?ms=1500"));
    wait_until(DEADLINE, "the slow request is in flight", || {
        d.server("ws1")["active"] == 1
    });
    d.signal("TERM");
    let resp = slow
        .join()
        .unwrap()
        .expect("the request in flight completes");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.backend(), Some("ws1"));
    let status = d.wait_exit(DEADLINE);
    assert!(status.success(), "exit status {status}");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "still accepting"
    );
    let log = d.log_text();
    assert!(
        log.contains("shutting down") && log.contains("director stopped"),
        "{log}"
    );
}
