//! Redis as the session store (`docs/redis.md`): real `redis-server`
//! processes on free ports, named in the cluster file with
//! `url = "redis://..."`, behind real `sticky web` processes.
//!
//! - The scripts answer exactly like `sticky store`: the same random
//!   sequence of session commands sent to both gives the same replies.
//! - Takeover (a killed web server's sessions continue on another, R=1 and
//!   R=2), fencing (the old host's late write is refused with 409; a paused
//!   host never serves its old copy), and store failover (one of three
//!   Redis servers killed with R=2: nothing lost, every session copied back
//!   onto two live servers, a restarted server brought up to date), all
//!   checked on the Redis servers themselves with `HGETALL`.
//! - `sticky up --store-url redis://...` runs a whole cluster on three Redis
//!   servers it did not start: shoppers' carts live there, survive the
//!   `kill -9` of their web server, and the director shows the stores.
//!
//! - Redis Cluster (`redis+cluster://`, three masters formed with
//!   `redis-cli --cluster create`): the session commands through the
//!   cluster client, sessions spread over the masters by their hash tags,
//!   and `sticky web` on it (R=1) with takeover and fencing.
//!
//! Skipped loudly when `redis-server` is not installed, unless `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster_support;
mod redis_support;
mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cluster_support::{
    assert_no_newer_copy, create_sessions, holders, old_hosts_late_write_is_refused, Acked, Answer,
    Browser, CookieJar, UpProcess,
};
use redis_support::{
    have_redis, redis_copies_by_store, RedisCluster, RedisClusterNodes, RedisProcess,
};
use sticky_client::{ClientError, ClientOptions, StoreClient, StoredSession};
use support::{wait_until, StoreProcess, DEADLINE};

/// Re-copying after a store failure must finish within this.
const RECOPY_DEADLINE: Duration = Duration::from_secs(40);

// ---------------------------------------------------------------------------
// The scripts against sticky store
// ---------------------------------------------------------------------------

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_scripts_answer_exactly_like_sticky_store() {
    if !have_redis(false) {
        return;
    }
    let store = StoreProcess::start(&[]);
    let redis = RedisProcess::start(&[]);
    let options = ClientOptions {
        request_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    };
    let native = StoreClient::new(&store.addr().to_string(), options.clone()).unwrap();
    let scripted = StoreClient::new(&redis.url(), options).unwrap();
    let seed = cluster_support::random_u64() | 1;
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
        let op = rng.below(6);
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
    ] {
        assert!(seen.contains_key(must), "{must} never happened: {seen:?}");
    }
}

// ---------------------------------------------------------------------------
// Web servers on Redis
// ---------------------------------------------------------------------------

/// 5 increments on ws1, `kill -9` ws1, the same cookie on ws2 continues at
/// 6; the Redis servers hold each acknowledged version on `replicas` of
/// them.
fn counter_continues_on_ws2_after_kill9(replicas: usize) {
    let mut c = RedisCluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.replicas(replicas).session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1").addr(), c.web("ws2").addr());
    let mut b = Browser::new();
    let mut last = None;
    for i in 1..=5 {
        let a = b.increment(ws1);
        assert_eq!((a.value, a.server.as_str()), (i, "ws1"), "{a:?}");
        last = Some(a);
    }
    let last = last.unwrap();
    let id = b.id();
    let copies = &redis_copies_by_store(&c.redis_addrs(), std::slice::from_ref(&id))[&id];
    let holding: Vec<_> = copies
        .iter()
        .flatten()
        .filter(|s| s.live && s.stamp == last.stamp)
        .collect();
    assert_eq!(holding.len(), replicas, "copies on Redis: {copies:?}");
    for copy in holding {
        assert_eq!((copy.counter(), copy.owner.as_str()), (5, "ws1"));
        assert!(
            copy.pttl > 0,
            "the idle timeout travels as the TTL: {copy:?}"
        );
    }

    assert!(!c.web_mut("ws1").kill9().success());

    let a = b.increment(ws2);
    assert_eq!(
        (a.value, a.server.as_str(), a.source.as_str()),
        (6, "ws2", "store"),
        "ws2 continues from the last acknowledged value: {a:?}"
    );
    assert!(a.stamp.generation > last.stamp.generation, "{a:?}");
    let a2 = b.counter(ws2);
    assert_eq!((a2.value, a2.source.as_str()), (6, "cache"), "{a2:?}");

    let copies = &redis_copies_by_store(&c.redis_addrs(), std::slice::from_ref(&id))[&id];
    let holding = copies
        .iter()
        .flatten()
        .filter(|s| s.live && s.stamp == a.stamp && s.counter() == 6 && s.owner == "ws2")
        .count();
    assert_eq!(holding, replicas, "copies of ws2's version: {copies:?}");
}

#[test]
fn r1_takeover_on_redis_after_kill9() {
    if !have_redis(false) {
        return;
    }
    counter_continues_on_ws2_after_kill9(1);
}

#[test]
fn r2_takeover_on_redis_after_kill9() {
    if !have_redis(false) {
        return;
    }
    counter_continues_on_ws2_after_kill9(2);
}

#[test]
fn fencing_on_redis_the_old_hosts_late_write_is_refused_with_409() {
    if !have_redis(false) {
        return;
    }
    let c = RedisCluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1").addr(), c.web("ws2").addr());
    old_hosts_late_write_is_refused(ws1, ws2, &c.redis_addrs(), redis_copies_by_store);
}

#[test]
fn fencing_on_redis_a_paused_server_never_serves_its_old_copy() {
    if !have_redis(false) {
        return;
    }
    const LEASE: Duration = Duration::from_millis(1000);
    let c = RedisCluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.session("lease_ms", "1000")
            .session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1"), c.web("ws2"));
    let _ws2_lease = ws2.heartbeat();
    let mut b = Browser::new();
    for i in 1..=3 {
        assert_eq!(b.increment(ws1.addr()).value, i);
    }
    let id = b.id();
    let epoch_before = ws1.health()["epoch"].as_u64().expect("epoch");
    let armed = Instant::now();
    ws1.sigstop();

    let a = b.increment(ws2.addr());
    assert_eq!((a.value, a.source.as_str()), (4, "store"), "{a:?}");
    let a = b.increment(ws2.addr());
    let (moved_value, moved_stamp) = (a.value, a.stamp);
    assert_eq!(moved_value, 5);

    wait_until(DEADLINE, "ws1's lease has run out", || {
        armed.elapsed() > LEASE * 2
    });
    ws1.sigcont();

    let mut newest = (moved_value, moved_stamp);
    let r = b.get(ws1.addr(), "/api/counter");
    if r.status == 200 {
        let a = Answer::from(&r);
        assert_eq!(a.value, moved_value, "ws1 served a stale copy: {a:?}");
        assert_eq!(a.source, "store", "{a:?}");
        assert!(a.stamp > moved_stamp, "{a:?}");
        newest = (a.value, a.stamp);
    } else {
        assert!(r.status >= 400, "{r:?}");
    }
    let r = b.post(ws1.addr(), "/api/counter", None);
    if r.status == 200 {
        let a = Answer::from(&r);
        assert_eq!(a.value, moved_value + 1, "ws1 wrote on a stale copy: {a:?}");
        newest = (a.value, a.stamp);
    } else {
        assert!(r.status >= 400, "{r:?}");
    }
    let epoch_after = ws1.health()["epoch"].as_u64().expect("epoch");
    assert_ne!(epoch_before, epoch_after, "ws1 fenced itself");

    let copies = &redis_copies_by_store(&c.redis_addrs(), std::slice::from_ref(&id))[&id];
    let best = copies
        .iter()
        .flatten()
        .filter(|s| s.live)
        .max_by_key(|s| s.stamp)
        .expect("a live copy");
    assert_eq!((best.counter(), best.stamp), newest, "{copies:?}");
    let at_newest = copies
        .iter()
        .flatten()
        .filter(|s| s.stamp == newest.1)
        .count();
    assert_eq!(at_newest, 2, "on both replicas: {copies:?}");
}

#[test]
fn r2_a_killed_redis_loses_nothing_and_sessions_are_copied_back_to_two() {
    if !have_redis(false) {
        return;
    }
    let mut c = RedisCluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1").addr(), c.web("ws2").addr());
    let (mut browsers, mut acked) = create_sessions(ws1, 40);
    let addrs = c.redis_addrs();
    let before = holders(&addrs, &acked, redis_copies_by_store);
    for (id, on) in &before {
        assert_eq!(on.len(), 2, "session {id} on two Redis servers: {on:?}");
    }
    let on_s2: Vec<String> = before
        .iter()
        .filter(|(_, on)| on.contains(&1))
        .map(|(id, _)| id.clone())
        .collect();
    assert!(!on_s2.is_empty());

    let s2_port = c.redis[1].port();
    c.redis[1].kill9();

    // Nothing is lost: half the sessions change (written to the live
    // servers), the other half must be re-copied in the background.
    for (i, b) in browsers.iter_mut().enumerate() {
        let id = b.id();
        if i % 2 == 0 {
            let a = b.increment(ws1);
            assert_eq!(
                (a.value, a.source.as_str()),
                (acked[&id].0 + 1, "cache"),
                "{a:?}"
            );
            acked.insert(id, (a.value, a.stamp));
        } else {
            let a = b.counter(ws1);
            assert_eq!((a.value, a.stamp), acked[&id], "{a:?}");
        }
    }
    let live = [addrs[0], addrs[2]];
    wait_until(
        RECOPY_DEADLINE,
        "every session is on the 2 live Redis servers",
        || {
            holders(&live, &acked, redis_copies_by_store)
                .values()
                .all(|on| on.len() == 2)
        },
    );
    assert_no_newer_copy(&live, &acked, redis_copies_by_store);

    // s2 comes back empty on its port: its sessions are copied back.
    c.redis[1] = RedisProcess::start_on_port(s2_port, &[]);
    let s2_acked: Acked = on_s2.iter().map(|id| (id.clone(), acked[id])).collect();
    wait_until(
        RECOPY_DEADLINE,
        "the restarted Redis server holds its sessions again",
        || {
            holders(&[addrs[1]], &s2_acked, redis_copies_by_store)
                .values()
                .all(|on| on.len() == 1)
        },
    );
    assert_no_newer_copy(&addrs, &acked, redis_copies_by_store);

    // End to end: with ws1 gone, ws2 reads every session at its last
    // acknowledged value.
    c.web_mut("ws1").kill9();
    for b in &mut browsers {
        let id = b.id();
        let a = b.counter(ws2);
        assert_eq!(
            (a.value, a.source.as_str()),
            (acked[&id].0, "store"),
            "{a:?}"
        );
    }
}

#[test]
fn r2_a_redis_and_the_host_killed_together_lose_nothing() {
    if !have_redis(false) {
        return;
    }
    let mut c = RedisCluster::start(3, &["ws1", "ws2"], |cfg| {
        cfg.replicas(2).session("store_timeout_ms", "3000")
    });
    let (ws1, ws2) = (c.web("ws1").addr(), c.web("ws2").addr());
    let (mut browsers, acked) = create_sessions(ws1, 20);
    c.redis[1].kill9();
    c.web_mut("ws1").kill9();
    for b in &mut browsers {
        let id = b.id();
        let a = b.increment(ws2);
        assert_eq!(
            (a.value, a.source.as_str()),
            (acked[&id].0 + 1, "store"),
            "{a:?}"
        );
    }
}

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
    let up = UpProcess::start(&args);
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
    cluster_support::signal(pid, "KILL");
    for (jar, items, server) in &mut shoppers {
        let start = Instant::now();
        let a = loop {
            match jar.try_request(up.shop(), "GET", "/api/cart", None) {
                Ok(r) if r.status == 200 => break Answer::from(&r),
                other => eprintln!("GET /api/cart during the failover: {other:?}"),
            }
            assert!(start.elapsed() < DEADLINE, "no cart after the failure");
            std::thread::sleep(support::POLL);
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
    let dead = support::free_port();
    let dir = support::temp_path("sticky-up-dead-store", "d");
    for _ in 0..8 {
        let base = 10_000 + (cluster_support::random_u64() % 220) as u16 * 100;
        let out = support::sticky_command()
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
        let ids: Vec<String> = (0..60).map(|_| cluster_support::random_hex(32)).collect();
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
    let cfg = cluster_support::ClusterConfig::new(&[cluster.nodes[0].addr()], &["ws1", "ws2"])
        .replicas(1)
        .store_url("s1", &cluster.url())
        .session("store_timeout_ms", "3000")
        .write();
    let ws1 = cluster_support::WebProcess::start(cfg.path(), "ws1");
    let mut ws1 = ws1;
    let ws2 = cluster_support::WebProcess::start(cfg.path(), "ws2");

    let (mut browsers, acked) = create_sessions(ws1.addr(), 30);
    let mut per_master = [0usize; 3];
    for (id, (value, stamp)) in &acked {
        let (owner, copy) = cluster.owner_of(id).expect("the session is in the cluster");
        assert_eq!(
            (copy.counter(), copy.stamp, copy.owner.as_str()),
            (*value, *stamp, "ws1")
        );
        per_master[owner] += 1;
    }
    assert!(per_master.iter().all(|&n| n > 0), "{per_master:?}");

    // Fencing: a session taken over by ws2; ws1's late write gets 409.
    let b = &mut browsers[0];
    let id = b.id();
    let a = b.increment(ws2.addr());
    assert_eq!(
        (a.value, a.source.as_str()),
        (acked[&id].0 + 1, "store"),
        "{a:?}"
    );
    let r = b.post(ws1.addr(), "/api/counter", None);
    assert_eq!(r.status, 409, "{r:?}");
    let (_, copy) = cluster.owner_of(&id).unwrap();
    assert_eq!((copy.stamp, copy.owner.as_str()), (a.stamp, "ws2"));
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
