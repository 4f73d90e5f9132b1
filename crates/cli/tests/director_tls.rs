//! TLS at a real `sticky director`: HTTP/2 and HTTP/1.1 by ALPN on one
//! port (HTTP/1.1 on the fast path), the forwarded headers and `Secure` cookies over HTTPS, HSTS, the
//! redirect listener, WebSockets through TLS, sticky routing and failover
//! through TLS, and the
//! certificate reloaded on SIGHUP and over the admin API (a bad one
//! refused, the old one kept). Certificates come from a CA made at test
//! time; the client is hyper over rustls (and `curl --http2` when
//! installed).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::{Duration, Instant};

use sticky_test_support::director::{
    cluster_file, metric, BackendOptions, BackendProcess, DirectorProcess, ENDED_ON_DOWN,
};
use sticky_test_support::{
    find_program, read_response, require_program_from, temp_dir, tls_stream, wait_until, CertFiles,
    HttpClient, HttpVersion, HttpsClient, Sticky, TestCa, DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Not a test of its own: the backend process the other tests start
/// (returns at once in a normal run).
#[test]
fn director_test_backend() {
    sticky_test_support::director::stand_in::run_if_requested();
}

/// `[director]` lines for TLS with `cert` and `extra`.
fn tls_lines(cert: &CertFiles, extra: &str) -> String {
    format!(
        "tls_cert = {:?}\ntls_key = {:?}\n{extra}",
        cert.cert.display().to_string(),
        cert.key.display().to_string()
    )
}

/// A header the stand-in's `/echo` saw.
fn echoed(body: &str, name: &str) -> Option<String> {
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .map(str::to_owned)
}

#[test]
fn http2_and_http11_by_alpn_on_one_port_with_forwarded_headers_and_hsts() {
    let ca = TestCa::new("tls-alpn");
    let cert = ca.issue("director");
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(
            &[(&ws1, false)],
            &tls_lines(&cert, "hsts_max_age_secs = 600\n"),
        ),
    );
    for (version, alpn) in [
        (HttpVersion::Http2, &b"h2"[..]),
        (HttpVersion::Http1, &b"http/1.1"[..]),
    ] {
        let mut c = HttpsClient::connect(d.public, ca.ca_file(), version).unwrap();
        assert_eq!(c.alpn.as_deref(), Some(alpn), "ALPN chose {version:?}");
        assert_eq!(c.peer_cert, cert.der, "the configured certificate");
        // Several requests on the one connection.
        for _ in 0..3 {
            let resp = c.get("/echo", &[("X-Forwarded-Proto", "forged")]);
            assert_eq!(resp.status, 200, "{resp:?}");
            let body = resp.text();
            assert_eq!(
                echoed(&body, "x-forwarded-proto").as_deref(),
                Some("https"),
                "{version:?}: {body}"
            );
            assert_eq!(
                echoed(&body, "x-forwarded-for").as_deref(),
                Some("127.0.0.1")
            );
            let authority = format!("localhost:{}", d.public.port());
            assert_eq!(
                echoed(&body, "host").as_deref(),
                Some(authority.as_str()),
                "{version:?}: the web server gets Host (from :authority in HTTP/2)"
            );
            assert_eq!(
                resp.header("strict-transport-security"),
                Some("max-age=600")
            );
        }
        // The route cookie the director sets over TLS is Secure.
        let resp = c.get("/", &[]);
        let route = resp
            .headers_all("set-cookie")
            .find(|v| v.starts_with("sticky.route="))
            .unwrap_or_else(|| panic!("no route cookie: {resp:?}"))
            .to_owned();
        assert!(route.contains("; Secure"), "{route}");
    }
    // Plain HTTP on the TLS port gets no HTTP answer.
    assert!(
        HttpClient::new(d.public)
            .get("/echo")
            .map_or(true, |r| r.status != 200),
        "plain HTTP must not be served on the TLS listener"
    );
    // A client that does not trust the certificate's CA is refused.
    let other = TestCa::new("tls-alpn-other");
    let refused = HttpsClient::connect(d.public, other.ca_file(), HttpVersion::Http2);
    assert!(refused.is_err(), "an untrusted certificate was accepted");
    let metrics = d.admin_get("/metrics").text();
    let h2 =
        sticky_test_support::director::metric(&metrics, "sticky_director_http2_connections_total");
    assert!(h2 >= 1.0, "{metrics}");
    // The HTTP/1.1 requests (three to /echo, one to /) went through the
    // fast path, the HTTP/2 ones through hyper: the checks above hold on
    // both paths.
    let fast =
        sticky_test_support::director::metric(&metrics, "sticky_director_fast_path_requests_total");
    assert_eq!(fast, 4.0, "{metrics}");
}

#[test]
fn sticky_routing_and_failover_work_over_http2() {
    let ca = TestCa::new("tls-routing");
    let cert = ca.issue("director");
    let store = temp_dir("tls-routing-store");
    let options = BackendOptions {
        store: Some(store),
        ..BackendOptions::default()
    };
    let mut ws1 = BackendProcess::start_with("ws1", options.clone());
    let mut ws2 = BackendProcess::start_with("ws2", options);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false)], &tls_lines(&cert, "")),
    );
    let mut c = HttpsClient::connect(d.public, ca.ca_file(), HttpVersion::Http2).unwrap();
    let first = c.get("/count", &[]);
    assert_eq!(first.status, 200, "{first:?}");
    let route = first.set_cookie("sticky.route").flatten().unwrap();
    let sid = first.set_cookie("sticky.sid").flatten().unwrap();
    let server = |text: &str| {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("server="))
            .unwrap()
            .to_owned()
    };
    let count = |text: &str| -> u64 {
        text.split_whitespace()
            .find_map(|w| w.strip_prefix("count="))
            .unwrap()
            .parse()
            .unwrap()
    };
    let home = server(&first.text());
    assert_eq!(count(&first.text()), 1);
    // HTTP/2 may send each cookie in a field of its own.
    let route_cookie = format!("sticky.route={route}");
    let sid_cookie = format!("sticky.sid={sid}");
    let cookies = [
        ("cookie", route_cookie.as_str()),
        ("cookie", sid_cookie.as_str()),
    ];
    for n in 2..=5 {
        let resp = c.get("/count", &cookies);
        assert_eq!(server(&resp.text()), home, "stuck to its server: {resp:?}");
        assert_eq!(count(&resp.text()), n);
    }
    // Its server dies: the client moves, over the same TLS connection, and
    // keeps its session (the stand-ins share a store).
    let (dead, survivor) = if home == "ws1" {
        (&mut ws1, "ws2")
    } else {
        (&mut ws2, "ws1")
    };
    dead.kill9();
    let resp = c.get("/count", &cookies);
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(server(&resp.text()), survivor);
    assert_eq!(count(&resp.text()), 6, "the session survived: {resp:?}");
    let moved = resp.set_cookie("sticky.route").flatten().unwrap();
    let moved_cookie = format!("sticky.route={moved}");
    let resp = c.get(
        "/count",
        &[
            ("cookie", moved_cookie.as_str()),
            ("cookie", sid_cookie.as_str()),
        ],
    );
    assert_eq!(server(&resp.text()), survivor);
    assert_eq!(count(&resp.text()), 7);
    d.wait_state(&home, "down");
}

#[test]
fn websockets_tunnel_through_tls_over_http11() {
    use std::io::{BufReader, Read, Write};
    let ca = TestCa::new("tls-ws");
    let cert = ca.issue("director");
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false)], &tls_lines(&cert, "")),
    );
    let mut s = tls_stream(d.public, ca.ca_file(), &[b"http/1.1"]);
    s.write_all(
        b"GET /ws HTTP/1.1\r\nHost: localhost\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut reader = BufReader::new(s);
    let resp = read_response(&mut reader, true).unwrap();
    assert_eq!(resp.status, 101, "{resp:?}");
    assert_eq!(resp.header("upgrade"), Some("websocket"));
    for msg in [&b"ping"[..], b"hello through TLS", &[0u8, 1, 2, 255]] {
        reader.get_mut().write_all(msg).unwrap();
        reader.get_mut().flush().unwrap();
        let mut got = vec![0u8; msg.len()];
        reader.read_exact(&mut got).unwrap();
        assert_eq!(got, msg);
    }
    assert_eq!(
        d.server("ws1")["active"],
        1,
        "an open tunnel counts as active"
    );
}

#[test]
fn the_certificate_is_reloaded_on_sighup_and_over_the_admin_api() {
    let ca = TestCa::new("tls-reload");
    let first = ca.issue("first");
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false)], &tls_lines(&first, "")),
    );
    let seen = || {
        HttpsClient::connect(d.public, ca.ca_file(), HttpVersion::Http1)
            .unwrap()
            .peer_cert
    };
    assert_eq!(seen(), first.der);
    // A connection open across the reload keeps working.
    let mut open = HttpsClient::connect(d.public, ca.ca_file(), HttpVersion::Http2).unwrap();
    assert_eq!(open.get("/", &[]).status, 200);

    // Renewed in place, then SIGHUP.
    let second = ca.issue_into("second", &first.cert, &first.key);
    assert_ne!(second.der, first.der);
    d.signal("HUP");
    wait_until(
        DEADLINE,
        "new connections get the renewed certificate",
        || seen() == second.der,
    );
    assert_eq!(
        open.get("/", &[]).status,
        200,
        "the open connection lives on"
    );

    // A broken key: refused, the old certificate stays, the error says why.
    std::fs::write(&first.key, "-----BEGIN PRIVATE KEY-----\nnot a key\n").unwrap();
    let resp = d.admin_post("/api/reload");
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(
        resp.text().contains("TLS certificate not reloaded"),
        "{}",
        resp.text()
    );
    assert_eq!(seen(), second.der, "the old certificate is still served");
    d.signal("HUP");
    wait_until(DEADLINE, "the failed SIGHUP reload is logged", || {
        d.log_text().matches("TLS certificate not reloaded").count() >= 2
    });
    assert_eq!(seen(), second.der);
    // A key that is not the certificate's is refused as well.
    let stray = ca.issue("stray");
    std::fs::copy(&stray.key, &first.key).unwrap();
    let resp = d.admin_post("/api/reload");
    assert_eq!(resp.status, 400, "{resp:?}");
    assert!(resp.text().contains("is not the key"), "{}", resp.text());
    assert_eq!(seen(), second.der);

    // A good pair again, over the admin API.
    let third = ca.issue_into("third", &first.cert, &first.key);
    let resp = d.admin_post("/api/reload");
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.json()["tls_reloaded"], true);
    assert_eq!(seen(), third.der);
}

#[test]
fn the_redirect_listener_sends_plain_http_to_https() {
    let ca = TestCa::new("tls-redirect");
    let cert = ca.issue("director");
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(
            &[(&ws1, false)],
            &tls_lines(&cert, "redirect_listen = \"127.0.0.1:0\"\n"),
        ),
    );
    let redirect = d
        .log_text()
        .lines()
        .find(|l| l.contains("redirecting plain HTTP to HTTPS"))
        .and_then(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("redirect="))
                .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        })
        .unwrap_or_else(|| panic!("no redirect listener logged:\n{}", d.log_text()));
    let resp = HttpClient::new(redirect).get("/cart?item=1").unwrap();
    assert_eq!(resp.status, 301, "{resp:?}");
    // `HttpClient` sends `Host: sticky.test`.
    let expected = format!("https://sticky.test:{}/cart?item=1", d.public.port());
    assert_eq!(resp.header("location"), Some(expected.as_str()));
    let resp = HttpClient::new(redirect)
        .request("POST", "/pay", &[], b"x=1")
        .unwrap();
    assert_eq!(resp.status, 308, "a POST keeps its method: {resp:?}");
    assert_eq!(ws1.requests(), 0, "nothing plain reached the web server");
}

#[test]
fn curl_speaks_http2_to_the_director() {
    if !require_program_from("curl", "curl") {
        return;
    }
    let curl = find_program("curl").unwrap();
    let ca = TestCa::new("tls-curl");
    let cert = ca.issue("director");
    let ws1 = BackendProcess::start("ws1");
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false)], &tls_lines(&cert, "")),
    );
    let out = Command::new(curl)
        .args(["--silent", "--show-error", "--http2", "--cacert"])
        .arg(ca.ca_file())
        .args([
            "--write-out",
            "\nversion=%{http_version} status=%{http_code}",
        ])
        .arg(format!("https://localhost:{}/echo", d.public.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.ends_with("version=2 status=200"), "{text}");
    assert_eq!(echoed(&text, "x-forwarded-proto").as_deref(), Some("https"));
}

/// HTTP/2 requests with no body or a small declared one go to the web
/// server on the director's raw HTTP/1.1 connections (not hyper's
/// client): headers and bodies arrive intact, a large response streams
/// back whole, a body over the raw path's limit still streams through
/// hyper, and a request with a body refused by a server that fenced
/// itself is sent again (the body is held) rather than answered `503`.
#[test]
fn http2_requests_take_the_raw_path_with_bodies_and_fencing() {
    let ca = TestCa::new("tls-raw");
    let cert = ca.issue("director");
    let store = temp_dir("tls-raw-store");
    let options = BackendOptions {
        store: Some(store.clone()),
        ..BackendOptions::default()
    };
    let ws1 = BackendProcess::start_with("ws1", options.clone());
    let ws2 = BackendProcess::start_with("ws2", options);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false)], &tls_lines(&cert, "")),
    );
    d.wait_all_up();
    let mut c = HttpsClient::connect(d.public, ca.ca_file(), HttpVersion::Http2).unwrap();
    let first = c.get("/count", &[]);
    assert_eq!(first.status, 200, "{first:?}");
    let route = first.set_cookie("sticky.route").flatten().unwrap();
    let sid = first.set_cookie("sticky.sid").flatten().unwrap();
    let home_name = first.header("x-backend").unwrap().to_owned();
    let home = if home_name == "ws1" { &ws1 } else { &ws2 };
    let cookie = format!("sticky.route={route}; sticky.sid={sid}");
    let cookies = [("cookie", cookie.as_str())];

    // A small body, and one whose echo is too large for one read.
    for size in [5, 60_000] {
        let body: Vec<u8> = (0..size).map(|i| b'a' + (i % 26) as u8).collect();
        let resp = c
            .request("POST", "/echo", &cookies, &body)
            .unwrap_or_else(|e| panic!("POST of {size} bytes: {e}"));
        assert_eq!(resp.status, 200, "{resp:?}");
        assert_eq!(resp.header("x-backend"), Some(home_name.as_str()));
        let text = resp.text();
        assert_eq!(echoed(&text, "x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(
            echoed(&text, "content-length").as_deref(),
            Some(size.to_string().as_str()),
            "{size}"
        );
        assert!(resp.body.ends_with(&body), "body of {size} bytes intact");
    }
    let metrics = d.admin_get("/metrics").text();
    let raw =
        sticky_test_support::director::metric(&metrics, "sticky_director_h2_raw_requests_total");
    assert_eq!(
        raw, 3.0,
        "the GET and both POSTs took the raw path: {metrics}"
    );

    // Over the raw path's limit (64 KiB): streamed through hyper.
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let resp = c.request("POST", "/echo", &cookies, &big).unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert!(resp.body.ends_with(&big), "the large body arrived intact");
    let metrics = d.admin_get("/metrics").text();
    let raw =
        sticky_test_support::director::metric(&metrics, "sticky_director_h2_raw_requests_total");
    assert_eq!(raw, 3.0, "{metrics}");

    // The home server fences itself; a POST sent at once (before a health
    // check tells the director its new epoch) is refused untouched and
    // sent again with the new epoch, its body with it.
    let mut refused_then_served = false;
    for _ in 0..5 {
        d.wait_all_up();
        let refused = home.refused_stale();
        home.post("/_test/fence");
        let resp = c.request("POST", "/echo", &cookies, b"kept whole").unwrap();
        assert_eq!(resp.status, 200, "{resp:?}");
        assert!(resp.body.ends_with(b"kept whole"), "{resp:?}");
        if home.refused_stale() > refused {
            refused_then_served = true;
            break;
        }
    }
    assert!(
        refused_then_served,
        "no request ever beat the health check to the fenced server"
    );
    let _ = std::fs::remove_dir_all(store);
}

/// An HTTP/2 response (the raw path) whose body waits for a server the
/// health checks mark down ends at once, as on HTTP/1.1
/// (`director_failover.rs`): the stream is reset rather than left
/// waiting for bytes that may never come.
#[test]
fn an_http2_response_body_from_a_server_marked_down_ends_at_once() {
    let ca = TestCa::new("tls-body-down");
    let cert = ca.issue("director");
    let [ws1, ws2] = ["ws1", "ws2"].map(BackendProcess::start);
    let d = DirectorProcess::start(
        STICKY,
        &cluster_file(&[(&ws1, false), (&ws2, false)], &tls_lines(&cert, "")),
    );
    d.wait_all_up();
    let mut c = HttpsClient::connect(d.public, ca.ca_file(), HttpVersion::Http2).unwrap();
    let first = c.get("/value", &[]);
    let route = first.set_cookie("sticky.route").flatten().unwrap();
    let home_name = first.header("x-backend").unwrap().to_owned();
    let home = if home_name == "ws1" { &ws1 } else { &ws2 };
    let started = Instant::now();
    let held = std::thread::spawn(move || {
        let cookie = format!("sticky.route={route}");
        let r = c.request("GET", "/_test/stall?ms=20000", &[("cookie", &cookie)], b"");
        (r, started.elapsed())
    });
    wait_until(DEADLINE, "the stalled response is under way", || {
        d.server(&home_name)["active"].as_u64() == Some(1)
    });
    home.post("/_test/sick");
    d.wait_state(&home_name, "down");
    let (r, took) = held.join().unwrap();
    let e = r.expect_err("a body cut short is not a whole response");
    assert!(e.starts_with("body:"), "{e}");
    // Well before the server would have sent the rest (20 s).
    assert!(took < Duration::from_secs(15), "ended after {took:?}");
    let metrics = d.admin_get("/metrics").text();
    assert_eq!(metric(&metrics, ENDED_ON_DOWN), 1.0);
}
