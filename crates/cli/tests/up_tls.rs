//! `sticky up --tls-cert FILE --tls-key FILE`: the local cluster's shop
//! over HTTPS (HTTP/2 and HTTP/1.1), its session cookie `Secure`, and a
//! session that survives `kill -9` of its web server, all through TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sticky_test_support::{
    signal, wait_until, Answer, HttpVersion, HttpsClient, Response, Sticky, TestCa, UpProcess,
    DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// `POST /api/counter` with `cookies` (name, value); the jar is updated
/// from the answer's `Set-Cookie`.
fn increment(c: &mut HttpsClient, cookies: &mut Vec<(String, String)>) -> (Response, Answer) {
    let header: Vec<String> = cookies.iter().map(|(n, v)| format!("{n}={v}")).collect();
    let header = header.join("; ");
    let headers: Vec<(&str, &str)> = if header.is_empty() {
        Vec::new()
    } else {
        vec![("cookie", header.as_str())]
    };
    let resp = c
        .request("POST", "/api/counter", &headers, b"")
        .unwrap_or_else(|e| panic!("POST /api/counter over HTTPS: {e}"));
    for name in ["sticky.sid", "sticky.route"] {
        if let Some(Some(v)) = resp.set_cookie(name) {
            cookies.retain(|(n, _)| n != name);
            cookies.push((name.to_owned(), v));
        }
    }
    let answer = Answer::from(&resp);
    (resp, answer)
}

#[test]
fn up_serves_the_shop_over_https_and_sessions_survive_a_killed_server() {
    let ca = TestCa::new("up-tls");
    let cert = ca.issue("shop");
    let up = UpProcess::start(
        STICKY,
        &[
            "--web",
            "2",
            "--standby",
            "0",
            "--stores",
            "2",
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
        ],
    );
    up.wait_all_up();
    let stdout = up.stdout_text();
    assert!(
        stdout.contains(&format!("shop:       https://{}/", up.shop())),
        "{stdout}"
    );

    let mut h1 = HttpsClient::connect(up.shop(), ca.ca_file(), HttpVersion::Http1).unwrap();
    assert_eq!(h1.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(
        h1.get("/", &[]).status,
        200,
        "the shop's page over HTTP/1.1"
    );

    let mut c = HttpsClient::connect(up.shop(), ca.ca_file(), HttpVersion::Http2).unwrap();
    assert_eq!(c.alpn.as_deref(), Some(&b"h2"[..]));
    let mut cookies = Vec::new();
    let (first, answer) = increment(&mut c, &mut cookies);
    assert_eq!(answer.value, 1);
    for name in ["sticky.sid", "sticky.route"] {
        let set = first
            .headers_all("set-cookie")
            .find(|v| v.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie: {first:?}"));
        assert!(set.contains("Secure"), "{name} over HTTPS: {set}");
    }
    let home = answer.server.clone();
    for n in 2..=4 {
        let (_, a) = increment(&mut c, &mut cookies);
        assert_eq!((a.value, a.server.as_str()), (n, home.as_str()));
    }

    signal(up.pid_of(&home), "KILL");
    wait_until(
        DEADLINE,
        &format!("sticky status shows {home} exited"),
        || up.status_of(&home)["process"] == "exited",
    );
    let (_, a) = increment(&mut c, &mut cookies);
    assert_ne!(a.server, home, "moved off the killed server");
    assert_eq!(a.value, 5, "the session survived, over TLS");
    let (_, b) = increment(&mut c, &mut cookies);
    assert_eq!((b.value, b.server.as_str()), (6, a.server.as_str()));
}
