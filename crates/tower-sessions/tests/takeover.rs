//! The demo app on tower-sessions with [`StickyStore`] as its store, as real
//! processes on three real `redis-server`s (R=2): a session continues on
//! another server after its server is killed with `kill -9` (takeover), a
//! live server's session is not taken from it, a fenced server lets go and
//! cannot write again, a read-only request writes nothing, and a logout
//! leaves tombstones.
//!
//! Skipped loudly when `redis-server` is not installed, unless `CI` is set.
//!
//! [`StickyStore`]: sticky_tower_sessions::StickyStore

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;
use sticky_test_support::{
    command_calls, free_port, have_redis, http_request, redis_copy, temp_dir, wait_until,
    ChildProcess, RedisProcess, StoredCopy,
};

const DEADLINE: Duration = Duration::from_secs(30);

/// Calls of `command` the Redis server has served (`INFO commandstats`).
fn calls(redis: &RedisProcess, command: &str) -> u64 {
    command_calls(redis.addr())
        .get(command)
        .copied()
        .unwrap_or(0)
}

/// The demo app (`sticky-tower-demo`), its stores the Redis servers given.
struct Demo {
    proc: ChildProcess,
    addr: SocketAddr,
}

impl Demo {
    /// Starts server `name` on `addr`, knowing its `peer` (name, address).
    fn start(
        name: &str,
        addr: SocketAddr,
        peer: (&str, SocketAddr),
        secret_file: &Path,
        redis: &[RedisProcess],
    ) -> Demo {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sticky-tower-demo"));
        cmd.args([
            "--listen",
            &addr.to_string(),
            "--name",
            name,
            "--secret-file",
        ])
        .arg(secret_file)
        // The test counts copies: no store passed over as slow on a
        // loaded machine.
        .args(["--replicas", "2", "--threads", "2", "--slow-store-ms", "0"])
        .arg("--peer")
        .arg(format!("{}={}", peer.0, peer.1));
        for (i, r) in redis.iter().enumerate() {
            cmd.arg("--store").arg(format!("s{}={}", i + 1, r.url()));
        }
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let d = Demo {
            proc: ChildProcess::spawn(&mut cmd, "sticky-tower-demo"),
            addr,
        };
        wait_until(DEADLINE, "the demo answers", || {
            request(d.addr, "GET", "/api/counter", None, None).is_ok()
        });
        d
    }

    fn kill9(&mut self) {
        self.proc.kill9();
    }

    /// `POST /.sticky/fence` with the admin token, as a director does to
    /// drain a server: it drops its cache and releases its lease.
    fn fence(&self, secret: &str) {
        let token = sticky_proto::control::admin_token(secret.as_bytes());
        let auth = format!("Bearer {token}");
        let r = http_request(
            self.addr,
            "POST",
            "/.sticky/fence",
            &[("Authorization", auth.as_str())],
            None,
        )
        .unwrap();
        assert_eq!(r.status, 200, "fence: {r:?}");
    }
}

struct Reply {
    status: u16,
    /// The value `Set-Cookie` gives the `id` cookie (empty: removed).
    set_cookie: Option<String>,
    body: Value,
}

/// One HTTP/1.1 request with tower-sessions' `id` cookie.
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: Option<&str>,
    json: Option<&Value>,
) -> std::io::Result<Reply> {
    let cookie = cookie.map(|c| format!("id={c}"));
    let mut headers = Vec::new();
    if let Some(c) = &cookie {
        headers.push(("Cookie", c.as_str()));
    }
    let body = json.map(Value::to_string);
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    let r = http_request(
        addr,
        method,
        path,
        &headers,
        body.as_deref().map(str::as_bytes),
    )?;
    let set_cookie = r
        .set_cookies()
        .into_iter()
        .find(|(name, _)| name == "id")
        .map(|(_, value)| value);
    Ok(Reply {
        status: r.status,
        set_cookie,
        body: serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    })
}

/// A client with tower-sessions' `id` cookie.
#[derive(Default)]
struct Browser {
    cookie: Option<String>,
}

impl Browser {
    fn send(&mut self, addr: SocketAddr, method: &str, path: &str, json: Option<&Value>) -> Reply {
        let r = request(addr, method, path, self.cookie.as_deref(), json).unwrap();
        if let Some(c) = &r.set_cookie {
            self.cookie = Some(c.clone());
        }
        r
    }

    fn increment(&mut self, addr: SocketAddr) -> Reply {
        let r = self.send(addr, "POST", "/api/counter", None);
        assert_eq!(r.status, 200, "{:?}", r.body);
        r
    }

    /// Sticky's key for the session: the 16 bytes of tower-sessions' id
    /// (the cookie is their base64url), in hex.
    fn key(&self) -> String {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(self.cookie.as_deref().expect("a session cookie"))
            .unwrap();
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

struct Setup {
    redis: Vec<RedisProcess>,
    ws1: Demo,
    ws2: Demo,
    secret: String,
}

fn setup() -> Setup {
    let redis: Vec<RedisProcess> = (0..3).map(|_| RedisProcess::start(&[])).collect();
    let secret = temp_dir("secret").join("secret");
    let text = format!("tower-test-secret-{}", "x".repeat(40));
    std::fs::write(&secret, format!("{text}\n")).unwrap();
    let a1 = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let a2 = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let ws1 = Demo::start("ws1", a1, ("ws2", a2), &secret, &redis);
    let ws2 = Demo::start("ws2", a2, ("ws1", a1), &secret, &redis);
    Setup {
        redis,
        ws1,
        ws2,
        secret: text,
    }
}

/// The copies of `key` on the Redis servers.
fn copies(redis: &[RedisProcess], key: &str) -> Vec<StoredCopy> {
    redis
        .iter()
        .filter_map(|r| redis_copy(&mut r.conn(), key))
        .collect()
}

#[test]
fn a_tower_sessions_app_keeps_its_sessions_when_its_server_is_killed() {
    if !have_redis(false) {
        return;
    }
    let mut s = setup();
    let mut b = Browser::default();
    for i in 1..=3 {
        let r = b.increment(s.ws1.addr);
        assert_eq!(
            (r.body["value"].as_u64(), r.body["server"].as_str()),
            (Some(i), Some("ws1"))
        );
    }
    let key = b.key();
    // Acknowledged on both replicas before the answer left.
    let held = copies(&s.redis, &key);
    assert_eq!(held.len(), 2, "{held:?}");
    for c in &held {
        assert_eq!((c.live, c.counter()), (true, 3));
        assert!(c.owner.starts_with("ws1@"), "{c:?}");
    }

    // Reads are served from ws1's cache: no script runs on any store.
    let before: u64 = s.redis.iter().map(|r| calls(r, "evalsha")).sum();
    for _ in 0..5 {
        let r = b.send(s.ws1.addr, "GET", "/api/counter", None);
        assert_eq!(r.body["value"].as_u64(), Some(3));
    }
    let after: u64 = s.redis.iter().map(|r| calls(r, "evalsha")).sum();
    assert_eq!(after, before, "cached reads touched the stores");

    s.ws1.kill9();
    let r = b.increment(s.ws2.addr);
    assert_eq!(
        (r.body["value"].as_u64(), r.body["server"].as_str()),
        (Some(4), Some("ws2")),
        "the session continues on ws2"
    );
    let held = copies(&s.redis, &key);
    assert_eq!(held.len(), 2, "{held:?}");
    for c in &held {
        assert_eq!(c.counter(), 4);
        assert!(c.owner.starts_with("ws2@"), "{c:?}");
        assert_ne!(
            c.stamp.generation, 1,
            "a takeover claims a new generation: {c:?}"
        );
    }
}

#[test]
fn an_old_servers_late_write_is_refused_and_logout_leaves_tombstones() {
    if !have_redis(false) {
        return;
    }
    let s = setup();
    let mut b = Browser::default();
    for _ in 0..2 {
        b.increment(s.ws1.addr);
    }
    let key = b.key();
    // ws1 is alive and holds its lease: ws2 claims nothing (Sticky's 421,
    // which tower-sessions answers as 500) and the stores keep ws1's copy.
    let r = b.send(s.ws2.addr, "POST", "/api/counter", None);
    assert_eq!(r.status, 500, "a live owner's session: {:?}", r.body);
    for c in copies(&s.redis, &key) {
        assert_eq!(c.counter(), 2);
        assert!(c.owner.starts_with("ws1@"), "{c:?}");
    }
    // Fenced (as a director drains it), ws1 lets go: ws2 takes over.
    s.ws1.fence(&s.secret);
    assert_eq!(b.increment(s.ws2.addr).body["value"].as_u64(), Some(3));
    // ws1 has no copy to write from, and ws2 holds the session now.
    let r = b.send(s.ws1.addr, "POST", "/api/counter", None);
    assert_eq!(
        r.status, 500,
        "tower-sessions answers a failed load with 500"
    );
    for c in copies(&s.redis, &key) {
        assert_eq!(c.counter(), 3);
        assert!(c.owner.starts_with("ws2@"), "{c:?}");
    }

    // A logout (tower-sessions' flush) on its host destroys it: tombstones
    // on every store (so a store that missed it cannot bring it back), the
    // cookie removed, and the host does not serve it again.
    let cookie = b.cookie.clone().unwrap();
    let r = b.send(s.ws2.addr, "POST", "/api/logout", None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.set_cookie.as_deref(), Some(""), "the cookie is removed");
    let held = copies(&s.redis, &key);
    assert_eq!(held.len(), s.redis.len(), "{held:?}");
    for c in &held {
        assert!(!c.live, "a tombstone: {c:?}");
    }
    let r = request(s.ws2.addr, "GET", "/api/counter", Some(&cookie), None).unwrap();
    assert_eq!(
        r.body["value"].as_u64(),
        Some(0),
        "a destroyed session came back"
    );
}
