//! Regression tests for the store findings of the adversarial review
//! (issue 15): cross-protocol requests, and what an unauthenticated or
//! non-reading client can hold.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sticky_store::{Store, StoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::time::Instant;

const PASS: &str = "s3cret";

async fn start(config: StoreConfig) -> (SocketAddr, Store, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let store = Store::new(config);
    let serving = store.clone();
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = serving
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await;
    });
    (addr, store, stop_tx)
}

/// Reads until the store closes the connection; fails after `limit`.
async fn read_to_close(c: &mut TcpStream, limit: Duration) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return all,
            Ok(Ok(n)) => all.extend_from_slice(&buf[..n]),
            Err(_) => panic!(
                "the store kept the connection open for {limit:?} (got {} bytes)",
                all.len()
            ),
        }
    }
}

async fn get(addr: SocketAddr, auth: Option<&str>, key: &str) -> Vec<u8> {
    let mut c = TcpStream::connect(addr).await.expect("connect");
    if let Some(p) = auth {
        c.write_all(format!("AUTH {p}\r\n").as_bytes())
            .await
            .unwrap();
    }
    c.write_all(format!("GET {key}\r\nQUIT\r\n").as_bytes())
        .await
        .unwrap();
    let out = read_to_close(&mut c, Duration::from_secs(10)).await;
    if auth.is_some() {
        out[5..].to_vec()
    } else {
        out
    }
}

/// A web page can make a browser POST to the store's port; the body's lines
/// must not run as commands.
#[tokio::test]
async fn an_http_request_closes_the_connection_before_its_body_runs() {
    let (addr, _store, _stop) = start(StoreConfig::default()).await;
    for request in [
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\n\r\nSET k v\r\n",
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nSET k v\r\n",
        "host: evil.example\r\nSET k v\r\n",
    ] {
        let mut c = TcpStream::connect(addr).await.expect("connect");
        c.write_all(request.as_bytes()).await.unwrap();
        let out = read_to_close(&mut c, Duration::from_secs(10)).await;
        assert!(
            !String::from_utf8_lossy(&out).contains("+OK"),
            "no command ran: {out:?}"
        );
        assert_eq!(get(addr, None, "k").await, b"$-1\r\n+OK\r\n", "k was not set");
    }
    // A real GET with an argument that merely looks odd is still served.
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"GET HTTP/1.1\r\nQUIT\r\n").await.unwrap();
    assert_eq!(
        read_to_close(&mut c, Duration::from_secs(10)).await,
        b"$-1\r\n+OK\r\n"
    );
}

/// Before AUTH a connection may buffer only a little: an unfinished 15 MB
/// request (below the bulk limit) is cut off at once.
#[tokio::test]
async fn an_unauthenticated_connection_cannot_buffer_a_large_request() {
    let config = StoreConfig {
        requirepass: Some(PASS.into()),
        ..StoreConfig::default()
    };
    let (addr, _store, _stop) = start(config).await;
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$15000000\r\n")
        .await
        .unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut refused = false;
    for _ in 0..16 {
        if c.write_all(&chunk).await.is_err() {
            refused = true;
            break;
        }
    }
    let out = read_to_close(&mut c, Duration::from_secs(10)).await;
    assert!(
        refused || String::from_utf8_lossy(&out).contains("query buffer"),
        "{out:?}"
    );
    // The same size is fine once authenticated (the limit is not global).
    let mut c = TcpStream::connect(addr).await.expect("connect");
    c.write_all(format!("AUTH {PASS}\r\n").as_bytes())
        .await
        .unwrap();
    let body = vec![b'x'; 200 * 1024];
    let mut req = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n", body.len()).into_bytes();
    req.extend_from_slice(&body);
    req.extend_from_slice(b"\r\nQUIT\r\n");
    c.write_all(&req).await.unwrap();
    assert_eq!(
        read_to_close(&mut c, Duration::from_secs(10)).await,
        b"+OK\r\n+OK\r\n+OK\r\n"
    );
}

/// An idle unauthenticated connection is closed after the auth timeout,
/// not after the (longer) idle timeout.
#[tokio::test]
async fn a_connection_that_never_authenticates_is_closed() {
    let config = StoreConfig {
        requirepass: Some(PASS.into()),
        auth_timeout: Duration::from_millis(300),
        idle_timeout: Some(Duration::from_secs(300)),
        ..StoreConfig::default()
    };
    let (addr, store, _stop) = start(config).await;
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let t = Instant::now();
    read_to_close(&mut c, Duration::from_secs(10)).await;
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "{:?}",
        t.elapsed()
    );
    // An authenticated one stays.
    let mut ok = TcpStream::connect(addr).await.expect("connect");
    ok.write_all(format!("AUTH {PASS}\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = [0u8; 5];
    ok.read_exact(&mut buf).await.unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    ok.write_all(b"PING\r\n").await.unwrap();
    let mut pong = [0u8; 7];
    ok.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"+PONG\r\n");
    assert_eq!(store.snapshot().connected_clients, 1);
}

/// Guessing passwords on one connection ends after a few tries.
#[tokio::test]
async fn repeated_wrong_passwords_close_the_connection() {
    let config = StoreConfig {
        requirepass: Some(PASS.into()),
        ..StoreConfig::default()
    };
    let (addr, _store, _stop) = start(config).await;
    let mut c = TcpStream::connect(addr).await.expect("connect");
    let guesses: String = (0..1000).map(|i| format!("AUTH guess{i}\r\n")).collect();
    let _ = c.write_all(guesses.as_bytes()).await;
    let out =
        String::from_utf8_lossy(&read_to_close(&mut c, Duration::from_secs(10)).await).into_owned();
    assert_eq!(out.matches("WRONGPASS").count(), 10, "{out}");
    assert!(out.contains("too many failed AUTH attempts"), "{out}");
}

/// A client that pipelines requests and never reads its replies is
/// dropped once a write has waited for the idle timeout.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped() {
    let config = StoreConfig {
        idle_timeout: Some(Duration::from_millis(500)),
        ..StoreConfig::default()
    };
    let (addr, store, _stop) = start(config).await;
    let mut setup = TcpStream::connect(addr).await.expect("connect");
    let big = vec![b'v'; 512 * 1024];
    let mut req = format!("*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n${}\r\n", big.len()).into_bytes();
    req.extend_from_slice(&big);
    req.extend_from_slice(b"\r\nQUIT\r\n");
    setup.write_all(&req).await.unwrap();
    read_to_close(&mut setup, Duration::from_secs(10)).await;

    let c = TcpStream::connect(addr).await.expect("connect");
    // Shrink our receive window's chance to absorb everything: never read.
    let gets = "GET big\r\n".repeat(400);
    let (_rd, mut wr) = c.into_split();
    let writer = tokio::spawn(async move {
        for _ in 0..100 {
            if wr.write_all(gets.as_bytes()).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if store.snapshot().connected_clients == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "a client that never reads kept its connection"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    writer.abort();
}
