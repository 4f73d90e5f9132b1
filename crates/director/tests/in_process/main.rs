//! The director in-process: started through its library API
//! ([`Director::serve`](sticky_director::Director::serve)) on port 0 in the
//! test's runtime, in front of small web servers on port 0. Each request
//! test runs on both request paths: the fast path and the general (hyper)
//! path (`fast_path = false`).
//!
//! The whole-system tests (real processes, `sticky director` from the
//! command line) stay in `crates/cli/tests/director_*.rs`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod hardening;
mod history;
mod peers;
mod safety;
mod support;

use http::{Method, StatusCode};
use sticky_director::{AdminState, ClusterStatus, ServerState};
use support::{config, get, request, Running, WebServer};

/// The route cookie's name (the default).
const ROUTE: &str = "sticky.route";

async fn a_new_client_gets_a_route_cookie_and_sticks(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let director = Running::start(config(&[&ws1, &ws2], fast_path)).await;

    let first = get(director.public, "/cart", &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let name = first.header("x-backend").expect("x-backend").to_owned();
    assert_eq!(first.body, format!("{name} /cart"));
    let cookie = first
        .set_cookie()
        .expect("a new client gets a route cookie");
    assert!(
        cookie.starts_with(&format!("{ROUTE}={name}.")),
        "the cookie names the server that answered: {cookie}"
    );
    let attributes = first.header("set-cookie").unwrap_or_default();
    assert!(
        attributes.contains("Path=/") && attributes.contains("HttpOnly"),
        "{attributes}"
    );

    for i in 0..6 {
        let again = get(
            director.public,
            &format!("/page/{i}"),
            &[("cookie", &cookie)],
        )
        .await;
        assert_eq!(again.status, StatusCode::OK);
        assert_eq!(
            again.header("x-backend"),
            Some(name.as_str()),
            "the route cookie keeps the client on its server"
        );
        assert_eq!(
            again.set_cookie(),
            None,
            "a routed client gets no new cookie"
        );
    }
    let (mine, other) = if name == "ws1" {
        (&ws1, &ws2)
    } else {
        (&ws2, &ws1)
    };
    assert_eq!(mine.seen().len(), 7);
    assert!(other.seen().is_empty());

    // A forged cookie is a new client: routed, and given a real cookie.
    let forged = format!("{ROUTE}={name}.00000000");
    let answer = get(director.public, "/", &[("cookie", &forged)]).await;
    assert_eq!(answer.status, StatusCode::OK);
    let fresh = answer.set_cookie().expect("a forged cookie is replaced");
    assert_ne!(fresh, forged);
    director.stop().await;
}

#[tokio::test]
async fn a_new_client_gets_a_route_cookie_and_sticks_fast_path() {
    a_new_client_gets_a_route_cookie_and_sticks(true).await;
}

#[tokio::test]
async fn a_new_client_gets_a_route_cookie_and_sticks_hyper_path() {
    a_new_client_gets_a_route_cookie_and_sticks(false).await;
}

async fn a_server_refusing_connections_is_failed_over(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let mut cfg = config(&[&ws1, &ws2], fast_path);
    // Only the first check runs during the test: the request path, not a
    // health check, must find ws1 gone.
    cfg.health.interval = std::time::Duration::from_secs(600);
    let director = Running::start(cfg).await;

    // A client of ws1: take its cookie from the server itself.
    let mut cookie = None;
    for _ in 0..8 {
        let a = get(director.public, "/", &[]).await;
        if a.header("x-backend") == Some("ws1") {
            cookie = a.set_cookie();
            break;
        }
    }
    let cookie = cookie.expect("a new client lands on ws1 within 8 tries");
    assert_eq!(director.state_of("ws1"), ServerState::Up);

    ws1.stop().await;
    let moved = get(director.public, "/after", &[("cookie", &cookie)]).await;
    assert_eq!(moved.status, StatusCode::OK, "{moved:?}");
    assert_eq!(moved.header("x-backend"), Some("ws2"));
    let new_cookie = moved
        .set_cookie()
        .expect("a moved client gets a new cookie");
    assert!(
        new_cookie.starts_with(&format!("{ROUTE}=ws2.")),
        "{new_cookie}"
    );
    assert_eq!(ws2.seen().last().map(|s| s.path.as_str()), Some("/after"));

    let status = director.status();
    let ws1_status = &status.servers[0];
    assert_eq!(ws1_status.state, ServerState::Down);
    assert_eq!(ws1_status.last_error.as_deref(), Some("connection refused"));
    assert_eq!(ws1_status.failovers, 1);
    assert_eq!(status.director.failovers, 1);
    assert!(status.director.retries >= 1);

    // The new cookie sticks to ws2.
    let again = get(director.public, "/again", &[("cookie", &new_cookie)]).await;
    assert_eq!(again.header("x-backend"), Some("ws2"));
    assert_eq!(again.set_cookie(), None);
    director.stop().await;
}

#[tokio::test]
async fn a_server_refusing_connections_is_failed_over_fast_path() {
    a_server_refusing_connections_is_failed_over(true).await;
}

#[tokio::test]
async fn a_server_refusing_connections_is_failed_over_hyper_path() {
    a_server_refusing_connections_is_failed_over(false).await;
}

async fn the_reserved_path_is_answered_404(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(config(&[&ws1], fast_path)).await;
    for path in [
        "/.sticky/health",
        "/.sticky/fence",
        "/%2Esticky/health",
        "/a/../.sticky/x",
        // Regression (issue 15, item 4): dot segments in the query or the
        // fragment do not make a reserved path ordinary.
        "/.sticky/health?/../..",
        "/.sticky/fence?/../..",
        "/.sticky/health#/../..",
        "/.sticky/health?x=/../../a",
    ] {
        let a = get(director.public, path, &[]).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{path}");
        let p = request(director.public, Method::POST, path, &[]).await;
        assert_eq!(p.status, StatusCode::NOT_FOUND, "POST {path}");
    }
    assert!(
        ws1.seen().is_empty(),
        "no reserved request reached the web server: {:?}",
        ws1.seen()
    );
    // Ordinary paths still pass.
    assert_eq!(
        get(director.public, "/a/.sticky/x", &[]).await.status,
        StatusCode::OK
    );
    director.stop().await;
}

#[tokio::test]
async fn the_reserved_path_is_answered_404_fast_path() {
    the_reserved_path_is_answered_404(true).await;
}

#[tokio::test]
async fn the_reserved_path_is_answered_404_hyper_path() {
    the_reserved_path_is_answered_404(false).await;
}

async fn hop_by_hop_headers_are_removed(fast_path: bool, connection_options: bool) {
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(config(&[&ws1], fast_path)).await;
    let mut headers = vec![
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("proxy-authorization", "Basic eA=="),
        ("sticky-epoch", "forged"),
        ("sticky-owner", "forged"),
        ("x-forwarded-for", "6.6.6.6"),
        ("x-app", "kept"),
    ];
    if connection_options {
        // A `Connection` option other than keep-alive (the fast path hands
        // such requests to the hyper path).
        headers.push(("connection", "x-hop"));
        headers.push(("x-hop", "1"));
    }
    // The web server does send hop-by-hop response headers.
    let direct = get(ws1.addr, "/direct", &[]).await;
    assert_eq!(direct.header("keep-alive"), Some("timeout=5"));
    assert!(direct.header("proxy-authenticate").is_some());
    let a = get(director.public, "/h", &headers).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    // The response: hop-by-hop headers gone, the others kept.
    assert_eq!(a.header("x-app"), Some("kept"));
    assert_eq!(a.header("keep-alive"), None);
    assert_eq!(a.header("proxy-authenticate"), None);

    let seen = ws1.seen();
    let h = &seen.last().expect("the request arrived").headers;
    for gone in [
        "keep-alive",
        "te",
        "proxy-authorization",
        "sticky-owner",
        "connection",
        "x-hop",
    ] {
        assert!(
            !h.contains_key(gone),
            "{gone} must not reach the web server: {h:?}"
        );
    }
    assert_eq!(h.get("x-app").map(|v| v.as_bytes()), Some(&b"kept"[..]));
    assert_eq!(
        h.get("x-forwarded-for").map(|v| v.as_bytes()),
        Some(&b"127.0.0.1"[..]),
        "the director sets X-Forwarded-For itself"
    );
    assert_eq!(
        h.get("x-forwarded-proto").map(|v| v.as_bytes()),
        Some(&b"http"[..])
    );
    assert_eq!(
        h.get("x-forwarded-host").map(|v| v.as_bytes()),
        Some(director.public.to_string().as_bytes())
    );
    // The client's forged epoch is gone; the director's own token is the
    // epoch the server reported.
    assert_eq!(h.get_all("sticky-epoch").iter().count(), 1);
    assert_eq!(h.get("sticky-epoch").map(|v| v.as_bytes()), Some(&b"1"[..]));
    director.stop().await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_fast_path() {
    hop_by_hop_headers_are_removed(true, false).await;
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_hyper_path() {
    hop_by_hop_headers_are_removed(false, false).await;
}

#[tokio::test]
async fn headers_named_in_connection_are_removed() {
    hop_by_hop_headers_are_removed(true, true).await;
}

#[tokio::test]
async fn the_admin_api_answers() {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let director = Running::start(config(&[&ws1, &ws2], true)).await;
    for _ in 0..3 {
        assert_eq!(get(director.public, "/", &[]).await.status, StatusCode::OK);
    }

    let healthz = get(director.admin, "/healthz", &[]).await;
    assert_eq!(
        (healthz.status, healthz.body.as_str()),
        (StatusCode::OK, "ok\n")
    );

    let cluster = get(director.admin, "/api/cluster", &[]).await;
    assert_eq!(cluster.status, StatusCode::OK);
    assert_eq!(cluster.header("content-type"), Some("application/json"));
    let status: ClusterStatus = serde_json::from_str(&cluster.body).expect("ClusterStatus JSON");
    assert_eq!(status.director.requests, 3);
    assert_eq!(status.director.servers_up, 2);
    assert_eq!(status.director.listen, Some(director.public));
    let names: Vec<&str> = status.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["ws1", "ws2"]);

    let metrics = get(director.admin, "/metrics", &[]).await;
    assert_eq!(metrics.status, StatusCode::OK);
    for line in [
        "sticky_director_requests_total 3",
        "sticky_director_server_up{server=\"ws1\"} 1",
        "sticky_director_fast_path_requests_total 3",
    ] {
        assert!(metrics.body.contains(line), "{line} in:\n{}", metrics.body);
    }

    // Drain ws1 (state changes carry the admin token): its state changes,
    // and new clients all go to ws2.
    let auth = format!(
        "Bearer {}",
        sticky_proto::control::admin_token(support::SECRET.as_bytes())
    );
    let auth: &[(&str, &str)] = &[("authorization", &auth)];
    let drained = request(director.admin, Method::POST, "/api/servers/ws1/drain", auth).await;
    assert_eq!(drained.status, StatusCode::OK, "{drained:?}");
    assert!(drained.body.contains("\"draining\""), "{}", drained.body);
    assert_eq!(director.state_of("ws1"), ServerState::Draining);
    for _ in 0..4 {
        let a = get(director.public, "/", &[]).await;
        assert_eq!(a.header("x-backend"), Some("ws2"));
    }
    let enabled = director
        .director
        .set_admin_state("ws1", AdminState::Enabled)
        .expect("enable");
    assert_eq!(enabled.state, ServerState::Up);

    let unknown = request(
        director.admin,
        Method::POST,
        "/api/servers/nope/drain",
        auth,
    )
    .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    let cross = request(
        director.admin,
        Method::POST,
        "/api/servers/ws1/drain",
        &[auth[0], ("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN);
    assert_eq!(
        director.state_of("ws1"),
        ServerState::Up,
        "refused: nothing changed"
    );
    let wrong_method = request(director.admin, Method::DELETE, "/api/cluster", auth).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    let no_supervisor = get(director.admin, "/api/processes", &[]).await;
    assert_eq!(no_supervisor.status, StatusCode::NOT_FOUND);
    director.stop().await;
}

#[tokio::test]
async fn with_no_server_up_clients_get_503() {
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(config(&[&ws1], true)).await;
    ws1.stop().await;
    let a = get(director.public, "/", &[]).await;
    assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(a.header("retry-after"), Some("1"));
    assert_eq!(director.status().director.gateway_errors, 1);
    director
        .until("ws1 down", |s| s.servers[0].state == ServerState::Down)
        .await;
    director.stop().await;
}
