//! [`StoreClient::put_many`] (the re-copy's pipelined `SESS.PUT`s) against
//! a `sticky store` served in this process and a real `redis-server` (the
//! Lua scripts, by `EVALSHA`): every outcome is the one `put` would give,
//! in order, within one pipeline; and on Redis a flushed script is sent
//! again by `EVAL` for the puts it failed.
//!
//! The Redis half is skipped, loudly, when `redis-server` is not
//! installed, unless `CI` is set (then it fails).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sticky_client::{ClientError, ClientOptions, Put, StoreClient};
use sticky_proto::Stamp;
use sticky_store::StoreConfig;
use sticky_test_support::{have_redis, RedisProcess, StoreServer};

fn options() -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

const TTL: Option<Duration> = Some(Duration::from_secs(60));

fn key(i: usize) -> Vec<u8> {
    format!("{i:032x}").into_bytes()
}

/// 300 puts in one call, one of them to a key holding a higher stamp and
/// one repeating the stored stamp: each answered as `put` answers it.
async fn outcomes_are_puts_in_order(c: &StoreClient, what: &str) {
    c.put(&key(7), Stamp::new(5, 1), "other@1", TTL, b"newer")
        .await
        .unwrap();
    c.put(&key(8), Stamp::new(1, 1), "ws@1", TTL, b"same")
        .await
        .unwrap();
    let keys: Vec<Vec<u8>> = (0..300).map(key).collect();
    let payloads: Vec<Vec<u8>> = (0..300).map(|i| format!("p{i}").into_bytes()).collect();
    let puts: Vec<Put<'_>> = (0..300)
        .map(|i| Put {
            key: &keys[i],
            stamp: Stamp::new(1, 1),
            owner: "ws@1",
            ttl: TTL,
            payload: &payloads[i],
        })
        .collect();
    let outcomes = c.put_many(&puts).await;
    assert_eq!(outcomes.len(), 300, "{what}");
    for (i, r) in outcomes.iter().enumerate() {
        match i {
            7 => assert_eq!(
                r,
                &Err(ClientError::Stale {
                    stored: Stamp::new(5, 1)
                }),
                "{what}: a higher stamp is kept"
            ),
            _ => assert_eq!(r, &Ok(()), "{what}: put {i}"),
        }
    }
    for (i, sent) in payloads.iter().enumerate() {
        let copy = c.get(&key(i)).await.unwrap().expect("a copy");
        let (stamp, payload) = match i {
            7 => (Stamp::new(5, 1), &b"newer"[..]),
            8 => (Stamp::new(1, 1), &b"same"[..]),
            _ => (Stamp::new(1, 1), &sent[..]),
        };
        assert_eq!(
            (copy.stamp, &copy.payload[..]),
            (stamp, payload),
            "{what}: key {i}"
        );
    }
    assert!(c.put_many(&[]).await.is_empty());
}

#[tokio::test]
async fn put_many_on_a_sticky_store() {
    let store = StoreServer::start(StoreConfig {
        restarted: false,
        ..StoreConfig::default()
    });
    let c = StoreClient::new(&store.addr().to_string(), options()).unwrap();
    outcomes_are_puts_in_order(&c, "sticky store").await;
}

#[tokio::test]
async fn put_many_on_redis_resends_flushed_scripts() {
    if !have_redis(false) {
        return;
    }
    let redis = RedisProcess::start(&[]);
    let c = StoreClient::new(&redis.url(), options()).unwrap();
    outcomes_are_puts_in_order(&c, "redis").await;

    // Redis lost its scripts: each `EVALSHA` of the pipeline answers
    // NOSCRIPT, and each put is sent again by `EVAL`.
    let mut raw = redis.conn();
    let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut raw).unwrap();
    let keys: Vec<Vec<u8>> = (1000..1010).map(key).collect();
    let puts: Vec<Put<'_>> = keys
        .iter()
        .map(|k| Put {
            key: k,
            stamp: Stamp::new(2, 1),
            owner: "ws@1",
            ttl: TTL,
            payload: b"again",
        })
        .collect();
    assert!(c.put_many(&puts).await.iter().all(Result::is_ok));
    for k in &keys {
        let copy = c.get(k).await.unwrap().expect("a copy");
        assert_eq!(
            (copy.stamp, &copy.payload[..]),
            (Stamp::new(2, 1), &b"again"[..])
        );
    }
}
