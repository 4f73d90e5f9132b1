//! Redis servers for the tests on Redis as the session store
//! (`docs/redis.md`): [`RedisProcess`], a `redis-server` child on a free
//! loopback port in a directory of its own, and [`RedisClusterNodes`],
//! masters formed into a Redis Cluster with `redis-cli --cluster create`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::copies::{redis_try_copy, StoredCopy};
use crate::process::{free_port, read_text, tail, temp_path, ChildProcess, NotReady};
use crate::wait::{POLL, STARTUP_DEADLINE};

/// How many free ports [`RedisProcess::start`] tries.
const PORT_ATTEMPTS: usize = 5;

/// A running `redis-server`. Killed (SIGKILL) when dropped.
pub struct RedisProcess {
    proc: ChildProcess,
    port: u16,
    dir: PathBuf,
    log: PathBuf,
    tls_port: Option<u16>,
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

    /// `redis-server` speaking TLS on a second free port (its plain port
    /// stays open, for the readiness check) with `cert`, trusting client
    /// certificates from no one (`--tls-auth-clients no`), with
    /// `extra_args`. Debian's `redis-server` is built with TLS.
    pub fn start_tls(cert: &crate::CertFiles, ca: &Path, extra_args: &[&str]) -> RedisProcess {
        let mut last = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let tls_port = free_port();
            let mut args: Vec<String> = vec![
                "--tls-port".into(),
                tls_port.to_string(),
                "--tls-cert-file".into(),
                cert.cert.display().to_string(),
                "--tls-key-file".into(),
                cert.key.display().to_string(),
                "--tls-ca-cert-file".into(),
                ca.display().to_string(),
                "--tls-auth-clients".into(),
                "no".into(),
            ];
            args.extend(extra_args.iter().map(|a| (*a).to_owned()));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let port = free_port();
            let mut r = Self::spawn(port, &args);
            r.tls_port = Some(tls_port);
            match r.wait_ready() {
                Ok(()) => return r,
                Err(log) if log.contains("Address already in use") => last = log,
                Err(log) => panic!("redis-server with TLS did not start:\n{log}"),
            }
        }
        panic!("redis-server with TLS found no free ports:\n{last}");
    }

    /// `rediss://127.0.0.1:TLS_PORT` of a server started with
    /// [`start_tls`](Self::start_tls).
    pub fn tls_url(&self) -> String {
        let port = self.tls_port.expect("started with start_tls");
        format!("rediss://127.0.0.1:{port}")
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
            tls_port: None,
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
