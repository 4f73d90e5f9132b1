//! Tests of [`StoreClient`]: address parsing and backend selection, then
//! the session commands and the connection's behaviour against the
//! scripted [`FakeStore`].

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use bytes::Bytes;
use sticky_proto::resp::Reply;
use tokio::net::TcpListener;

use super::*;
use crate::fake_store::{Act, FakeStore};
use crate::scripts::{self, SCRIPTS};

#[test]
fn ttls_travel_as_milliseconds() {
    assert_eq!(ttl_ms(None), 0);
    assert_eq!(ttl_ms(Some(Duration::ZERO)), 1, "never 'no expiry'");
    assert_eq!(ttl_ms(Some(Duration::from_nanos(1))), 1);
    assert_eq!(ttl_ms(Some(Duration::from_micros(1500))), 2);
    assert_eq!(ttl_ms(Some(Duration::from_secs(30))), 30_000);
    assert_eq!(ttl_ms(Some(Duration::MAX)), i64::MAX.unsigned_abs());
}

#[test]
fn new_parses_addresses_without_connecting() {
    // No runtime, no server: construction must not connect.
    let c = StoreClient::new("127.0.0.1:1", ClientOptions::default()).unwrap();
    assert_eq!(c.addr(), "127.0.0.1:1");
    let c = StoreClient::new("[::1]:7000", ClientOptions::default()).unwrap();
    assert_eq!(c.addr(), "[::1]:7000");
    let c = StoreClient::new("redis://:hunter2@localhost:7000/", ClientOptions::default()).unwrap();
    assert!(!c.addr().contains("hunter2"), "{}", c.addr());
    assert!(!format!("{c:?}").contains("hunter2"));
    let c = StoreClient::new("app:hunter2@localhost:7000", ClientOptions::default()).unwrap();
    assert!(!c.addr().contains("hunter2"), "{}", c.addr());
    assert_eq!(c.addr(), "sticky://localhost:7000");
    match StoreClient::new("redis://:hunter2@host:x", ClientOptions::default()) {
        Err(e @ ClientError::InvalidConfig(_)) => assert!(!e.to_string().contains("hunter2")),
        other => panic!("{other:?}"),
    }
    let opts = ClientOptions {
        password: Some("hunter2".into()),
        ..ClientOptions::default()
    };
    assert!(!format!("{opts:?}").contains("hunter2"));
    for bad in ["", "http://example.com", "host:notaport", "redis://"] {
        assert!(
            matches!(
                StoreClient::new(bad, ClientOptions::default()),
                Err(ClientError::InvalidConfig(_))
            ),
            "{bad:?}"
        );
    }
}

#[test]
fn the_address_selects_the_backend() {
    let backend = |addr: &str| {
        StoreClient::new(addr, ClientOptions::default())
            .unwrap()
            .inner
            .backend
    };
    for native in [
        "127.0.0.1:7000",
        "localhost:7000",
        "sticky://127.0.0.1:7000",
        "sticky://:pw@127.0.0.1:7000/?protocol=resp3",
    ] {
        assert_eq!(backend(native), Backend::Native, "{native}");
    }
    for redis in [
        "redis://127.0.0.1:6379",
        "redis://app:pw@127.0.0.1:6379/",
        "redis://127.0.0.1:6379/?protocol=resp3",
        "valkey://127.0.0.1:6379",
    ] {
        assert_eq!(backend(redis), Backend::Scripts, "{redis}");
    }
    let c = StoreClient::new("sticky://u:pw@127.0.0.1:7000", ClientOptions::default()).unwrap();
    assert_eq!(c.addr(), "sticky://127.0.0.1:7000");
    let c = StoreClient::new("redis://u:pw@127.0.0.1:6379", ClientOptions::default()).unwrap();
    assert_eq!(c.addr(), "redis://127.0.0.1:6379");
    assert!(format!("{c:?}").contains("Scripts"));
    assert!(matches!(
        StoreClient::new("sticky://", ClientOptions::default()),
        Err(ClientError::InvalidConfig(_))
    ));

    // Redis Cluster: scripts, through the cluster client.
    let c = StoreClient::new(
        "redis+cluster://app:p@ss@127.0.0.1:7001,127.0.0.1:7002/?protocol=resp3",
        ClientOptions::default(),
    )
    .unwrap();
    assert_eq!(c.inner.backend, Backend::Scripts);
    assert!(matches!(c.inner.connector, Connector::Cluster(_)));
    assert_eq!(
        c.addr(),
        "redis+cluster://127.0.0.1:7001,127.0.0.1:7002/?protocol=resp3"
    );
    assert_eq!(c.inner.display_addr, "127.0.0.1:7001,127.0.0.1:7002");
    assert!(!format!("{c:?}").contains("p@ss"));
    for bad in [
        "redis+cluster://",
        "redis+cluster://127.0.0.1:7001,,127.0.0.1:7002",
        "redis+cluster://:secret@h:x",
    ] {
        match StoreClient::new(bad, ClientOptions::default()) {
            Err(e @ ClientError::InvalidConfig(_)) => {
                assert!(!e.to_string().contains("secret"), "{e}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn redis_backend_sends_evalsha_and_falls_back_to_eval() {
    // A fake Redis that has no scripts loaded: SCRIPT LOAD is refused,
    // EVALSHA answers NOSCRIPT, EVAL answers like the script would.
    let store = FakeStore::start(|args: &[Bytes]| {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        Act::Reply(match name.as_str() {
            "SCRIPT" => Reply::error("ERR scripting is disabled"),
            "EVALSHA" => Reply::error("NOSCRIPT No matching script. Please use EVAL."),
            "EVAL" if &args[3][..] == b"sticky:{gone}" => Reply::Null,
            "EVAL" => Reply::error("STALE 4 2"),
            "PING" => Reply::Simple("PONG"),
            _ => Reply::error(format!("ERR unknown command '{name}'")),
        })
    })
    .await;
    let c = StoreClient::new(&format!("redis://{}", store.addr), options(2000)).unwrap();
    assert_eq!(
        c.put(b"k", Stamp::new(4, 1), "ws1", None, b"p").await,
        Err(ClientError::Stale {
            stored: Stamp::new(4, 2)
        })
    );
    let sent = store.commands();
    let names: Vec<String> = sent
        .iter()
        .map(|c| String::from_utf8_lossy(&c[0]).to_ascii_uppercase())
        .collect();
    // SCRIPT LOAD of every script on connect (refused, logged), then
    // EVALSHA, EVAL.
    let loads = Script::ALL.len();
    let mut want = vec!["SCRIPT"; loads];
    want.extend(["EVALSHA", "EVAL"]);
    assert_eq!(names, want, "{names:?}");
    assert_eq!(
        sent[loads],
        args(&[
            b"EVALSHA",
            SCRIPTS.get(Script::Put).get_hash().as_bytes(),
            b"2",
            b"sticky:{k}",
            b"sticky:promise:{k}",
            b"4",
            b"1",
            b"ws1",
            b"0",
            b"p"
        ])
    );
    assert_eq!(&sent[loads + 1][1][..], scripts::PUT.as_bytes());
    assert_eq!(&sent[loads + 1][2..], &sent[loads][2..]);
    assert_eq!(c.get(b"gone").await, Ok(None));
    // Deletes without a TTL leave it to the script's default.
    let _ = c.delete(b"k", Stamp::new(9, 0), None).await;
    assert_eq!(
        store.last_command(),
        args(&[
            b"EVAL",
            scripts::DEL.as_bytes(),
            b"2",
            b"sticky:{k}",
            b"sticky:promise:{k}",
            b"9",
            b"0"
        ])
    );
}

fn options(request_ms: u64) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_millis(request_ms),
        connect_timeout: Duration::from_millis(request_ms),
        max_backoff: Duration::from_millis(400),
        ..ClientOptions::default()
    }
}

fn client(store: &FakeStore, request_ms: u64) -> StoreClient {
    StoreClient::new(&store.addr.to_string(), options(request_ms)).unwrap()
}

fn args(list: &[&[u8]]) -> Vec<Bytes> {
    list.iter().map(|a| Bytes::copy_from_slice(a)).collect()
}

/// A fake store with a little logic: puts answer `STALE 5 5` for stamps
/// up to (5, 5), keys name the reply of the other commands.
fn scripted(args: &[Bytes]) -> Act {
    let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
    let key = args.get(1).cloned().unwrap_or_default();
    let stamp_arg = |i: usize| -> u64 { std::str::from_utf8(&args[i]).unwrap().parse().unwrap() };
    let reply = match name.as_str() {
        "PING" => Reply::Simple("PONG"),
        "SESS.PUT" | "SESS.DEL" => {
            let sent = Stamp::new(stamp_arg(2), stamp_arg(3));
            if &key[..] == b"oom" {
                Reply::error("OOM over --max-memory")
            } else if sent <= Stamp::new(5, 5) {
                Reply::error("STALE 5 5")
            } else {
                Reply::OK
            }
        }
        "SESS.GET" => match &key[..] {
            b"none" => Reply::Null,
            b"live" => Reply::Array(vec![
                Reply::bulk("live"),
                Reply::Int(2),
                Reply::Int(9),
                Reply::bulk("web-2"),
                Reply::Int(60_000),
                Reply::bulk(b"\x00payload\r\n"),
            ]),
            b"tomb" => Reply::Array(vec![
                Reply::bulk("tombstone"),
                Reply::Int(3),
                Reply::Int(0),
                Reply::bulk(""),
                Reply::Int(-1),
                Reply::bulk(""),
            ]),
            b"short" => Reply::Array(vec![Reply::bulk("live")]),
            b"hang" => return Act::Hang,
            _ => Reply::Int(7),
        },
        "SESS.CLAIM" => match &key[..] {
            b"ok" => Reply::OK,
            b"stale" => Reply::error("STALE 2 10"),
            b"deleted" => Reply::error("DELETED 3 0"),
            b"none" => Reply::error("NOSESSION no such session"),
            _ => Reply::error("ERR new stamp must be higher than the expected one"),
        },
        "SESS.TOUCH" => Reply::Int(i64::from(&key[..] == b"live")),
        _ => Reply::error(format!("ERR unknown command '{name}'")),
    };
    Act::Reply(reply)
}

#[tokio::test]
async fn session_commands_against_a_fake_store() {
    let store = FakeStore::start(scripted).await;
    let c = client(&store, 2000);

    assert!(c.ping().await.unwrap() < Duration::from_secs(2));

    let key: &[u8] = b"k\x00\xff\r\n";
    let payload: &[u8] = b"\x00\x01binary\r\n\xff";
    let ttl = Some(Duration::from_secs(30));
    c.put(key, Stamp::new(6, 0), "web-1", ttl, payload)
        .await
        .unwrap();
    assert_eq!(
        store.last_command(),
        args(&[b"SESS.PUT", key, b"6", b"0", b"web-1", b"30000", payload])
    );
    // STALE naming our own stamp: an earlier attempt landed.
    c.put(b"k", Stamp::new(5, 5), "web-1", None, b"x")
        .await
        .unwrap();
    assert_eq!(store.last_command()[5], Bytes::from_static(b"0"), "no TTL");
    assert_eq!(
        c.put(b"k", Stamp::new(5, 4), "web-1", None, b"x").await,
        Err(ClientError::Stale {
            stored: Stamp::new(5, 5)
        })
    );
    assert!(matches!(
        c.put(b"oom", Stamp::new(9, 9), "web-1", None, b"x").await,
        Err(ClientError::OutOfMemory(_))
    ));

    assert_eq!(c.get(b"none").await, Ok(None));
    let live = c.get(b"live").await.unwrap().unwrap();
    assert_eq!(live.stamp, Stamp::new(2, 9));
    assert_eq!(live.owner, "web-2");
    assert_eq!(live.ttl, Some(Duration::from_secs(60)));
    assert_eq!(live.payload, Bytes::from_static(b"\x00payload\r\n"));
    assert!(!live.deleted);
    let tomb = c.get(b"tomb").await.unwrap().unwrap();
    assert!(tomb.deleted);
    assert!(matches!(
        c.get(b"short").await,
        Err(ClientError::Protocol(_))
    ));
    assert!(matches!(c.get(b"int").await, Err(ClientError::Protocol(_))));

    let (old, new) = (Stamp::new(2, 9), Stamp::new(3, 0));
    c.claim(b"ok", old, new, "web-3", Some(Duration::from_millis(1500)))
        .await
        .unwrap();
    assert_eq!(
        store.last_command(),
        args(&[
            b"SESS.CLAIM",
            b"ok",
            b"2",
            b"9",
            b"3",
            b"0",
            b"web-3",
            b"1500"
        ])
    );
    assert_eq!(
        c.claim(b"stale", old, new, "w", None).await,
        Err(ClientError::Stale {
            stored: Stamp::new(2, 10)
        })
    );
    assert_eq!(
        c.claim(b"deleted", old, new, "w", None).await,
        Err(ClientError::Deleted {
            stamp: Stamp::new(3, 0)
        })
    );
    assert_eq!(
        c.claim(b"none", old, new, "w", None).await,
        Err(ClientError::NoSession)
    );
    assert!(matches!(
        c.claim(b"other", old, new, "w", None).await,
        Err(ClientError::Server(m)) if m.starts_with("ERR new stamp")
    ));

    assert_eq!(
        c.touch(b"live", Some(Duration::from_secs(5))).await,
        Ok(true)
    );
    assert_eq!(
        store.last_command(),
        args(&[b"SESS.TOUCH", b"live", b"5000"])
    );
    assert_eq!(c.touch(b"gone", None).await, Ok(false));
    assert_eq!(store.last_command(), args(&[b"SESS.TOUCH", b"gone", b"0"]));

    c.delete(b"k", Stamp::new(7, 1), None).await.unwrap();
    assert_eq!(store.last_command(), args(&[b"SESS.DEL", b"k", b"7", b"1"]));
    c.delete(b"k", Stamp::new(7, 2), Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(
        store.last_command(),
        args(&[b"SESS.DEL", b"k", b"7", b"2", b"60000"])
    );
    c.delete(b"k", Stamp::new(5, 5), None).await.unwrap();
    assert_eq!(
        c.delete(b"k", Stamp::new(1, 0), None).await,
        Err(ClientError::Stale {
            stored: Stamp::new(5, 5)
        })
    );

    // Everything above went over one connection, and so do many
    // concurrent requests from clones.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200u64 {
        let c = c.clone();
        tasks.spawn(async move {
            if i % 2 == 0 {
                c.get(b"live").await.map(|s| s.is_some())
            } else {
                c.put(b"k", Stamp::new(10, i), "w", None, b"p")
                    .await
                    .map(|()| true)
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        assert_eq!(r.unwrap(), Ok(true));
    }
    assert_eq!(store.accepted(), 1);
}

#[tokio::test]
async fn lazy_connect_and_auth() {
    let store = FakeStore::start(|args: &[Bytes]| {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        Act::Reply(match (name.as_str(), args.len()) {
            ("AUTH", 3) if &args[1][..] == b"app" && &args[2][..] == b"s3cret" => Reply::OK,
            ("AUTH", _) => Reply::error("WRONGPASS invalid username-password pair"),
            ("PING", _) => Reply::Simple("PONG"),
            _ => Reply::error("NOAUTH Authentication required."),
        })
    })
    .await;
    let addr = store.addr.to_string();

    let c = StoreClient::new(&addr, options(1000)).unwrap();
    tokio::task::yield_now().await;
    assert_eq!(store.accepted(), 0, "new() must not connect");
    // No password: the fake store wants one for everything but PING.
    assert!(matches!(c.get(b"k").await, Err(ClientError::Auth(m)) if m.contains("NOAUTH")));
    assert_eq!(store.accepted(), 1);

    let wrong = ClientOptions {
        username: Some("app".into()),
        password: Some("nope".into()),
        ..options(1000)
    };
    let c = StoreClient::new(&addr, wrong).unwrap();
    let err = c.ping().await.unwrap_err();
    assert!(matches!(err, ClientError::Auth(_)), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!err.to_string().contains("nope"));
    // In backoff: fails at once, with the same kind of error.
    assert!(matches!(c.ping().await, Err(ClientError::Auth(_))));

    let right = ClientOptions {
        username: Some("app".into()),
        password: Some("s3cret".into()),
        ..options(1000)
    };
    let c = StoreClient::new(&addr, right).unwrap();
    c.ping().await.unwrap();
    let c = StoreClient::new(&format!("sticky://app:s3cret@{addr}"), options(1000)).unwrap();
    c.ping().await.unwrap();
    assert_eq!(c.addr(), format!("sticky://{addr}"));
}

#[tokio::test]
async fn frozen_store_times_out_and_connection_is_replaced() {
    let store = FakeStore::start(scripted).await;
    let c = client(&store, 300);
    c.ping().await.unwrap();
    let t = Instant::now();
    assert_eq!(c.get(b"hang").await, Err(ClientError::Timeout));
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(2),
        "{took:?}"
    );
    // The silent connection was dropped: the next request uses a new one.
    c.ping().await.unwrap();
    assert_eq!(store.accepted(), 2);
}

#[tokio::test]
async fn store_down_fails_fast_backs_off_and_recovers() {
    // A port with nothing listening.
    let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = port_holder.local_addr().unwrap();
    drop(port_holder);

    let c = StoreClient::new(&addr.to_string(), options(1000)).unwrap();
    let t = Instant::now();
    let err = c.ping().await.unwrap_err();
    assert!(matches!(err, ClientError::ConnectionLost(_)), "{err:?}");
    assert!(err.is_retryable());
    // While in backoff, requests fail at once without connecting.
    let err = c.get(b"k").await.unwrap_err();
    assert!(
        matches!(&err, ClientError::ConnectionLost(m) if m.contains("unavailable, reconnecting")),
        "{err:?}"
    );
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );

    // The store comes up: the client recovers within a few backoffs.
    let store = FakeStore::start_on(addr, Arc::new(scripted)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match c.ping().await {
            Ok(_) => break,
            Err(e) => {
                assert!(e.is_retryable(), "{e:?}");
                assert!(Instant::now() < deadline, "no recovery: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    assert_eq!(store.accepted(), 1);

    // The store stops: in-flight connection breaks, retryable errors,
    // then recovery once it is back.
    store.stop();
    let err = loop {
        match c.ping().await {
            Ok(_) => {
                assert!(Instant::now() < deadline, "stop not noticed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(e) => break e,
        }
    };
    assert!(err.is_retryable(), "{err:?}");
    drop(store);
    let store = FakeStore::start_on(addr, Arc::new(scripted)).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while let Err(e) = c.ping().await {
        assert!(e.is_retryable(), "{e:?}");
        assert!(Instant::now() < deadline, "no recovery: {e}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(store.accepted(), 1);
}

#[tokio::test]
async fn backoff_does_not_hammer_a_failing_store() {
    // Accepts connections and closes them at once.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let acc = accepted.clone();
    let server = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            acc.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });

    let c = StoreClient::new(&addr.to_string(), options(1000)).unwrap();
    let t = Instant::now();
    let mut requests = 0;
    while t.elapsed() < Duration::from_millis(600) {
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..20 {
            let c = c.clone();
            tasks.spawn(async move { c.ping().await });
        }
        while let Some(r) = tasks.join_next().await {
            assert!(r.unwrap().unwrap_err().is_retryable());
            requests += 1;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.abort();
    // Backoffs of >= 50, 100, 200, 200 ms (jitter halves at most; the
    // cap is 400 ms) leave room for at most 6 attempts in 600 ms.
    let attempts = accepted.load(Ordering::SeqCst);
    assert!(
        (1..=6).contains(&attempts),
        "{attempts} connection attempts for {requests} requests"
    );
    assert!(requests > 100);
}

/// What the ownership commands send: the native commands to a `sticky
/// store`, the scripts with their keys (and the claim window last) to
/// Redis; and how a `FORGETFUL` prepare and a Redis Cluster's `owned` are
/// answered.
#[tokio::test]
async fn ownership_commands_on_the_wire() {
    let store = FakeStore::start(|args: &[Bytes]| {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        Act::Reply(match name.as_str() {
            "SESS.PREPARE" if &args[1][..] == b"gone" => Reply::error(
                "FORGETFUL 1234 the store restarted and may have forgotten this session",
            ),
            "SESS.PREPARE" if &args[1][..] == b"busy" => {
                Reply::error("FORGETFULNESS 1 is not an answer")
            }
            "SESS.PREPARE" => Reply::Null,
            "SESS.OWNED" => {
                Reply::Array(vec![Reply::bulk("3"), Reply::Array(vec![Reply::bulk("a")])])
            }
            "SESS.GET" => Reply::Array(vec![
                Reply::bulk("live"),
                Reply::Int(2),
                Reply::Int(9),
                Reply::bulk("web-2@1"),
                Reply::Int(60_000),
                Reply::bulk("p"),
                Reply::Int(-2),
            ]),
            "SCRIPT" => Reply::error("ERR scripting is disabled"),
            "EVALSHA" | "EVAL" => Reply::OK,
            _ => Reply::OK,
        })
    })
    .await;
    let mut opts = options(2000);
    opts.claim_window = Duration::from_millis(1500);
    let native = StoreClient::new(&store.addr.to_string(), opts.clone()).unwrap();
    native.lease("ws1@7", Duration::from_secs(3)).await.unwrap();
    assert_eq!(
        store.last_command(),
        args(&[b"SESS.LEASE", b"ws1@7", b"3000"])
    );
    native.kill("ws1@7", false).await.unwrap();
    assert_eq!(store.last_command(), args(&[b"SESS.KILL", b"ws1@7"]));
    native.kill("ws1@7", true).await.unwrap();
    assert_eq!(
        store.last_command(),
        args(&[b"SESS.KILL", b"ws1@7", b"FORCE"])
    );
    let (s, lease) = native.get_with_lease(b"k").await.unwrap().unwrap();
    assert_eq!((s.owner.as_str(), lease), ("web-2@1", LeaseState::Dead));
    assert_eq!(
        store.last_command(),
        args(&[b"SESS.GET", b"k", b"WITHLEASE"])
    );
    assert_eq!(
        native
            .prepare(b"k", 4, "ws2@1", Duration::from_secs(86_400))
            .await,
        Ok(Prepared::NoCopy)
    );
    assert_eq!(
        store.last_command(),
        args(&[b"SESS.PREPARE", b"k", b"4", b"ws2@1", b"86400000"])
    );
    assert_eq!(
        native.prepare(b"gone", 4, "ws2@1", Duration::ZERO).await,
        Ok(Prepared::Forgetful {
            uptime: Duration::from_millis(1234)
        })
    );
    assert_eq!(store.last_command()[4], Bytes::from_static(b"0"));
    assert!(matches!(
        native.prepare(b"busy", 4, "ws2@1", Duration::ZERO).await,
        Err(ClientError::Server(m)) if m.starts_with("FORGETFULNESS")
    ));
    assert_eq!(
        native.owned("ws1@7", 2).await,
        Ok((3, vec![Bytes::from_static(b"a")]))
    );
    assert_eq!(store.last_command(), args(&[b"SESS.OWNED", b"ws1@7", b"2"]));

    let redis = StoreClient::new(&format!("redis://{}", store.addr), opts).unwrap();
    let sha = |s: Script| SCRIPTS.get(s).get_hash().as_bytes().to_vec();
    redis.lease("ws1@7", Duration::from_secs(3)).await.unwrap();
    assert_eq!(
        store.last_command(),
        args(&[
            b"EVALSHA",
            &sha(Script::Lease),
            b"2",
            b"sticky:lease:{ws1@7}",
            b"sticky:dead:{ws1@7}",
            b"ws1@7",
            b"3000"
        ])
    );
    redis.kill("ws1@7", true).await.unwrap();
    assert_eq!(
        store.last_command(),
        args(&[
            b"EVALSHA",
            &sha(Script::Kill),
            b"2",
            b"sticky:lease:{ws1@7}",
            b"sticky:dead:{ws1@7}",
            b"ws1@7",
            b"FORCE",
            b"1500"
        ])
    );
    let _ = redis.prepare(b"k", 4, "ws2@1", Duration::ZERO).await;
    assert_eq!(
        store
            .commands()
            .iter()
            .rev()
            .find(|c| c.len() > 3 && c[1] == sha(Script::Prepare)),
        Some(&args(&[
            b"EVALSHA",
            &sha(Script::Prepare),
            b"2",
            b"sticky:{k}",
            b"sticky:promise:{k}",
            b"4",
            b"ws2@1",
            b"0",
            b"1500"
        ]))
    );
    let _ = redis.owned("ws1@7", 0).await;
    assert_eq!(
        store.last_command(),
        args(&[
            b"EVALSHA",
            &sha(Script::Owned),
            b"0",
            b"ws1@7",
            b"0",
            OWNED_SCAN_COUNT.to_string().as_bytes()
        ])
    );

    let cluster = StoreClient::new("redis+cluster://127.0.0.1:1", options(200)).unwrap();
    assert!(matches!(
        cluster.owned("ws1@7", 0).await,
        Err(ClientError::Server(m)) if m.contains("Redis Cluster")
    ));
}
