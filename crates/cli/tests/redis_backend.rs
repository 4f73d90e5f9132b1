//! Redis as the session store (`docs/redis.md`), the whole-system tests
//! that only make sense on Redis:
//!
//! - `sticky up --store-url redis://...` runs a whole cluster on three Redis
//!   servers it did not start: shoppers' carts live there, survive the
//!   `kill -9` of their web server, and the director shows the stores; a
//!   store URL that does not answer is refused.
//! - Redis Cluster (`redis+cluster://`, three masters formed with
//!   `redis-cli --cluster create`): the session commands through the
//!   cluster client, sessions spread over the masters by their hash tags,
//!   and `sticky web` on it (R=1) with takeover and fencing.
//!
//! The session cases that run on both `sticky store` and Redis (takeover,
//! fencing, store failover) are in `session_backends.rs`; the scripts
//! checked against `sticky store` are in the store's
//! `tests/redis_scripts.rs`. Skipped loudly when `redis-server` is not
//! installed, unless `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sticky_client::{ClientError, ClientOptions, StoreClient};
use sticky_test_support::{
    create_sessions, have_redis, redis_copies_by_store, Answer, ClusterConfig, CookieJar,
    RedisClusterNodes, RedisProcess, Sticky, UpProcess, WebProcess, DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

// ---------------------------------------------------------------------------
// sticky up on Redis
// ---------------------------------------------------------------------------

#[test]
fn sticky_up_runs_on_redis_servers_given_with_store_url() {
    if !have_redis(false) {
        return;
    }
    let redis: Vec<RedisProcess> = (0..3).map(|_| RedisProcess::start(&[])).collect();
    let urls: Vec<String> = redis.iter().map(RedisProcess::url).collect();
    let mut args = vec!["--web", "2", "--standby", "1"];
    for u in &urls {
        args.extend(["--store-url", u.as_str()]);
    }
    let up = UpProcess::start(STICKY, &args);
    up.wait_all_up();

    // Only the director and the web servers are processes of `up`.
    let names: Vec<String> = up.state_pids().into_iter().map(|(n, _)| n).collect();
    assert!(
        names.iter().all(|n| !n.starts_with('s')),
        "sticky up started a store: {names:?}"
    );
    // The cluster file names the Redis servers; the director shows them up.
    let cluster = up.cluster();
    let stores = cluster["stores"]
        .as_array()
        .expect("stores in /api/cluster");
    assert_eq!(stores.len(), 3, "{cluster:#}");
    for (s, r) in stores.iter().zip(&redis) {
        assert_eq!(s["addr"], r.addr().to_string(), "{s}");
        assert_eq!(s["state"], "up", "{s}");
    }

    // Shoppers fill carts through the director.
    let mut shoppers: Vec<(CookieJar, Vec<String>, String)> = Vec::new();
    for i in 0..6 {
        let mut jar = CookieJar::new();
        let mut items = Vec::new();
        let mut server = String::new();
        for k in 0..3 {
            let item = format!("item-{i}-{k}");
            let a = jar.add_item(up.shop(), &item);
            items.push(item);
            assert_eq!(a.items(), items);
            server = a.server;
        }
        shoppers.push((jar, items, server));
    }
    // Every cart is on two Redis servers (R=2), with the cart's items.
    let ids: Vec<String> = shoppers
        .iter()
        .map(|(j, _, _)| j.session_id().expect("a session cookie"))
        .collect();
    let addrs: Vec<SocketAddr> = redis.iter().map(RedisProcess::addr).collect();
    let copies = redis_copies_by_store(&addrs, &ids);
    for ((_, items, _), id) in shoppers.iter().zip(&ids) {
        let live: Vec<_> = copies[id].iter().flatten().filter(|c| c.live).collect();
        assert_eq!(live.len(), 2, "{id}: {:?}", copies[id]);
        for c in live {
            assert_eq!(c.data()["cart"], serde_json::json!(items), "{c:?}");
        }
    }

    // kill -9 the web server of the first shopper: its cart continues.
    let victim = shoppers[0].2.clone();
    let pid = up.pid_of(&victim);
    sticky_test_support::signal(pid, "KILL");
    for (jar, items, server) in &mut shoppers {
        let start = Instant::now();
        let a = loop {
            match jar.try_request(up.shop(), "GET", "/api/cart", None) {
                Ok(r) if r.status == 200 => break Answer::from(&r),
                other => eprintln!("GET /api/cart during the failover: {other:?}"),
            }
            assert!(start.elapsed() < DEADLINE, "no cart after the failure");
            std::thread::sleep(sticky_test_support::POLL);
        };
        assert_eq!(&a.items(), items, "{:?}", a.json);
        if *server == victim {
            assert_ne!(a.server, victim);
            assert_eq!(a.source, "store", "{:?}", a.json);
        }
    }
    drop(up);
    // `up` stopped its processes, not the Redis servers.
    for r in &redis {
        let pong: String = redis::cmd("PING").query(&mut r.conn()).unwrap();
        assert_eq!(pong, "PONG");
    }
}

#[test]
fn sticky_up_refuses_a_store_url_that_does_not_answer() {
    let dead = sticky_test_support::free_port();
    let dir = sticky_test_support::temp_path("sticky-up-dead-store", "d");
    for _ in 0..8 {
        let base = 10_000 + (sticky_test_support::random_u64() % 220) as u16 * 100;
        let out = STICKY
            .command()
            .args(["up", "--port", &base.to_string(), "--dir"])
            .arg(&dir)
            .args(["--replicas", "1", "--store-url"])
            .arg(format!("redis://:hunter2@127.0.0.1:{dead}"))
            .env("HOME", &dir)
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        if err.contains("is not free") {
            continue;
        }
        assert!(
            err.contains("store s1") && err.contains("does not answer PING"),
            "{err}"
        );
        assert!(!err.contains("hunter2"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    panic!("no free port range");
}

// ---------------------------------------------------------------------------
// Redis Cluster
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_cluster_serves_the_session_commands_through_the_cluster_client() {
    if !have_redis(true) {
        return;
    }
    let cluster = RedisClusterNodes::start(3);
    let options = ClientOptions {
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    // One node is enough to find the others.
    let first = format!("redis+cluster://{}", cluster.nodes[0].addr());
    for url in [cluster.url(), first] {
        let c = StoreClient::new(&url, options.clone()).unwrap();
        c.ping().await.unwrap();
        let ids: Vec<String> = (0..60)
            .map(|_| sticky_test_support::random_hex(32))
            .collect();
        for (i, id) in ids.iter().enumerate() {
            let s = sticky_proto::Stamp::new(1, i as u64);
            c.put(
                id.as_bytes(),
                s,
                "ws1",
                Some(Duration::from_secs(600)),
                b"p",
            )
            .await
            .unwrap();
            assert_eq!(
                c.put(id.as_bytes(), s, "ws1", None, b"again").await,
                Ok(()),
                "STALE naming its own stamp"
            );
        }
        // Spread over the masters by slot; each on exactly one.
        let mut per_master = [0usize; 3];
        for id in &ids {
            let (owner, copy) = cluster.owner_of(id).expect("stored on a master");
            assert!(copy.live && copy.pttl > 0, "{copy:?}");
            per_master[owner] += 1;
        }
        assert!(per_master.iter().all(|&n| n > 0), "{per_master:?}");

        // Fencing works the same through the cluster client.
        let id = ids[0].as_bytes();
        let (old, new) = (
            sticky_proto::Stamp::new(1, 0),
            sticky_proto::Stamp::new(2, 0),
        );
        c.claim(id, old, new, "ws2", None).await.unwrap();
        assert!(matches!(
            c.claim(id, old, new, "ws3", None).await,
            Err(ClientError::Stale { stored }) if stored == new
        ));
        assert!(matches!(
            c.put(id, sticky_proto::Stamp::new(1, 5), "ws1", None, b"late").await,
            Err(ClientError::Stale { stored }) if stored == new
        ));
        let got = c.get(id).await.unwrap().unwrap();
        assert_eq!(
            (got.stamp, got.owner.as_str(), &got.payload[..]),
            (new, "ws2", &b"p"[..])
        );
        c.delete(id, sticky_proto::Stamp::new(2, 1), None)
            .await
            .unwrap();
        assert!(c.get(id).await.unwrap().unwrap().deleted);
        assert!(matches!(
            c.claim(id, new, sticky_proto::Stamp::new(3, 0), "ws3", None)
                .await,
            Err(ClientError::Deleted { .. })
        ));
        assert_eq!(c.touch(ids[1].as_bytes(), None).await, Ok(true));
        assert_eq!(c.get(b"nothing-here").await, Ok(None));

        // Scripts flushed on every master: NOSCRIPT, then EVAL, no failure.
        for n in &cluster.nodes {
            let _: () = redis::cmd("SCRIPT")
                .arg("FLUSH")
                .query(&mut n.conn())
                .unwrap();
        }
        for id in &ids[1..10] {
            assert!(c.get(id.as_bytes()).await.unwrap().is_some());
        }
    }
}

#[test]
fn sticky_web_on_a_redis_cluster_takeover_and_fencing() {
    if !have_redis(true) {
        return;
    }
    let cluster = RedisClusterNodes::start(3);
    // One [[store]]: the whole cluster, R=1 (its own replicas, if it had
    // any, would be the redundancy).
    let cfg = ClusterConfig::new(&[cluster.nodes[0].addr()], &["ws1", "ws2"])
        .replicas(1)
        .store_url("s1", &cluster.url())
        .session("store_timeout_ms", "3000")
        .write();
    let ws1 = WebProcess::start(STICKY, cfg.path(), "ws1");
    let mut ws1 = ws1;
    let ws2 = WebProcess::start(STICKY, cfg.path(), "ws2");

    let (mut browsers, acked) = create_sessions(ws1.addr(), 30);
    let mut per_master = [0usize; 3];
    for (id, (value, stamp)) in &acked {
        let (owner, copy) = cluster.owner_of(id).expect("the session is in the cluster");
        assert_eq!((copy.counter(), copy.stamp), (*value, *stamp));
        assert!(copy.owner.starts_with("ws1@"), "{copy:?}");
        per_master[owner] += 1;
    }
    assert!(per_master.iter().all(|&n| n > 0), "{per_master:?}");

    // Fencing: a session taken over by ws2; ws1's late write gets 409.
    let b = &mut browsers[0];
    let id = b.id();
    // ws1 holds its lease: ws2 names it and claims nothing.
    let r = b.post(ws2.addr(), "/api/counter", None);
    assert_eq!(
        (r.status, r.header("sticky-owner")),
        (421, Some("ws1")),
        "{r:?}"
    );
    // Fenced, ws1 releases its lease: ws2 takes the session over.
    ws1.fence();
    let a = b.increment(ws2.addr());
    assert_eq!(
        (a.value, a.source.as_str()),
        (acked[&id].0 + 1, "store"),
        "{a:?}"
    );
    let r = b.post(ws1.addr(), "/api/counter", None);
    assert_eq!(
        (r.status, r.header("sticky-owner")),
        (421, Some("ws2")),
        "{r:?}"
    );
    let (_, copy) = cluster.owner_of(&id).unwrap();
    assert_eq!(copy.stamp, a.stamp);
    assert!(copy.owner.starts_with("ws2@"), "{copy:?}");
    let moved_value = a.value;

    // Takeover: ws1 killed, every session continues on ws2.
    ws1.kill9();
    for (i, b) in browsers.iter_mut().enumerate() {
        let id = b.id();
        let before = if i == 0 { moved_value } else { acked[&id].0 };
        let a = b.increment(ws2.addr());
        assert_eq!(a.value, before + 1, "{a:?}");
        if i > 0 {
            assert_eq!(a.source, "store", "{a:?}");
        }
        let (_, copy) = cluster.owner_of(&id).unwrap();
        assert_eq!((copy.stamp, copy.counter()), (a.stamp, a.value));
    }
}
