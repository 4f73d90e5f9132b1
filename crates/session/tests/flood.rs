//! Issue 15, item 3: a flood of anonymous clients must not take a web
//! server's memory or its existing users' service. In-process, the
//! `tests/router.rs` way: an axum router with the session layer driven by
//! `oneshot`, against real `sticky_store::Store`s on port 0.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use common::{app, body, set_cookie, stores, SECRET};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::Router;
use http::header::{COOKIE, RETRY_AFTER};
use http::{Request, Response, StatusCode};
use sticky_session::{Config, SessionManager};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tower::ServiceExt;

/// A request from TCP peer `peer` (as `axum::serve` with connect info
/// records it), optionally forwarded for `xff` and with session `cookie`.
fn request(
    method: &str,
    path: &str,
    peer: &str,
    xff: Option<&str>,
    cookie: Option<&str>,
    body: &str,
) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        b = b.header(COOKIE, format!("sticky.sid={c}"));
    }
    if let Some(x) = xff {
        b = b.header("x-forwarded-for", x);
    }
    let mut req = b.body(Body::from(body.to_owned())).expect("request");
    let peer: SocketAddr = peer.parse().expect("peer address");
    req.extensions_mut().insert(ConnectInfo(peer));
    req
}

async fn send(app: &Router, req: Request<Body>) -> Response<Body> {
    app.clone().oneshot(req).await.expect("infallible")
}

/// A new session from `peer`; its cookie.
async fn new_session(app: &Router, peer: &str) -> String {
    let resp = send(app, request("POST", "/count", peer, None, None, "")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = set_cookie(&resp).expect("a new session sets its cookie");
    assert_eq!(body(resp).await, "new:1");
    cookie
}

/// `PTTL` of session `cookie`'s copy on store `addr`, in ms (-2: none).
async fn pttl(addr: &str, cookie: &str) -> i64 {
    let key = &cookie[..32];
    let mut s = TcpStream::connect(addr).await.expect("connect to store");
    let cmd = format!("*2\r\n$4\r\nPTTL\r\n${}\r\n{key}\r\n", key.len());
    s.write_all(cmd.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    while !buf.ends_with(b"\r\n") {
        let mut b = [0u8; 64];
        let n = s.read(&mut b).await.expect("read");
        assert!(n > 0, "store closed the connection");
        buf.extend_from_slice(&b[..n]);
    }
    let text = String::from_utf8(buf).expect("utf-8");
    text.trim()
        .strip_prefix(':')
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("PTTL answered {text:?}"))
}

#[tokio::test]
async fn at_the_session_cap_new_sessions_are_refused_and_existing_ones_served() {
    let (_stores, specs) = stores(2).await;
    let mut c = Config::new("ws1", SECRET.to_vec(), specs);
    c.max_sessions = 3;
    c.new_sessions_per_ip = 0;
    let m = SessionManager::start(c).await.expect("manager");
    let app = app(&m);
    let existing = new_session(&app, "203.0.113.1:1000").await;
    new_session(&app, "203.0.113.2:1000").await;
    new_session(&app, "203.0.113.3:1000").await;
    assert_eq!(m.sessions(), 3);

    let refused = send(
        &app,
        request("POST", "/count", "203.0.113.4:1000", None, None, ""),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        set_cookie(&refused).is_none(),
        "no cookie for a refused session"
    );
    let text = body(refused).await;
    assert!(
        text.contains("max_sessions") && text.contains("maximum of 3"),
        "{text}"
    );
    assert_eq!(m.sessions(), 3, "nothing was added");

    // A cookie-less request that stores nothing costs nothing: not refused.
    let resp = send(
        &app,
        request("GET", "/read", "203.0.113.4:1000", None, None, ""),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "new:0");

    // The existing user reads and writes as before.
    let resp = send(
        &app,
        request(
            "GET",
            "/read",
            "203.0.113.1:1000",
            None,
            Some(&existing),
            "",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "cache:1");
    let resp = send(
        &app,
        request(
            "POST",
            "/count",
            "203.0.113.1:1000",
            None,
            Some(&existing),
            "",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "cache:2");
}

#[tokio::test]
async fn at_the_byte_cap_new_sessions_are_refused_and_existing_ones_still_grow() {
    let (_stores, specs) = stores(2).await;
    let mut c = Config::new("ws1", SECRET.to_vec(), specs);
    c.max_bytes = 10_000;
    c.new_sessions_per_ip = 0;
    let m = SessionManager::start(c).await.expect("manager");
    let app = app(&m);
    let note = "x".repeat(4000);
    let mut cookies = Vec::new();
    for i in 0..2 {
        let resp = send(
            &app,
            request(
                "POST",
                "/note",
                &format!("203.0.113.{i}:1"),
                None,
                None,
                &note,
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK, "session {i}");
        cookies.push(set_cookie(&resp).expect("cookie"));
    }
    assert!(
        m.session_bytes() > 8000,
        "{} bytes hosted",
        m.session_bytes()
    );

    let refused = send(
        &app,
        request("POST", "/note", "203.0.113.9:1", None, None, &note),
    )
    .await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = body(refused).await;
    assert!(text.contains("max_bytes"), "{text}");
    assert_eq!(m.sessions(), 2);

    // An existing session may grow past the cap (its size is bounded by
    // max_size); new ones stay refused.
    let big = "y".repeat(8000);
    let resp = send(
        &app,
        request(
            "POST",
            "/note",
            "203.0.113.0:1",
            None,
            Some(&cookies[0]),
            &big,
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "cache");
    assert!(
        m.session_bytes() > 12_000,
        "{} bytes hosted",
        m.session_bytes()
    );
    let resp = send(
        &app,
        request("POST", "/count", "203.0.113.9:1", None, None, ""),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn one_address_gets_its_burst_of_new_sessions_and_no_more() {
    let (_stores, specs) = stores(2).await;
    let mut c = Config::new("ws1", SECRET.to_vec(), specs);
    c.new_sessions_per_ip = 1;
    c.new_sessions_burst = 100;
    let m = SessionManager::start(c).await.expect("manager");
    let app = app(&m);
    let started = Instant::now();
    let mut first = None;
    let mut admitted = 0u64;
    let refused = loop {
        let resp = send(
            &app,
            request("POST", "/count", "198.51.100.7:4000", None, None, ""),
        )
        .await;
        if resp.status() != StatusCode::OK {
            break resp;
        }
        admitted += 1;
        first.get_or_insert(set_cookie(&resp).expect("cookie"));
        assert!(admitted <= 200, "never limited");
    };
    // 100 at once, plus what refilled at 1 per second meanwhile.
    let refill = started.elapsed().as_secs() + 1;
    assert!(
        (100..=100 + refill).contains(&admitted),
        "{admitted} admitted in {:?}",
        started.elapsed()
    );
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After in seconds");
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(set_cookie(&refused).is_none());
    let sessions = m.sessions();

    // Through the director (a trusted proxy on loopback), the address in
    // X-Forwarded-For counts: the same client is refused...
    let resp = send(
        &app,
        request(
            "POST",
            "/count",
            "127.0.0.1:5000",
            Some("198.51.100.7"),
            None,
            "",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // ...and an untrusted peer cannot pose as another client.
    let resp = send(
        &app,
        request(
            "POST",
            "/count",
            "198.51.100.7:4001",
            Some("198.51.100.8"),
            None,
            "",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(m.sessions(), sessions, "refused sessions are not hosted");

    // Another address is not limited, directly or through the proxy.
    new_session(&app, "198.51.100.8:4000").await;
    let resp = send(
        &app,
        request(
            "POST",
            "/count",
            "127.0.0.1:5000",
            Some("198.51.100.9"),
            None,
            "",
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);

    // A request with a valid cookie is never limited, from the same address.
    let cookie = first.expect("a first session");
    for n in 2..=5 {
        let resp = send(
            &app,
            request(
                "POST",
                "/count",
                "198.51.100.7:4000",
                None,
                Some(&cookie),
                "",
            ),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, format!("cache:{n}"));
    }
    let resp = send(
        &app,
        request("GET", "/read", "198.51.100.7:4000", None, Some(&cookie), ""),
    )
    .await;
    assert_eq!(body(resp).await, "cache:5");
}

#[tokio::test]
async fn an_untouched_new_session_has_a_short_ttl_until_its_second_request() {
    let (_stores, specs) = stores(1).await;
    let addr = specs[0].addr.clone();
    let mut c = Config::new("ws1", SECRET.to_vec(), specs);
    c.replicas = 1;
    c.idle_timeout = Duration::from_secs(1800);
    c.new_session_ttl = Duration::from_secs(60);
    let m = SessionManager::start(c).await.expect("manager");
    let app = app(&m);
    let untouched = new_session(&app, "203.0.113.1:1").await;
    let ttl = pttl(&addr, &untouched).await;
    assert!(
        (50_000..=60_000).contains(&ttl),
        "new session's TTL {ttl} ms"
    );

    // Second request, a read: the lazy touch extends it in the background.
    let read = new_session(&app, "203.0.113.1:1").await;
    assert!(pttl(&addr, &read).await <= 60_000);
    let resp = send(
        &app,
        request("GET", "/read", "203.0.113.1:1", None, Some(&read), ""),
    )
    .await;
    assert_eq!(body(resp).await, "cache:1");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ttl = pttl(&addr, &read).await;
        if ttl > 1_700_000 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "touched session's TTL stayed {ttl} ms"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Second request, a write: the write carries the normal TTL.
    let written = new_session(&app, "203.0.113.1:1").await;
    let resp = send(
        &app,
        request("POST", "/count", "203.0.113.1:1", None, Some(&written), ""),
    )
    .await;
    assert_eq!(body(resp).await, "cache:2");
    let ttl = pttl(&addr, &written).await;
    assert!(ttl > 1_700_000, "written session's TTL {ttl} ms");

    // The untouched one kept its short lifetime.
    assert!(pttl(&addr, &untouched).await <= 60_000);
}
