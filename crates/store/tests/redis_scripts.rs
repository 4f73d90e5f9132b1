//! Redis as a session store answers exactly like `sticky store`: the same
//! random sequence of session commands, sent through the async client to
//! a store served in this process ([`StoreServer`]) and to a real
//! `redis-server` (the client's scripts, `docs/redis.md`), gives the same
//! replies; takeover promises (`prepare`) included. Skipped loudly when `redis-server` is not installed, unless
//! `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::time::Duration;

use sticky_client::{ClientError, ClientOptions, Prepared, StoreClient, StoredSession};
use sticky_test_support::{have_redis, random_u64, RedisProcess, StoreServer};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A reply with the TTL rounded to whole minutes (the two stores are asked
/// a few milliseconds apart).
fn normalized(r: Result<Option<StoredSession>, ClientError>) -> String {
    match r {
        Ok(Some(mut s)) => {
            s.ttl = s
                .ttl
                .map(|t| Duration::from_secs(t.as_secs().div_ceil(60) * 60));
            format!(
                "Ok(Some({:?} payload={:?}))",
                s,
                String::from_utf8_lossy(&s.payload)
            )
        }
        other => format!("{other:?}"),
    }
}

/// A prepare's answer with the copy's TTL rounded as by [`normalized`].
fn normalized_prepare(r: Result<Prepared, ClientError>) -> String {
    match r {
        Ok(Prepared::Copy { session, lease }) => {
            format!("Ok(Copy {} {lease:?})", normalized(Ok(Some(session))))
        }
        other => format!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_scripts_answer_exactly_like_sticky_store() {
    if !have_redis(false) {
        return;
    }
    // A first start (no recovery window), and promises that outlive the
    // run on both stores, so that no answer depends on when one expires.
    let claim_window = Duration::from_secs(600);
    let store = StoreServer::start(sticky_store::StoreConfig {
        restarted: false,
        claim_window,
        ..sticky_store::StoreConfig::default()
    });
    let redis = RedisProcess::start(&[]);
    let options = ClientOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        claim_window,
        ..ClientOptions::default()
    };
    let native = StoreClient::new(&store.addr().to_string(), options.clone()).unwrap();
    let scripted = StoreClient::new(&redis.url(), options).unwrap();
    let seed = random_u64() | 1;
    let mut rng = Rng(seed);
    // Four keys at a time, replaced by fresh ones every 100 steps so that
    // missing sessions come up again.
    let names: [&[u8]; 4] = [b"a", b"b\x00\xff", b"c{x}", b"d"];
    let ttl = |rng: &mut Rng| match rng.below(3) {
        0 => None,
        1 => Some(Duration::from_secs(600)),
        _ => Some(Duration::from_secs(1200)),
    };
    // A stamp near `current` (the one stored, if any): equal, just below,
    // just above, a generation up, or anywhere small.
    let near = |rng: &mut Rng, current: Option<sticky_proto::Stamp>| {
        let c = current.unwrap_or_default();
        let (g, s) = (c.generation, c.seq);
        match rng.below(6) {
            0 => c,
            1 => sticky_proto::Stamp::new(g, s.saturating_sub(1)),
            2 => sticky_proto::Stamp::new(g.saturating_sub(1), s + 5),
            3 => sticky_proto::Stamp::new(g, s + 1),
            4 => sticky_proto::Stamp::new(g + 1, 0),
            _ => sticky_proto::Stamp::new(rng.below(3), rng.below(3)),
        }
    };
    let mut seen = HashMap::<String, usize>::new();
    for step in 0..3000 {
        let mut key = names[rng.below(names.len() as u64) as usize].to_vec();
        key.extend_from_slice(format!("/{}", step / 100).as_bytes());
        let key = &key[..];
        let current = native.get(key).await.unwrap().map(|c| c.stamp);
        let op = rng.below(7);
        let (what, a, b) = match op {
            0 | 1 => {
                let s = near(&mut rng, current);
                let t = ttl(&mut rng);
                let owner = format!("ws{}", rng.below(3));
                let payload = rng.next().to_le_bytes();
                (
                    format!("put {s} {t:?}"),
                    format!("{:?}", native.put(key, s, &owner, t, &payload).await),
                    format!("{:?}", scripted.put(key, s, &owner, t, &payload).await),
                )
            }
            2 => (
                "get".to_owned(),
                normalized(native.get(key).await),
                normalized(scripted.get(key).await),
            ),
            3 => {
                // Expect the stored stamp half of the time, so that claims
                // succeed as well as fail.
                let expected = match current {
                    Some(c) if rng.below(2) == 0 => c,
                    _ => near(&mut rng, current),
                };
                let new = match rng.below(4) {
                    0 => expected,
                    1 => near(&mut rng, Some(expected)),
                    _ => expected.next_generation().unwrap(),
                };
                let t = ttl(&mut rng);
                (
                    format!("claim {expected} -> {new}"),
                    format!("{:?}", native.claim(key, expected, new, "wsc", t).await),
                    format!("{:?}", scripted.claim(key, expected, new, "wsc", t).await),
                )
            }
            4 => {
                let t = ttl(&mut rng);
                (
                    format!("touch {t:?}"),
                    format!("{:?}", native.touch(key, t).await),
                    format!("{:?}", scripted.touch(key, t).await),
                )
            }
            5 => {
                // A takeover's promise at, just above or well above the
                // stored generation, by one of three claimers: later puts,
                // claims and deletes meet it.
                let g = current.map_or(0, |c| c.generation) + rng.below(3);
                let owner = format!("wsp{}", rng.below(3));
                (
                    format!("prepare {g} {owner}"),
                    normalized_prepare(native.prepare(key, g, &owner, Duration::ZERO).await),
                    normalized_prepare(scripted.prepare(key, g, &owner, Duration::ZERO).await),
                )
            }
            _ => {
                let s = near(&mut rng, current);
                let t = match rng.below(2) {
                    0 => None,
                    _ => Some(Duration::from_secs(900)),
                };
                (
                    format!("delete {s} {t:?}"),
                    format!("{:?}", native.delete(key, s, t).await),
                    format!("{:?}", scripted.delete(key, s, t).await),
                )
            }
        };
        assert_eq!(
            a,
            b,
            "step {step} (seed {seed}): {what} on {:?}: sticky store (left) and Redis (right) differ",
            String::from_utf8_lossy(key)
        );
        let outcome = match a.strip_prefix("Err(") {
            Some(e) => format!("Err:{}", e.split([' ', '(', '{', ')']).next().unwrap()),
            None => a.split(['(', ' ']).next().unwrap().to_owned(),
        };
        let op = what.split(' ').next().unwrap();
        *seen.entry(format!("{op} {outcome}")).or_default() += 1;
    }
    eprintln!("seed {seed}, outcomes: {seen:?}");
    // Every branch was taken.
    for must in [
        "put Ok",
        "put Err:Stale",
        "get Ok",
        "claim Ok",
        "claim Err:Stale",
        "claim Err:Deleted",
        "claim Err:NoSession",
        "claim Err:Server",
        "touch Ok",
        "delete Ok",
        "delete Err:Stale",
        "prepare Ok",
        "prepare Err:Stale",
        "prepare Err:Promised",
        "put Err:Promised",
        "claim Err:Promised",
        "delete Err:Promised",
    ] {
        assert!(seen.contains_key(must), "{must} never happened: {seen:?}");
    }
}
