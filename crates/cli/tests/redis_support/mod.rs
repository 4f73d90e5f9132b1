//! Support for integration tests that use Redis as the session store
//! (`docs/redis.md`).
//!
//! Use it from a test file with `mod support; mod cluster_support; mod
//! redis_support;`. What it offers:
//!
//! - [`have_redis`]: whether `redis-server` (and `redis-cli`) are installed;
//!   skips loudly, or panics when `CI` is set.
//! - [`RedisProcess`]: a `redis-server` child on a free loopback port, in a
//!   directory of its own, started and waited for (it answers `PING` and
//!   reports our child's pid), killed on drop; its log is printed when the
//!   test fails.
//! - [`redis_copy`], [`redis_copies_by_store`]: what the Redis servers hold
//!   of a session, read with `HGETALL` and `PTTL` from the documented key
//!   layout (`sticky:{<id>}`), as [`StoredCopy`]s like `SESS.GET` gives.
//! - [`RedisClusterNodes`]: three `redis-server`s with `cluster-enabled`,
//!   formed into a Redis Cluster of three masters with `redis-cli --cluster
//!   create`; [`RedisClusterNodes::owner_of`] finds which master holds a
//!   session.
//! - [`RedisCluster`]: Redis servers, a cluster file whose `[[store]]`
//!   tables point web servers at them with `url = "redis://..."`, and
//!   `sticky web` processes started from it.

// Not every test binary uses every helper.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cluster_support::{
    copies_by_id, start_webs, web_named, web_named_mut, ClusterConfig, Stamp, StoredCopy,
    WebProcess,
};
use crate::support::{
    free_port, read_text, require_program_from, tail, temp_path, ChildProcess, NotReady, POLL,
    STARTUP_DEADLINE,
};

/// How many free ports [`RedisProcess::start`] tries.
const PORT_ATTEMPTS: usize = 5;

/// Whether the Redis programs are installed: `redis-server` (and, if
/// `with_cli`, `redis-cli`). Prints a loud `SKIPPED` line when they are
/// not, or panics if `CI` is set.
pub fn have_redis(with_cli: bool) -> bool {
    require_program_from("redis-server", "redis-server")
        && (!with_cli || require_program_from("redis-cli", "redis-tools"))
}

/// A running `redis-server`. Killed (SIGKILL) when dropped.
pub struct RedisProcess {
    proc: ChildProcess,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
}

impl RedisProcess {
    /// `redis-server` on a free loopback port with `extra_args` (e.g.
    /// `["--requirepass", "pw"]`, `["--cluster-enabled", "yes"]`), no
    /// persistence, waited for.
    pub fn start(extra_args: &[&str]) -> RedisProcess {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut r = Self::spawn(port, extra_args);
            match r.wait_ready() {
                Ok(()) => return r,
                Err(log) if log.contains("Address already in use") => {
                    eprintln!("port {port} was taken; retrying with another port");
                    last = log;
                }
                Err(log) => panic!("redis-server {extra_args:?} did not start:\n{log}"),
            }
        }
        panic!("redis-server could not bind a free port in {PORT_ATTEMPTS} attempts:\n{last}");
    }

    /// `redis-server` on `port` (to restart a killed one where its clients
    /// expect it), empty, waited for.
    pub fn start_on_port(port: u16, extra_args: &[&str]) -> RedisProcess {
        let mut r = Self::spawn(port, extra_args);
        if let Err(log) = r.wait_ready() {
            panic!("redis-server on port {port} did not start:\n{log}");
        }
        r
    }

    fn spawn(port: u16, extra_args: &[&str]) -> RedisProcess {
        let dir = temp_path("redis-server", "dir");
        std::fs::create_dir_all(&dir).expect("create the redis-server directory");
        let log = dir.join("redis.log");
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--logfile")
            .arg(&log)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        RedisProcess {
            proc: ChildProcess::spawn(&mut cmd, "redis-server"),
            port,
            dir,
            log,
        }
    }

    /// Waits until the server answers `PING` and `INFO` names our child's
    /// pid. `Err(log)` if it exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let (port, pid) = (self.port, self.pid());
        let ready = || {
            let mut c = try_conn(port).ok()?;
            let info: String = redis::cmd("INFO").arg("server").query(&mut c).ok()?;
            info.contains(&format!("process_id:{pid}\r")).then_some(())
        };
        match self.proc.wait_for(STARTUP_DEADLINE, POLL, ready) {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => {
                Err(format!("exited with {status}\n{}", self.log_text()))
            }
            Err(NotReady::TimedOut) => panic!(
                "redis-server did not answer within {STARTUP_DEADLINE:?}:\n{}",
                self.log_text()
            ),
        }
    }

    /// A plain synchronous connection (no password).
    pub fn conn(&self) -> redis::Connection {
        try_conn(self.port).unwrap_or_else(|e| panic!("connect to redis-server {}: {e}", self.port))
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its own directory (`--dir`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }

    /// `kill -9`, and waits for the exit.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc.kill9()
    }
}

/// A synchronous connection (no password) to the `redis-server` on `port`,
/// with 20 s socket timeouts.
fn try_conn(port: u16) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/"))?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_secs(20)))?;
    conn.set_write_timeout(Some(Duration::from_secs(20)))?;
    Ok(conn)
}

impl Drop for RedisProcess {
    fn drop(&mut self) {
        self.proc.kill_quietly();
        if std::thread::panicking() {
            eprintln!(
                "--- redis-server :{} log (last 30 lines) ---\n{}\n--- end of log ---",
                self.port,
                tail(&self.log_text(), 30)
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// What `conn` holds of the session `id` (32 hex characters), read from
/// the documented layout: the hash `sticky:{<id>}` and its `PTTL`.
pub fn redis_copy(conn: &mut redis::Connection, id: &str) -> Option<StoredCopy> {
    redis_try_copy(conn, id).expect("HGETALL and PTTL")
}

/// [`redis_copy`], with Redis's errors (e.g. `MOVED` from a cluster node
/// that does not own the key's slot) returned.
pub fn redis_try_copy(
    conn: &mut redis::Connection,
    id: &str,
) -> redis::RedisResult<Option<StoredCopy>> {
    let key = format!("sticky:{{{id}}}");
    let (fields, pttl): (HashMap<String, Vec<u8>>, i64) = redis::pipe()
        .cmd("HGETALL")
        .arg(&key)
        .cmd("PTTL")
        .arg(&key)
        .query(conn)?;
    if fields.is_empty() {
        return Ok(None);
    }
    let text = |f: &str| String::from_utf8(fields.get(f).cloned().unwrap_or_default()).unwrap();
    let kind = text("kind");
    assert!(
        kind == "live" || kind == "tombstone",
        "{key}: bad kind {kind:?}: {fields:?}"
    );
    let expected = if kind == "live" { 5 } else { 3 };
    assert_eq!(fields.len(), expected, "{key}: fields {:?}", fields.keys());
    Ok(Some(StoredCopy {
        live: kind == "live",
        stamp: Stamp {
            generation: text("gen").parse().unwrap(),
            seq: text("seq").parse().unwrap(),
        },
        owner: text("owner"),
        pttl,
        payload: fields.get("payload").cloned().unwrap_or_default(),
    }))
}

/// Every copy of each of `ids` on the Redis servers at `addrs`: for each
/// id, the copies by server index (`None` where a server has none).
pub fn redis_copies_by_store(
    addrs: &[SocketAddr],
    ids: &[String],
) -> HashMap<String, Vec<Option<StoredCopy>>> {
    let per_server: Vec<HashMap<String, StoredCopy>> = addrs
        .iter()
        .map(|a| {
            let client = redis::Client::open(format!("redis://{a}/")).unwrap();
            let mut c = client
                .get_connection_with_timeout(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect to redis-server {a}: {e}"));
            ids.iter()
                .filter_map(|id| redis_copy(&mut c, id).map(|copy| (id.clone(), copy)))
                .collect()
        })
        .collect();
    copies_by_id(&per_server, ids)
}

/// Redis servers, a cluster file whose stores `s1`, `s2`... are them
/// (`url = "redis://..."`), and web servers started from it. Everything is
/// killed on drop.
pub struct RedisCluster {
    /// The web servers, in the order given.
    pub webs: Vec<WebProcess>,
    /// The Redis servers behind `s1`, `s2`... in order.
    pub redis: Vec<RedisProcess>,
    /// The cluster file.
    pub config: ClusterConfig,
}

impl RedisCluster {
    /// Starts `n` Redis servers, writes a cluster file for them and the web
    /// servers `webs` (adjusted by `configure`), starts the web servers.
    pub fn start(
        n: usize,
        webs: &[&str],
        configure: impl FnOnce(ClusterConfig) -> ClusterConfig,
    ) -> RedisCluster {
        let redis: Vec<RedisProcess> = (0..n).map(|_| RedisProcess::start(&[])).collect();
        let addrs: Vec<SocketAddr> = redis.iter().map(RedisProcess::addr).collect();
        let mut config = ClusterConfig::new(&addrs, webs);
        for (i, r) in redis.iter().enumerate() {
            config = config.store_url(&format!("s{}", i + 1), &r.url());
        }
        let config = configure(config).write();
        RedisCluster {
            webs: start_webs(&config, webs),
            redis,
            config,
        }
    }

    /// The web server called `name`.
    pub fn web(&self, name: &str) -> &WebProcess {
        web_named(&self.webs, name)
    }

    /// The web server called `name`, mutably (to kill it).
    pub fn web_mut(&mut self, name: &str) -> &mut WebProcess {
        web_named_mut(&mut self.webs, name)
    }

    /// The Redis servers' addresses, `s1` first.
    pub fn redis_addrs(&self) -> Vec<SocketAddr> {
        self.redis.iter().map(RedisProcess::addr).collect()
    }
}

/// Masters of a Redis Cluster (no replicas), each its own `redis-server`,
/// formed with `redis-cli --cluster create` and waited for (`cluster_state:
/// ok` on every node).
pub struct RedisClusterNodes {
    /// The masters.
    pub nodes: Vec<RedisProcess>,
}

impl RedisClusterNodes {
    /// `n` masters (at least 3, as `redis-cli --cluster create` wants).
    pub fn start(n: usize) -> RedisClusterNodes {
        let nodes: Vec<RedisProcess> = (0..n)
            .map(|_| {
                // The cluster bus port is set (Redis 7), not port + 10000,
                // which may be past 65535 for an ephemeral port.
                let bus = free_port().to_string();
                RedisProcess::start(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--cluster-node-timeout",
                    "2000",
                    "--cluster-port",
                    &bus,
                ])
            })
            .collect();
        let mut cmd = Command::new("redis-cli");
        cmd.arg("--cluster").arg("create");
        for node in &nodes {
            cmd.arg(node.addr().to_string());
        }
        let out = cmd
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("run redis-cli --cluster create");
        assert!(
            out.status.success(),
            "redis-cli --cluster create failed:\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let cluster = RedisClusterNodes { nodes };
        let start = Instant::now();
        for node in &cluster.nodes {
            loop {
                let info: String = redis::cmd("CLUSTER")
                    .arg("INFO")
                    .query(&mut node.conn())
                    .unwrap_or_default();
                if info.contains("cluster_state:ok") && info.contains("cluster_slots_ok:16384") {
                    break;
                }
                assert!(
                    start.elapsed() < STARTUP_DEADLINE,
                    "the Redis Cluster is not ok after {STARTUP_DEADLINE:?}:\n{info}"
                );
                std::thread::sleep(POLL);
            }
        }
        cluster
    }

    /// `redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`.
    pub fn url(&self) -> String {
        let hosts: Vec<String> = self.nodes.iter().map(|n| n.addr().to_string()).collect();
        format!("redis+cluster://{}", hosts.join(","))
    }

    /// The master holding session `id` and its copy; `None` if no master
    /// holds it. Panics if two do: each session is in one slot.
    pub fn owner_of(&self, id: &str) -> Option<(usize, StoredCopy)> {
        let mut found = None;
        for (i, node) in self.nodes.iter().enumerate() {
            match redis_try_copy(&mut node.conn(), id) {
                Ok(Some(copy)) => {
                    assert!(found.is_none(), "session {id} on two masters");
                    found = Some((i, copy));
                }
                Ok(None) => {}
                // Not this master's slot.
                Err(e) if e.code() == Some("MOVED") => {}
                Err(e) => panic!("HGETALL on master {i}: {e}"),
            }
        }
        found
    }

    /// Keys each master holds (`DBSIZE`).
    pub fn key_counts(&self) -> Vec<u64> {
        self.nodes
            .iter()
            .map(|n| redis::cmd("DBSIZE").query(&mut n.conn()).unwrap())
            .collect()
    }
}
