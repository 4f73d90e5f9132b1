//! Bad input at a real `sticky director`: forged route cookies, oversized
//! headers, slowloris clients, requests for the reserved internal path.
//! Each gets a clear answer (or is closed) and no other client notices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sticky_test_support::director::{
    cluster_file, route_target, BackendProcess, DirectorProcess, SECRET,
};
use sticky_test_support::{raw_exchange, Sticky};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Not a test of its own: the backend process the other tests start
/// (returns at once in a normal run).
#[test]
fn director_test_backend() {
    sticky_test_support::director::stand_in::run_if_requested();
}

fn three(extra: &str) -> ([BackendProcess; 3], DirectorProcess) {
    let b = ["ws1", "ws2", "ws3"].map(BackendProcess::start);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&b[0], false), (&b[1], false), (&b[2], false)], extra),
    );
    (b, d)
}

#[test]
fn forged_route_cookies_are_ignored_and_routed_as_new_clients() {
    let (_b, d) = three("");
    let real = {
        let mut c = d.client();
        c.get("/").unwrap();
        c.cookies["sticky.route"].clone()
    };
    let mac = real.rsplit_once('.').unwrap().1.to_owned();
    let mut flipped = mac.clone().into_bytes();
    flipped[0] = if flipped[0] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let forgeries = [
        format!("ws1.{}", "0".repeat(32)),
        format!("ws1.{flipped}"),
        format!("ws2.{flipped}"),
        "ws1".to_owned(),
        "ws1.".to_owned(),
        "../../etc/passwd".to_owned(),
        "x".repeat(4000),
        "ws1.zz%00\\\"".to_owned(),
    ];
    let mut servers = BTreeSet::new();
    for round in 0..4 {
        for forged in &forgeries {
            let mut c = d.client();
            c.cookies.insert("sticky.route".into(), forged.clone());
            let resp = c.get("/").unwrap();
            assert_eq!(resp.status, 200, "{forged:?}: {}", resp.text());
            let server = resp.backend().unwrap().to_owned();
            let (_, set) = resp
                .set_cookies()
                .into_iter()
                .find(|(k, _)| k == "sticky.route")
                .unwrap_or_else(|| panic!("round {round}: {forged:?} got no new route cookie"));
            assert_eq!(route_target(&set), server);
            servers.insert(server);
        }
    }
    assert_eq!(
        servers.len(),
        3,
        "forged cookies are routed like new clients: {servers:?}"
    );
    assert_eq!(d.cluster()["director"]["failovers"], 0);
}

#[test]
fn a_100_kb_header_gets_431_and_other_clients_carry_on() {
    let (_b, d) = three("");
    let mut other = d.client();
    assert_eq!(other.get("/").unwrap().status, 200);
    let mut req = b"GET / HTTP/1.1\r\nHost: sticky.test\r\nX-Big: ".to_vec();
    req.extend(std::iter::repeat_n(b'a', 100 * 1024));
    req.extend_from_slice(b"\r\n\r\n");
    let resp = raw_exchange(d.public, &req).unwrap();
    assert!(
        resp.status == 431 || resp.status == 400,
        "got {}",
        resp.status
    );
    // Many headers adding up beyond the limit, too.
    let mut req = b"GET / HTTP/1.1\r\nHost: sticky.test\r\n".to_vec();
    for i in 0..2000 {
        req.extend_from_slice(format!("X-H{i}: {}\r\n", "b".repeat(50)).as_bytes());
    }
    req.extend_from_slice(b"\r\n");
    let resp = raw_exchange(d.public, &req).unwrap();
    assert!(
        resp.status == 431 || resp.status == 400,
        "got {}",
        resp.status
    );
    for _ in 0..20 {
        assert_eq!(other.get("/").unwrap().status, 200);
    }
}

#[test]
fn a_slowloris_client_is_cut_off_and_other_clients_carry_on() {
    let (_b, d) = three("header_timeout_ms = 1500");
    let mut slow = TcpStream::connect(d.public).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: sticky.test\r\nX-Slow: ")
        .unwrap();
    let started = Instant::now();
    let writer_stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let mut w = slow.try_clone().unwrap();
        let stop = Arc::clone(&writer_stop);
        std::thread::spawn(move || {
            // One header byte every 100 ms, until the director hangs up.
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(30) {
                if w.write_all(b"a").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    // Meanwhile, other clients are served promptly.
    let mut other = d.client();
    let mut worst = Duration::ZERO;
    while started.elapsed() < Duration::from_millis(1200) {
        let t = Instant::now();
        assert_eq!(other.get("/").unwrap().status, 200);
        worst = worst.max(t.elapsed());
    }
    assert!(
        worst < Duration::from_secs(1),
        "another client waited {worst:?}"
    );
    // The slow one is closed (hyper closes on header timeout; a 408 would
    // do too).
    let mut buf = Vec::new();
    let _ = slow.read_to_end(&mut buf);
    let closed_after = started.elapsed();
    writer_stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&buf);
    assert!(buf.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(
        closed_after >= Duration::from_millis(1400) && closed_after < Duration::from_secs(20),
        "closed after {closed_after:?}"
    );
    assert_eq!(other.get("/").unwrap().status, 200);
}

#[test]
fn the_reserved_path_gets_404_from_the_director_itself() {
    let ([ws1, ..], d) = three("");
    let token = sticky_proto::control::admin_token(SECRET.as_bytes());
    let auth = format!("Bearer {token}");
    let before = ws1.fences();
    for (method, path) in [
        ("GET", "/.sticky/health"),
        ("POST", "/.sticky/fence"),
        ("GET", "/.sticky/"),
        ("GET", "//.sticky/health"),
        ("GET", "/%2Esticky/health"),
        ("POST", "/x/../.sticky/fence"),
        ("GET", "/.STICKY/health"),
    ] {
        for headers in [&[][..], &[("Authorization", auth.as_str())][..]] {
            let mut c = d.client();
            let resp = c.request(method, path, headers, b"").unwrap();
            assert_eq!(resp.status, 404, "{method} {path}");
            assert_eq!(resp.text(), "404 Not Found\n");
            assert!(
                resp.backend().is_none(),
                "{method} {path} reached a backend"
            );
        }
    }
    assert_eq!(ws1.fences(), before, "a client fenced a web server");
    // Paths that merely look alike go through.
    let resp = d.client().get("/a/.sticky/health").unwrap();
    assert_eq!(resp.status, 200);
    assert!(resp.backend().is_some());
}
