//! `StoreClient` over TLS: a `sticky store` serving TLS
//! (`sticky+tls://`) and a real `redis-server` with `--tls-port`
//! (`rediss://`), certificates from a CA made at test time. The session
//! commands work; certificate verification is on by default (the
//! system's trust store does not know the test CA) and cannot be turned
//! off (`#insecure` is refused); a plain client gets nothing from a TLS
//! store.
//!
//! The Redis tests are skipped, loudly, without `redis-server` (failing
//! under CI).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::Duration;

use sticky_client::{ClientError, ClientOptions, StoreClient};
use sticky_proto::Stamp;
use sticky_store::{Store, StoreConfig};
use sticky_test_support::{have_redis, CertFiles, RedisProcess, TestCa};

fn options(ca: Option<&TestCa>) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(100),
        tls_ca: ca.map(|c| c.ca_file().to_owned()),
        ..ClientOptions::default()
    }
}

/// A `sticky store` in this process, serving TLS with `cert` (or plain).
async fn store(cert: Option<&CertFiles>) -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut store = Store::new(StoreConfig::default());
    if let Some(c) = cert {
        store = store.with_tls(&c.cert, &c.key).unwrap();
    }
    tokio::spawn(async move {
        store
            .serve(listener, std::future::pending::<()>())
            .await
            .unwrap();
    });
    addr
}

/// The store's certificate was refused (verification on).
fn assert_refused_certificate(result: Result<Duration, ClientError>) {
    match result {
        Err(e) => assert!(
            e.to_string().contains("UnknownIssuer"),
            "not a certificate refusal: {e}"
        ),
        Ok(_) => panic!("a certificate from an unknown CA was accepted"),
    }
}

/// A put and a get of one session through `client`.
async fn round_trip(client: &StoreClient) {
    client.ping().await.unwrap();
    let stamp = Stamp::new(1, 1);
    client
        .put(
            b"tls-session",
            stamp,
            "ws1",
            Some(Duration::from_secs(60)),
            b"over TLS",
        )
        .await
        .unwrap();
    let got = client.get(b"tls-session").await.unwrap().unwrap();
    assert_eq!(&got.payload[..], b"over TLS");
    assert_eq!(got.stamp, stamp);
}

#[tokio::test]
async fn sticky_store_over_tls_verified_against_the_ca_file() {
    let ca = TestCa::new("client-tls-store");
    let cert = ca.issue("store");
    let addr = store(Some(&cert)).await;
    let url = format!("sticky+tls://127.0.0.1:{}", addr.port());
    let client = StoreClient::new(&url, options(Some(&ca))).unwrap();
    assert_eq!(client.addr(), url);
    round_trip(&client).await;

    // Verification is on by default: the system's roots do not know the
    // test CA, nor does another CA.
    let system = StoreClient::new(&url, options(None)).unwrap();
    assert_refused_certificate(system.ping().await);
    let other = TestCa::new("client-tls-store-other");
    let wrong = StoreClient::new(&url, options(Some(&other))).unwrap();
    assert_refused_certificate(wrong.ping().await);
    // Dialled by name, the certificate matches too.
    let by_name = format!("sticky+tls://localhost:{}", addr.port());
    let named = StoreClient::new(&by_name, options(Some(&ca))).unwrap();
    named.ping().await.unwrap();

    // A plain client gets no answer from the TLS store.
    let plain = StoreClient::new(&format!("sticky://{addr}"), options(None)).unwrap();
    assert!(plain.ping().await.is_err(), "plain RESP answered over TLS");
    // And a TLS client none from a plain store.
    let plain_addr = store(None).await;
    let tls_to_plain = StoreClient::new(
        &format!("sticky+tls://127.0.0.1:{}", plain_addr.port()),
        options(Some(&ca)),
    )
    .unwrap();
    assert!(tls_to_plain.ping().await.is_err());
}

#[tokio::test]
async fn verification_cannot_be_turned_off_and_a_bad_ca_file_is_named() {
    for url in [
        "rediss://127.0.0.1:6380/#insecure",
        "sticky+tls://127.0.0.1:7380/#insecure",
    ] {
        match StoreClient::new(url, options(None)) {
            Err(ClientError::InvalidConfig(m)) => {
                assert!(m.contains("verification"), "{m}");
            }
            other => panic!("{url}: {other:?}"),
        }
    }
    let missing = ClientOptions {
        tls_ca: Some("/nonexistent/ca.pem".into()),
        ..options(None)
    };
    match StoreClient::new("rediss://127.0.0.1:6380", missing) {
        Err(ClientError::InvalidConfig(m)) => assert!(m.contains("/nonexistent/ca.pem"), "{m}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn redis_over_tls_runs_the_session_scripts() {
    if !have_redis(false) {
        return;
    }
    let ca = TestCa::new("client-tls-redis");
    let cert = ca.issue("redis");
    let redis = RedisProcess::start_tls(&cert, ca.ca_file(), &[]);
    let url = redis.tls_url();
    let client = StoreClient::new(&url, options(Some(&ca))).unwrap();
    round_trip(&client).await;
    let system = StoreClient::new(&url, options(None)).unwrap();
    // The system's trust store does not know the test CA.
    assert_refused_certificate(system.ping().await);
    // The TLS port speaks nothing else.
    let plain_url = url.replacen("rediss://", "redis://", 1);
    let plain = StoreClient::new(&plain_url, options(None)).unwrap();
    assert!(plain.ping().await.is_err());
}
