//! The ownership commands of `docs/safety.md` through [`StoreClient`], the
//! same cases against a `sticky store` served in this process
//! ([`StoreServer`], the native `SESS.*` commands) and a real
//! `redis-server` ([`RedisProcess`], the Lua scripts of `docs/redis.md`):
//! leases and dead records, kills with and without force,
//! `get_with_lease`, prepares whose promises refuse older writes and keep
//! one claimer per generation, and owned scans. Both backends must answer alike.
//!
//! The Redis half is skipped, loudly, when `redis-server` is not
//! installed, unless `CI` is set (then it fails). The restart cases
//! (`RECOVERING`, `FORGETFUL`) are `sticky store`'s alone: Redis has no
//! notion of a restart here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sticky_client::{ClientError, ClientOptions, LeaseState, Prepared, StoreClient};
use sticky_proto::Stamp;
use sticky_store::StoreConfig;
use sticky_test_support::{have_redis, RedisProcess, StoreServer};

/// One store of either kind and a client of it.
struct Backend {
    name: &'static str,
    client: StoreClient,
    _store: Box<dyn std::any::Any>,
}

fn options(claim_window: Duration) -> ClientOptions {
    ClientOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        claim_window,
        ..ClientOptions::default()
    }
}

/// A `sticky store` (a first start: no recovery window) and, if
/// `redis-server` is installed, a Redis, both keeping promises and dead
/// records for `claim_window`.
fn backends(claim_window: Duration) -> Vec<Backend> {
    let store = StoreServer::start(StoreConfig {
        restarted: false,
        claim_window,
        ..StoreConfig::default()
    });
    let mut all = vec![Backend {
        name: "sticky store",
        client: StoreClient::new(&store.addr().to_string(), options(claim_window)).unwrap(),
        _store: Box::new(store),
    }];
    if have_redis(false) {
        let redis = RedisProcess::start(&[]);
        all.push(Backend {
            name: "redis",
            client: StoreClient::new(&redis.url(), options(claim_window)).unwrap(),
            _store: Box::new(redis),
        });
    }
    let names: Vec<&str> = all.iter().map(|b| b.name).collect();
    eprintln!("running against {names:?}");
    all
}

const MINUTE: Duration = Duration::from_secs(60);

/// A `sticky store` that starts as a restarted one (inside its recovery
/// window, then possibly forgetful), keeping promises for `claim_window`,
/// and a client of it.
fn restarted_store(claim_window: Duration) -> (StoreServer, StoreClient) {
    let store = StoreServer::start(StoreConfig {
        restarted: true,
        claim_window,
        ..StoreConfig::default()
    });
    let c = StoreClient::new(&store.addr().to_string(), options(MINUTE)).unwrap();
    (store, c)
}

fn stale(g: u64, s: u64) -> ClientError {
    ClientError::Stale {
        stored: Stamp::new(g, s),
    }
}

fn promised(generation: u64) -> ClientError {
    ClientError::Promised { generation }
}

/// Polls `f` until it returns `Some`, for up to 10 s.
async fn eventually<T, F: std::future::Future<Output = Option<T>>>(
    what: &str,
    mut f: impl FnMut() -> F,
) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn leases_kills_and_dead_records() {
    for b in backends(MINUTE) {
        let (c, name) = (&b.client, b.name);
        c.lease("ws1@7", MINUTE).await.unwrap();
        c.lease("ws1@7", MINUTE).await.unwrap();
        // A live lease refuses a plain kill, naming how long it has left.
        match c.kill("ws1@7", false).await {
            Err(ClientError::Live { remaining }) => assert!(
                remaining > Duration::from_secs(50) && remaining <= MINUTE,
                "{name}: {remaining:?}"
            ),
            other => panic!("{name}: expected LIVE, got {other:?}"),
        }
        // Proven death ends it at once, and then it is never renewed.
        c.kill("ws1@7", true).await.unwrap();
        assert_eq!(
            c.lease("ws1@7", MINUTE).await,
            Err(ClientError::Dead),
            "{name}"
        );
        c.kill("ws1@7", false)
            .await
            .unwrap_or_else(|e| panic!("{name}: a dead lease can be killed again: {e}"));
        // A new epoch is a new lease.
        c.lease("ws1@8", MINUTE).await.unwrap();
        // A lease nobody holds can be killed, and then never granted.
        c.kill("ws2@1", false).await.unwrap();
        assert_eq!(
            c.lease("ws2@1", MINUTE).await,
            Err(ClientError::Dead),
            "{name}"
        );
        // A lease that expired can be killed without force.
        c.lease("ws3@1", Duration::from_millis(30)).await.unwrap();
        eventually(&format!("{name}: the 30 ms lease expires"), || async {
            c.kill("ws3@1", false).await.ok()
        })
        .await;
        assert_eq!(c.lease("ws3@1", MINUTE).await, Err(ClientError::Dead));
        // Bad owners are refused alike.
        for bad in ["", &"x".repeat(257)] {
            match c.lease(bad, MINUTE).await {
                Err(ClientError::Server(m)) => {
                    assert_eq!(m, "ERR owner must be 1 to 256 bytes", "{name}")
                }
                other => panic!("{name}: {other:?}"),
            }
            assert!(matches!(
                c.kill(bad, true).await,
                Err(ClientError::Server(_))
            ));
        }
    }
}

#[tokio::test]
async fn get_with_lease_reports_the_owners_lease() {
    for b in backends(MINUTE) {
        let (c, name) = (&b.client, b.name);
        assert_eq!(c.get_with_lease(b"none").await, Ok(None), "{name}");
        c.put(b"sid", Stamp::new(1, 3), "ws1@7", None, b"data")
            .await
            .unwrap();
        let (copy, lease) = c.get_with_lease(b"sid").await.unwrap().unwrap();
        assert_eq!(copy, c.get(b"sid").await.unwrap().unwrap(), "{name}");
        assert_eq!(lease, LeaseState::Absent, "{name}: never granted");
        c.lease("ws1@7", MINUTE).await.unwrap();
        match c.get_with_lease(b"sid").await.unwrap().unwrap().1 {
            LeaseState::Live(left) => assert!(
                left > Duration::from_secs(50) && left <= MINUTE,
                "{name}: {left:?}"
            ),
            other => panic!("{name}: expected a live lease, got {other:?}"),
        }
        // Another owner's lease says nothing about this copy.
        c.kill("ws9@9", false).await.unwrap();
        assert!(c.get_with_lease(b"sid").await.unwrap().unwrap().1.is_live());
        c.kill("ws1@7", true).await.unwrap();
        assert_eq!(
            c.get_with_lease(b"sid").await.unwrap().unwrap().1,
            LeaseState::Dead,
            "{name}"
        );
        // A tombstone has no owner, so no lease.
        c.delete(b"sid", Stamp::new(1, 4), None).await.unwrap();
        let (tomb, lease) = c.get_with_lease(b"sid").await.unwrap().unwrap();
        assert!(tomb.deleted, "{name}");
        assert_eq!(lease, LeaseState::Absent, "{name}");
    }
}

#[tokio::test]
async fn prepare_promises_refuse_older_writes_and_other_claimers_of_a_generation() {
    for b in backends(MINUTE) {
        let (c, name) = (&b.client, b.name);
        c.put(b"sid", Stamp::new(4, 2), "ws1@7", None, b"v2")
            .await
            .unwrap();
        c.lease("ws1@7", MINUTE).await.unwrap();
        match c.prepare(b"sid", 5, "ws2@1", Duration::ZERO).await {
            Ok(Prepared::Copy { session, lease }) => {
                assert_eq!(session.stamp, Stamp::new(4, 2), "{name}");
                assert_eq!(&session.payload[..], b"v2", "{name}");
                assert_eq!(session.owner, "ws1@7", "{name}");
                assert!(lease.is_live(), "{name}: {lease:?}");
            }
            other => panic!("{name}: expected the copy, got {other:?}"),
        }
        // The old owner's late writes are refused with the promise...
        assert_eq!(
            c.put(b"sid", Stamp::new(4, 3), "ws1@7", None, b"v3").await,
            Err(promised(5)),
            "{name}"
        );
        assert_eq!(
            c.delete(b"sid", Stamp::new(4, 3), None).await,
            Err(promised(5)),
            "{name}"
        );
        assert_eq!(
            c.claim(b"sid", Stamp::new(4, 2), Stamp::new(4, 3), "ws1@7", None)
                .await,
            Err(promised(5)),
            "{name}"
        );
        // ...but a stale write is still STALE first.
        assert_eq!(
            c.put(b"sid", Stamp::new(4, 1), "ws1@7", None, b"old").await,
            Err(stale(4, 2)),
            "{name}"
        );
        // A prepare at or below the copy's generation: someone claimed it.
        assert_eq!(
            c.prepare(b"sid", 4, "ws3@1", Duration::ZERO).await,
            Err(stale(4, 2)),
            "{name}"
        );
        // One claimer per generation: another owner is refused it, lower
        // or higher; the same claimer again is promised; a higher
        // generation outbids.
        for other in ["ws1@9", "ws3@1"] {
            assert_eq!(
                c.prepare(b"sid", 5, other, Duration::ZERO).await,
                Err(promised(5)),
                "{name}: {other}"
            );
        }
        assert!(matches!(
            c.prepare(b"sid", 5, "ws2@1", Duration::ZERO).await,
            Ok(Prepared::Copy { .. })
        ));
        assert!(matches!(
            c.prepare(b"sid", 6, "ws3@1", Duration::ZERO).await,
            Ok(Prepared::Copy { .. })
        ));
        // Now generation 6 is ws3@1's: ws2@1's write of 5 is refused.
        assert_eq!(
            c.put(b"sid", Stamp::new(5, 0), "ws2@1", None, b"v2").await,
            Err(promised(6)),
            "{name}"
        );
        assert_eq!(
            c.prepare(b"sid", 4, "ws9@9", Duration::ZERO).await,
            Err(stale(4, 2)),
            "{name}"
        );
        // The winner's write fulfils the promise.
        c.claim(b"sid", Stamp::new(4, 2), Stamp::new(6, 0), "ws3@1", None)
            .await
            .unwrap();
        c.put(b"sid", Stamp::new(6, 1), "ws3@1", None, b"v5")
            .await
            .unwrap();
        assert_eq!(
            c.prepare(b"sid", 6, "ws4@1", Duration::ZERO).await,
            Err(stale(6, 1)),
            "{name}"
        );

        // No copy: promised all the same.
        assert_eq!(
            c.prepare(b"new", 1, "ws2@1", MINUTE).await,
            Ok(Prepared::NoCopy),
            "{name}"
        );
        assert_eq!(
            c.put(b"new", Stamp::new(0, 9), "ws1@7", None, b"x").await,
            Err(promised(1)),
            "{name}"
        );
        assert_eq!(
            c.prepare(b"new", 2, "ws1@1", MINUTE).await,
            Ok(Prepared::NoCopy),
            "{name}: a higher generation outbids"
        );
        assert_eq!(
            c.put(b"new", Stamp::new(1, 0), "ws2@1", None, b"x").await,
            Err(promised(2)),
            "{name}"
        );
        c.put(b"new", Stamp::new(2, 0), "ws1@1", None, b"x")
            .await
            .unwrap();

        // A tombstone comes back without a promise.
        c.delete(b"gone", Stamp::new(3, 0), None).await.unwrap();
        match c.prepare(b"gone", 9, "ws2@1", Duration::ZERO).await {
            Ok(Prepared::Copy { session, lease }) => {
                assert!(session.deleted, "{name}");
                assert_eq!(session.stamp, Stamp::new(3, 0), "{name}");
                assert_eq!(lease, LeaseState::Absent, "{name}");
            }
            other => panic!("{name}: expected the tombstone, got {other:?}"),
        }
        c.put(b"gone", Stamp::new(3, 1), "ws1@7", None, b"x")
            .await
            .unwrap();

        // Bad arguments are refused alike.
        for (g, owner) in [(1 << 53, "ws2@1"), (1, "")] {
            match c.prepare(b"bad", g, owner, Duration::ZERO).await {
                Err(ClientError::Server(m)) => assert!(m.starts_with("ERR "), "{name}: {m}"),
                other => panic!("{name}: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn promises_and_dead_records_last_the_claim_window() {
    let window = Duration::from_millis(300);
    for b in backends(window) {
        let (c, name) = (&b.client, b.name);
        c.put(b"sid", Stamp::new(1, 1), "ws1@1", None, b"x")
            .await
            .unwrap();
        assert!(matches!(
            c.prepare(b"sid", 2, "ws2@1", Duration::ZERO).await,
            Ok(Prepared::Copy { .. })
        ));
        let promised_at = Instant::now();
        assert_eq!(
            c.put(b"sid", Stamp::new(1, 2), "ws1@1", None, b"y").await,
            Err(promised(2)),
            "{name}"
        );
        c.kill("ws1@1", true).await.unwrap();
        let killed_at = Instant::now();
        assert_eq!(c.lease("ws1@1", MINUTE).await, Err(ClientError::Dead));
        // Once the window has passed, the unfulfilled promise is gone and
        // the dead record too.
        eventually(&format!("{name}: the promise lapses"), || async {
            c.put(b"sid", Stamp::new(1, 2), "ws1@1", None, b"y")
                .await
                .ok()
        })
        .await;
        assert!(promised_at.elapsed() >= window - Duration::from_millis(50));
        eventually(&format!("{name}: the dead record lapses"), || async {
            c.lease("ws1@1", MINUTE).await.ok()
        })
        .await;
        assert!(killed_at.elapsed() >= window - Duration::from_millis(50));
    }
}

#[tokio::test]
async fn owned_scans_list_an_owners_live_copies() {
    for b in backends(MINUTE) {
        let (c, name) = (&b.client, b.name);
        let mut want = BTreeSet::new();
        for i in 0..200 {
            let owner = if i % 2 == 0 { "ws1@7" } else { "ws2@1" };
            let key = format!("sid{i}");
            c.put(key.as_bytes(), Stamp::new(1, 1), owner, None, b"x")
                .await
                .unwrap();
            if i % 2 == 0 {
                want.insert(Bytes::from(key));
            }
        }
        // Neither a tombstone, nor a claimed copy, nor the ownership
        // records are listed.
        c.delete(b"sid0", Stamp::new(1, 2), None).await.unwrap();
        want.remove(&b"sid0"[..]);
        c.claim(b"sid2", Stamp::new(1, 1), Stamp::new(2, 0), "ws2@1", None)
            .await
            .unwrap();
        want.remove(&b"sid2"[..]);
        c.lease("ws1@7", MINUTE).await.unwrap();
        c.kill("ws1@8", false).await.unwrap();
        assert!(matches!(
            c.prepare(b"sid4", 2, "ws2@1", Duration::ZERO).await,
            Ok(Prepared::Copy { .. })
        ));
        let (mut cursor, mut got, mut pages) = (0, BTreeSet::new(), 0);
        loop {
            let (next, keys) = c.owned("ws1@7", cursor).await.unwrap();
            got.extend(keys);
            pages += 1;
            assert!(pages < 100_000, "{name}: the scan does not end");
            if next == 0 {
                break;
            }
            cursor = next;
        }
        assert_eq!(got, want, "{name}");
        let (_, none) = c.owned("nobody@1", 0).await.unwrap();
        assert!(none.is_empty(), "{name}");
        assert!(
            matches!(c.owned("", 0).await, Err(ClientError::Server(_))),
            "{name}"
        );
    }
}

#[tokio::test]
async fn stamp_parts_above_2_pow_53_or_signed_are_refused_alike() {
    const MAX: u64 = (1 << 53) - 1;
    for b in backends(MINUTE) {
        let (c, name) = (&b.client, b.name);
        for (g, s) in [(MAX + 1, 0), (0, MAX + 1), (u64::MAX, 0)] {
            match c.put(b"sid", Stamp::new(g, s), "w", None, b"x").await {
                Err(ClientError::Server(m)) => assert_eq!(
                    m, "ERR a stamp part must be decimal digits from 0 to 9007199254740991",
                    "{name}"
                ),
                other => panic!("{name}: {g} {s}: {other:?}"),
            }
        }
        assert_eq!(c.get(b"sid").await, Ok(None), "{name}: nothing stored");
        c.put(b"sid", Stamp::new(MAX, MAX - 1), "w", None, b"x")
            .await
            .unwrap();
        assert_eq!(
            c.put(b"sid", Stamp::new(MAX, MAX - 2), "w", None, b"x")
                .await,
            Err(stale(MAX, MAX - 1)),
            "{name}"
        );
        assert!(matches!(
            c.claim(
                b"sid",
                Stamp::new(MAX, MAX - 1),
                Stamp::new(MAX + 1, 0),
                "w",
                None
            )
            .await,
            Err(ClientError::Server(_))
        ));
        assert!(matches!(
            c.delete(b"sid", Stamp::new(MAX + 1, 0), None).await,
            Err(ClientError::Server(_))
        ));
    }
}

/// A `sticky store` that restarted: inside its recovery window it grants
/// no lease and accepts no kill or prepare (proven death is still
/// recorded).
#[tokio::test]
async fn a_restarted_store_answers_recovering() {
    let (_store, c) = restarted_store(MINUTE);
    let recovering = |r: Result<(), ClientError>| match r {
        Err(ClientError::Recovering { remaining }) => {
            assert!(
                remaining > Duration::from_secs(50) && remaining <= MINUTE,
                "{remaining:?}"
            )
        }
        other => panic!("expected RECOVERING, got {other:?}"),
    };
    recovering(c.lease("ws1@1", MINUTE).await);
    recovering(c.kill("ws1@1", false).await);
    recovering(
        c.prepare(b"sid", 1, "ws1@1", Duration::ZERO)
            .await
            .map(|_| ()),
    );
    c.kill("ws1@1", true).await.unwrap();
    c.put(b"sid", Stamp::new(1, 1), "ws1@2", None, b"x")
        .await
        .unwrap();
}

/// A `sticky store` that restarted less than the horizon ago says its "no
/// copy" may be a forgotten one; its copies count at once.
#[tokio::test]
async fn a_restarted_stores_no_copy_is_forgetful() {
    let (_store, c) = restarted_store(Duration::from_millis(1));
    let day = Duration::from_secs(86_400);
    let answer = eventually("the recovery window ends", || async {
        match c.prepare(b"gone", 1, "ws2@1", day).await {
            Err(ClientError::Recovering { .. }) => None,
            other => Some(other),
        }
    })
    .await;
    match answer {
        Ok(Prepared::Forgetful { uptime }) => assert!(uptime < day, "{uptime:?}"),
        other => panic!("expected FORGETFUL, got {other:?}"),
    }
    assert_eq!(
        c.prepare(b"gone", 1, "ws2@1", Duration::ZERO).await,
        Ok(Prepared::NoCopy),
        "a horizon already passed"
    );
    c.put(b"here", Stamp::new(1, 1), "ws1@2", None, b"x")
        .await
        .unwrap();
    assert!(matches!(
        c.prepare(b"here", 2, "ws2@1", day).await,
        Ok(Prepared::Copy { .. })
    ));
}

/// `SESS.PREPARE NEXT`, a takeover's read and promise in one round trip:
/// `sticky store` promises one above its copy and every live promise,
/// answers the copy with its owner's lease, and promises nothing over a
/// live lease or a tombstone. Redis does not offer it, and says so
/// without a round trip.
#[tokio::test]
async fn prepare_next_reads_and_promises_at_once() {
    for b in backends(MINUTE) {
        let (c, name) = (&b.client, b.name);
        if name == "redis" {
            assert!(!c.prepares_next());
            assert!(
                matches!(
                    c.prepare_next(b"sid", "ws2@1", Duration::ZERO, None).await,
                    Err(ClientError::Server(_))
                ),
                "{name}"
            );
            continue;
        }
        assert!(c.prepares_next());
        let none = c
            .prepare_next(b"new", "ws2@1", Duration::ZERO, None)
            .await
            .unwrap();
        assert_eq!((none.generation, none.copy), (1, None));
        c.put(b"sid", Stamp::new(3, 2), "ws1@7", None, b"data")
            .await
            .unwrap();
        c.lease("ws1@7", MINUTE).await.unwrap();
        // The owner's lease is live here: the copy, no promise, and the
        // owner writes on.
        let held = c
            .prepare_next(b"sid", "ws2@1", Duration::ZERO, None)
            .await
            .unwrap();
        assert_eq!(held.generation, 0);
        let (copy, lease) = held.copy.unwrap();
        assert_eq!(
            (copy.stamp, copy.owner.as_str()),
            (Stamp::new(3, 2), "ws1@7")
        );
        assert!(lease.is_live(), "{lease:?}");
        c.put(b"sid", Stamp::new(3, 3), "ws1@7", None, b"data2")
            .await
            .unwrap();
        // Released in the same command (proven gone): promised generation
        // 4, with the copy and the dead lease, which refuses renewals now.
        let got = c
            .prepare_next(b"sid", "ws2@1", Duration::ZERO, Some("ws1@7"))
            .await
            .unwrap();
        assert_eq!(got.generation, 4);
        let (copy, lease) = got.copy.unwrap();
        assert_eq!(copy.stamp, Stamp::new(3, 3));
        assert_eq!(&copy.payload[..], b"data2");
        assert_eq!(lease, LeaseState::Dead);
        assert_eq!(c.lease("ws1@7", MINUTE).await, Err(ClientError::Dead));
        // A promise like any other: the old owner's write and an explicit
        // prepare of 4 by another claimer are refused; a second NEXT is
        // promised above it.
        assert_eq!(
            c.put(b"sid", Stamp::new(3, 4), "ws1@7", None, b"late")
                .await,
            Err(promised(4))
        );
        assert_eq!(
            c.prepare(b"sid", 4, "ws3@1", Duration::ZERO).await,
            Err(promised(4))
        );
        let again = c
            .prepare_next(b"sid", "ws3@1", Duration::ZERO, None)
            .await
            .unwrap();
        assert_eq!(again.generation, 5);
        c.put(b"sid", Stamp::new(5, 0), "ws3@1", None, b"data2")
            .await
            .unwrap();
        // A tombstone: no promise.
        c.delete(b"sid", Stamp::new(5, 1), None).await.unwrap();
        let tomb = c
            .prepare_next(b"sid", "ws2@1", Duration::ZERO, None)
            .await
            .unwrap();
        assert_eq!(tomb.generation, 0);
        assert!(tomb.copy.unwrap().0.deleted);
    }
}

/// A restarted `sticky store` answers `SESS.PREPARE NEXT` as the explicit
/// prepare: `RECOVERING` inside its window, then `FORGETFUL` for a session
/// it holds no copy of, within the horizon.
#[tokio::test]
async fn prepare_next_on_a_restarted_store() {
    let (_store, c) = restarted_store(Duration::from_millis(1));
    let day = Duration::from_secs(86_400);
    let answer = eventually("the recovery window ends", || async {
        match c.prepare_next(b"gone", "ws2@1", day, None).await {
            Err(ClientError::Recovering { .. }) => None,
            other => Some(other),
        }
    })
    .await;
    match answer {
        Err(ClientError::Forgetful { uptime }) => assert!(uptime < day, "{uptime:?}"),
        other => panic!("expected FORGETFUL, got {other:?}"),
    }
    let past = c
        .prepare_next(b"gone", "ws2@1", Duration::ZERO, None)
        .await
        .unwrap();
    assert!(past.generation > 0 && past.copy.is_none(), "{past:?}");
}

/// On a Redis Cluster every ownership script stays in one slot: a
/// session's promise in the session's, a lease and its dead record in the
/// owner's. Sessions and owners spread over the three masters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ownership_on_a_redis_cluster() {
    if !have_redis(true) {
        return;
    }
    let cluster = sticky_test_support::RedisClusterNodes::start(3);
    let c = StoreClient::new(&cluster.url(), options(MINUTE)).unwrap();
    for i in 0..12 {
        let owner = format!("ws{i}@7");
        let key = format!("{i:032x}");
        let key = key.as_bytes();
        c.put(key, Stamp::new(1, 1), &owner, None, b"x")
            .await
            .unwrap();
        c.lease(&owner, MINUTE).await.unwrap();
        assert!(c.get_with_lease(key).await.unwrap().unwrap().1.is_live());
        assert!(matches!(
            c.kill(&owner, false).await,
            Err(ClientError::Live { .. })
        ));
        match c.prepare(key, 2, "claimer@1", Duration::ZERO).await {
            Ok(Prepared::Copy { session, lease }) => {
                assert_eq!(session.owner, owner);
                assert!(lease.is_live(), "{lease:?}");
            }
            other => panic!("{owner}: {other:?}"),
        }
        assert_eq!(
            c.put(key, Stamp::new(1, 2), &owner, None, b"late").await,
            Err(promised(2))
        );
        c.kill(&owner, true).await.unwrap();
        assert_eq!(c.lease(&owner, MINUTE).await, Err(ClientError::Dead));
        assert_eq!(
            c.get_with_lease(key).await.unwrap().unwrap().1,
            LeaseState::Dead
        );
        c.claim(key, Stamp::new(1, 1), Stamp::new(2, 0), "claimer@1", None)
            .await
            .unwrap();
        let id = String::from_utf8(key.to_vec()).unwrap();
        assert!(cluster.owner_of(&id).is_some(), "{id} is on one master");
    }
    assert!(matches!(
        c.owned("claimer@1", 0).await,
        Err(ClientError::Server(_))
    ));
}
