//! HTTP/2 over TLS at the director's own HTTP/2 server (`h2_server.rs`),
//! with the `h2` crate as the client: many streams at once on one
//! connection, bodies large and small both ways, a stream reset in the
//! middle of its request, and `GOAWAY` at shutdown with the stream in
//! progress finished.

use std::sync::Arc;

use bytes::Bytes;
use h2::client::SendRequest;
use http::{Method, Request, StatusCode};
use sticky_director::{DirectorConfig, TlsFiles};
use sticky_test_support::{client_config, TestCa};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::support::{config, wait_until, Behavior, Running, WebServer, DEADLINE};

/// A director with TLS (a certificate of a CA made for the test) in
/// front of `servers`.
fn tls_config(ca: &TestCa, servers: &[&WebServer]) -> DirectorConfig {
    let cert = ca.issue("director");
    let mut config = config(servers, true);
    config.tls = Some(TlsFiles {
        cert: cert.cert,
        key: cert.key,
    });
    config
}

/// An HTTP/2 connection to `director` (ALPN `h2`), and the task running
/// it (its result: how the connection ended).
async fn connect(
    director: &Running,
    ca: &TestCa,
) -> (SendRequest<Bytes>, JoinHandle<Result<(), h2::Error>>) {
    let tls = tokio_rustls::TlsConnector::from(Arc::new(client_config(ca.ca_file(), &[b"h2"])));
    let tcp = TcpStream::connect(director.public).await.expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let stream = tls.connect(name, tcp).await.expect("TLS handshake");
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (send, conn) = h2::client::handshake(stream).await.expect("h2 handshake");
    (send, tokio::spawn(conn))
}

/// A request for `path` on `director`'s authority.
fn request(
    director: &Running,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Request<()> {
    let mut b = Request::builder().method(method).uri(format!(
        "https://localhost:{}{path}",
        director.public.port()
    ));
    for (name, value) in headers {
        b = b.header(*name, *value);
    }
    b.body(()).expect("request")
}

/// Sends `req` with `body` (none if empty) and reads the whole answer.
async fn exchange(
    send: &SendRequest<Bytes>,
    req: Request<()>,
    body: Bytes,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut send = send.clone().ready().await.expect("ready");
    let (response, mut tx) = send.send_request(req, body.is_empty()).expect("send");
    if !body.is_empty() {
        let mut rest = body;
        while !rest.is_empty() {
            tx.reserve_capacity(rest.len());
            let got = std::future::poll_fn(|cx| tx.poll_capacity(cx))
                .await
                .expect("capacity")
                .expect("capacity");
            let chunk = rest.split_to(got.min(rest.len()));
            tx.send_data(chunk, rest.is_empty()).expect("data");
        }
    }
    let resp = tokio::time::timeout(DEADLINE, response)
        .await
        .expect("an answer in time")
        .expect("response");
    let (parts, mut body) = resp.into_parts();
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("body");
        body.flow_control()
            .release_capacity(chunk.len())
            .expect("release");
        got.extend_from_slice(&chunk);
    }
    (parts.status, parts.headers, Bytes::from(got))
}

/// Forty streams at once on one connection, GETs and POSTs with bodies
/// small (the raw path) and large (streamed through hyper's client), and
/// a large answer: each stream gets its own answer, bodies intact both
/// ways, the headers HTTP/2 forbids removed, `Date` present.
#[tokio::test]
async fn concurrent_streams_on_one_connection_each_get_their_own_answer() {
    let ca = TestCa::new("h2-streams");
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(tls_config(&ca, &[&ws1])).await;
    let (send, _conn) = connect(&director, &ca).await;

    let mut streams = tokio::task::JoinSet::new();
    for i in 0..40usize {
        let send = send.clone();
        let (req, body) = match i % 4 {
            0 | 1 => (
                request(&director, Method::GET, &format!("/get/{i}"), &[]),
                Bytes::new(),
            ),
            2 => (
                request(
                    &director,
                    Method::POST,
                    &format!("/small/{i}"),
                    &[("content-length", "5")],
                ),
                Bytes::from(format!("{:05}", i)),
            ),
            // No declared length, larger than the raw path takes.
            _ => (
                request(&director, Method::POST, &format!("/large/{i}"), &[]),
                Bytes::from(vec![b'0' + (i % 10) as u8; 100_000 + i]),
            ),
        };
        streams.spawn(async move {
            let (status, headers, answer) = exchange(&send, req, body).await;
            (i, status, headers, answer)
        });
    }
    let mut answered = 0;
    while let Some(done) = streams.join_next().await {
        let (i, status, headers, answer) = done.expect("stream task");
        assert_eq!(status, StatusCode::OK, "stream {i}");
        let kind = ["get", "get", "small", "large"][i % 4];
        assert_eq!(answer, format!("ws1 /{kind}/{i}"), "stream {i}");
        assert!(headers.contains_key("date"), "{headers:?}");
        assert!(!headers.contains_key("keep-alive"), "{headers:?}");
        assert!(!headers.contains_key("sticky-owner"), "{headers:?}");
        answered += 1;
    }
    assert_eq!(answered, 40);
    let seen = ws1.seen();
    for i in (2..40).step_by(4) {
        let s = seen
            .iter()
            .find(|s| s.path == format!("/small/{i}"))
            .expect("small POST seen");
        assert_eq!(
            s.body,
            format!("{:05}", i).as_bytes(),
            "small body {i} intact"
        );
        assert_eq!(
            s.headers.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"https"[..])
        );
    }
    for i in (3..40).step_by(4) {
        let s = seen
            .iter()
            .find(|s| s.path == format!("/large/{i}"))
            .expect("large POST seen");
        assert_eq!(s.body.len(), 100_000 + i, "large body {i} whole");
        assert!(s.body.iter().all(|&b| b == b'0' + (i % 10) as u8));
    }

    // A 3 MB answer: more than the stream's and the connection's windows.
    let (status, _, big) = exchange(
        &send,
        request(&director, Method::GET, "/big/3000000", &[]),
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(big.len(), 3_000_000);
    assert!(big
        .iter()
        .enumerate()
        .all(|(i, &b)| b == b'a' + (i % 26) as u8));

    // The director's own answers go out on the same connection.
    let (status, headers, _) = exchange(
        &send,
        request(&director, Method::GET, "/.sticky/health", &[]),
        Bytes::new(),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the reserved path");
    assert!(headers.contains_key("date"), "{headers:?}");
    director.stop().await;
}

/// A stream reset while its request waits for the web server, and one
/// reset in the middle of its body: neither disturbs the connection's
/// other streams; the half-sent body never reaches a web server.
#[tokio::test]
async fn a_stream_reset_mid_request_leaves_the_connection_serving() {
    let ca = TestCa::new("h2-reset");
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(tls_config(&ca, &[&ws1])).await;
    let (send, conn) = connect(&director, &ca).await;

    // Reset while the web server holds the request.
    let gate = Arc::new(Notify::new());
    ws1.behave(Behavior::Hold(Arc::clone(&gate)));
    let mut ready = send.clone().ready().await.expect("ready");
    let (response, mut tx) = ready
        .send_request(request(&director, Method::GET, "/held", &[]), true)
        .expect("send");
    wait_until("the web server holds the request", || {
        let n = ws1.seen().iter().filter(|s| s.path == "/held").count();
        async move { n == 1 }
    })
    .await;
    tx.send_reset(h2::Reason::CANCEL);
    assert!(response.await.is_err(), "the reset stream has no answer");
    gate.notify_one();
    ws1.behave(Behavior::Normal);

    // Reset after 10 of 100 declared bytes.
    let mut ready = send.clone().ready().await.expect("ready");
    let (response, mut tx) = ready
        .send_request(
            request(
                &director,
                Method::POST,
                "/half",
                &[("content-length", "100")],
            ),
            false,
        )
        .expect("send");
    tx.send_data(Bytes::from_static(b"0123456789"), false)
        .expect("data");
    tx.send_reset(h2::Reason::CANCEL);
    assert!(response.await.is_err());

    // The connection serves on.
    for i in 0..3 {
        let (status, _, body) = exchange(
            &send,
            request(&director, Method::GET, &format!("/after/{i}"), &[]),
            Bytes::new(),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, format!("ws1 /after/{i}"));
    }
    assert!(
        !ws1.seen().iter().any(|s| s.path == "/half"),
        "a half-sent body never reaches the web server"
    );
    assert!(!conn.is_finished(), "the connection is still open");
    director.stop().await;
}

/// At shutdown the client is sent `GOAWAY`; the stream in progress is
/// still answered, then the connection closes cleanly and `serve`
/// returns.
#[tokio::test]
async fn shutdown_sends_goaway_and_finishes_the_stream_in_progress() {
    let ca = TestCa::new("h2-goaway");
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(tls_config(&ca, &[&ws1])).await;
    let (send, conn) = connect(&director, &ca).await;
    let gate = Arc::new(Notify::new());
    ws1.behave(Behavior::Hold(Arc::clone(&gate)));
    let in_progress = {
        let send = send.clone();
        let req = request(&director, Method::GET, "/in-progress", &[]);
        tokio::spawn(async move { exchange(&send, req, Bytes::new()).await })
    };
    wait_until("the web server holds the request", || {
        let n = ws1.seen().len();
        async move { n == 1 }
    })
    .await;
    let public = director.public;
    let stopped = tokio::spawn(director.stop());
    // The director stops taking connections, and tells this one to go
    // away (both on the one stop signal); the held request is then let
    // through.
    wait_until("the public listener is closed", || async move {
        TcpStream::connect(public).await.is_err()
    })
    .await;
    gate.notify_one();
    let (status, _, body) = tokio::time::timeout(DEADLINE, in_progress)
        .await
        .expect("answered in time")
        .expect("stream task");
    assert_eq!(status, StatusCode::OK, "the stream in progress is finished");
    assert_eq!(body, "ws1 /in-progress");
    let ended = tokio::time::timeout(DEADLINE, conn)
        .await
        .expect("the connection closes")
        .expect("connection task");
    assert!(ended.is_ok(), "closed by GOAWAY, not cut: {ended:?}");
    tokio::time::timeout(DEADLINE, stopped)
        .await
        .expect("serve returns")
        .expect("stop task");
}
