//! The proxy itself, through a real `sticky director`: headers, streamed
//! bodies, WebSocket upgrades, the director's own 502, 503 and 504.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufReader, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use sticky_test_support::director::stand_in::STALLED_REST;
use sticky_test_support::director::{
    cluster_file, metric, BackendProcess, DirectorProcess, ENDED_ON_DOWN,
};
use sticky_test_support::{read_response, Sticky, HTTP_TIMEOUT};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Not a test of its own: the backend process the other tests start
/// (returns at once in a normal run).
#[test]
fn director_test_backend() {
    sticky_test_support::director::stand_in::run_if_requested();
}

#[test]
fn headers_are_cleaned_and_forwarded_headers_set() {
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false)], ""));
    let resp = d
        .client()
        .request(
            "GET",
            "/echo",
            &[
                ("Sticky-Owner", "forged"),
                ("sticky-epoch", "forged"),
                ("X-Forwarded-For", "6.6.6.6"),
                ("X-Forwarded-Host", "evil.example"),
                ("Connection", "keep-alive, X-Hop"),
                ("X-Hop", "1"),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("X-App", "kept"),
            ],
            b"",
        )
        .unwrap();
    assert_eq!(resp.status, 200);
    let echoed = resp.text();
    let seen = |name: &str| {
        echoed
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name}: ")))
            .map(str::to_owned)
    };
    assert_eq!(seen("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(seen("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(seen("x-forwarded-host").as_deref(), Some("sticky.test"));
    assert_eq!(seen("host").as_deref(), Some("sticky.test"));
    assert_eq!(seen("x-app").as_deref(), Some("kept"));
    // The client's forged epoch is gone; the director sends the epoch it
    // heard from ws1 (the fencing token), and only that one.
    assert_eq!(seen("sticky-epoch"), Some(ws1.epoch().to_string()));
    assert_eq!(echoed.matches("sticky-epoch").count(), 1, "{echoed}");
    for gone in ["sticky-owner", "x-hop", "connection", "proxy-authorization"] {
        assert_eq!(seen(gone), None, "{gone} reached the backend:\n{echoed}");
    }
}

#[test]
fn large_bodies_stream_both_ways() {
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false)], ""));
    let body: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    let resp = d.client().request("POST", "/echo", &[], &body).unwrap();
    assert_eq!(resp.status, 200);
    let split = resp.body.windows(2).position(|w| w == b"\n\n").unwrap() + 2;
    assert_eq!(resp.body.len() - split, body.len());
    assert!(
        resp.body[split..] == body[..],
        "the body changed on the way"
    );
    // Chunked upload (no Content-Length).
    let mut s = TcpStream::connect(d.public).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(b"POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n").unwrap();
    let resp = read_response(&mut BufReader::new(s), false).unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.text().ends_with("\n\nhello world"), "{}", resp.text());
}

#[test]
fn websocket_upgrades_become_a_tunnel() {
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false)], ""));
    let mut s = TcpStream::connect(d.public).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut reader, false).unwrap();
    assert_eq!(resp.status, 101);
    assert_eq!(resp.header("upgrade"), Some("websocket"));
    assert!(resp
        .set_cookie_line("sticky.route")
        .is_some_and(|c| c.starts_with("sticky.route=ws1.")));
    for msg in [
        &b"ping"[..],
        b"hello through the director",
        &[0u8, 1, 2, 255],
    ] {
        s.write_all(msg).unwrap();
        let mut got = vec![0u8; msg.len()];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
    assert_eq!(
        d.server("ws1")["active"],
        1,
        "an open tunnel counts as active"
    );
    drop(reader);
    drop(s);
    sticky_test_support::wait_until(
        sticky_test_support::DEADLINE,
        "the tunnel is closed",
        || d.server("ws1")["active"] == 0,
    );
}

#[test]
fn upstream_failures_get_clear_502_504_and_503_answers() {
    let mut ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false)], "response_timeout_ms = 1000"),
    );
    let mut c = d.client();
    // The server closes the connection without answering: a POST is not
    // retried (it may have been processed), a GET is, twice.
    let before = ws1.requests();
    let resp = c.request("POST", "/_test/abort", &[], b"x").unwrap();
    assert_eq!(resp.status, 502);
    assert!(
        resp.text().starts_with("502 Bad Gateway"),
        "{}",
        resp.text()
    );
    assert_eq!(ws1.requests() - before, 1, "a POST must not be retried");
    let before = ws1.requests();
    let resp = c.get("/_test/abort").unwrap();
    assert_eq!(resp.status, 502);
    assert_eq!(ws1.requests() - before, 3, "a GET is retried twice");
    // Too slow.
    let resp = c.get("/_test/slow?ms=5000").unwrap();
    assert_eq!(resp.status, 504);
    assert!(
        resp.text().starts_with("504 Gateway Timeout"),
        "{}",
        resp.text()
    );
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    // Still fine afterwards.
    assert_eq!(c.get("/").unwrap().status, 200);
    // Nobody left.
    ws1.kill9();
    let resp = c.get("/").unwrap();
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("retry-after"), Some("1"));
    assert!(
        resp.text().starts_with("503 Service Unavailable"),
        "{}",
        resp.text()
    );
    assert_eq!(d.state("ws1"), "down");
    assert!(d.cluster()["director"]["gateway_errors"].as_u64().unwrap() >= 4);
}

/// A response its web server sends in parts (server-sent events, a
/// trickling download) reaches the client part by part, on the fast path
/// and on hyper's: the director never holds bytes it has while it waits
/// for more.
#[test]
fn a_streamed_response_reaches_the_client_as_it_comes() {
    for path in ["fast_path = true", "fast_path = false"] {
        let ws1 = BackendProcess::start("ws1");
        let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false)], path));
        let mut s = TcpStream::connect(d.public).unwrap();
        s.set_read_timeout(Some(HTTP_TIMEOUT)).unwrap();
        // The first 10 bytes of the body now, the rest in 5 s.
        s.write_all(b"GET /_test/stall?ms=5000&first=10 HTTP/1.1\r\nHost: sticky.test\r\n\r\n")
            .unwrap();
        let started = Instant::now();
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        // Until the head and the first part are in (each read returns
        // something or fails; bounded by the read timeout and the count).
        for _ in 0..1000 {
            let body_in = got
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .is_some_and(|end| got.len() >= end + 4 + 10);
            if body_in {
                break;
            }
            let n = s.read(&mut buf).unwrap();
            assert!(n > 0, "{path}: the connection closed: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&got);
        assert!(text.starts_with("HTTP/1.1 200"), "{path}: {text}");
        assert!(text.ends_with("aaaaaaaaaa"), "{path}: {text}");
        // Had the director held the first part, it would have come with
        // the rest, after the pause.
        assert!(
            !got.windows(STALLED_REST.len()).any(|w| w == STALLED_REST),
            "{path}: the first part came only with the rest, after {:?}",
            started.elapsed()
        );
    }
}

/// A WebSocket tunnel to a web server its health checks mark down closes
/// (`end_requests_on_down`, as HAProxy's `on-marked-down
/// shutdown-sessions`): the client reconnects and is routed where its
/// session moves, instead of holding a tunnel nothing may come through
/// until the idle timeout (120 s).
#[test]
fn a_tunnel_to_a_server_marked_down_closes() {
    let [ws1, ws2] = ["ws1", "ws2"].map(BackendProcess::start);
    let d = DirectorProcess::start(STICKY, &cluster_file(&[(&ws1, false), (&ws2, false)], ""));
    d.wait_all_up();
    // A route cookie for ws1, from a new client the director sent there.
    let route = (0..20)
        .find_map(|_| {
            let r = d.client().get("/").unwrap();
            let on_ws1 = r.backend() == Some("ws1");
            let route = r.set_cookie("sticky.route").flatten();
            route.filter(|_| on_ws1)
        })
        .expect("no new client landed on ws1");
    let mut s = TcpStream::connect(d.public).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        format!(
            "GET /ws HTTP/1.1\r\nHost: t\r\nCookie: sticky.route={route}\r\n\
             Connection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let resp = read_response(&mut reader, false).unwrap();
    assert_eq!(resp.status, 101);
    s.write_all(b"ping").unwrap();
    let mut got = [0u8; 4];
    reader.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    let started = Instant::now();
    ws1.post("/_test/sick");
    d.wait_state("ws1", "down");
    // The director closes the client's side: the read ends (without the
    // mark it would wait for the 30 s read timeout).
    let mut rest = Vec::new();
    let read = reader.read_to_end(&mut rest);
    assert!(read.is_ok(), "the tunnel stayed open: {read:?}");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        started.elapsed()
    );
    let metrics = d.admin_get("/metrics").text();
    assert_eq!(metric(&metrics, ENDED_ON_DOWN), 1.0);
}
