//! The director's tests: `sticky director` as a child process
//! ([`DirectorProcess`]) in front of stand-in web servers
//! ([`BackendProcess`], see [`stand_in`]), the cluster file for them
//! ([`cluster_file`]), and virtual users ([`Load`]).
//!
//! Conditions are waited for with deadlines ([`wait_until`]), never with
//! fixed sleeps; deadlines are generous for a loaded 2-core machine.

pub mod stand_in;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::http::{HttpClient, Response};
use crate::process::{
    log_tail, log_to, log_to_path, read_text, signal, temp_path, ChildProcess, NotReady, Sticky,
};
use crate::wait::{wait_until, DEADLINE, POLL, STARTUP_DEADLINE};

/// The cluster secret of every test cluster.
pub const SECRET: &str = "director-tests-cluster-secret-0123456789";
/// The name of the test that becomes a backend.
pub const BACKEND_TEST: &str = "director_test_backend";

/// Options of a backend process.
#[derive(Debug, Clone, Default)]
pub struct BackendOptions {
    /// Starting epoch (default: random).
    pub epoch: Option<u64>,
    /// Shared directory standing in for the session stores.
    pub store: Option<PathBuf>,
}

/// A stand-in web server in its own process. Killed when dropped.
pub struct BackendProcess {
    /// Its name in the cluster file (`ws1`).
    pub name: String,
    port: u16,
    options: BackendOptions,
    proc: Option<ChildProcess>,
    log: PathBuf,
}

impl BackendProcess {
    /// Starts the stand-in web server `name` (random epoch, no shared
    /// store) and waits until it answers.
    pub fn start(name: &str) -> Self {
        Self::start_with(name, BackendOptions::default())
    }

    /// [`start`](Self::start) with `options`.
    pub fn start_with(name: &str, options: BackendOptions) -> Self {
        let mut b = Self {
            name: name.to_owned(),
            port: 0,
            options,
            proc: None,
            log: temp_path(&format!("director-backend-{name}"), "log"),
        };
        b.spawn();
        b
    }

    fn spawn(&mut self) {
        let exe = std::env::current_exe().expect("current_exe");
        let mut cmd = Command::new(exe);
        cmd.args([BACKEND_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(stand_in::ENV_NAME, &self.name)
            .env(stand_in::ENV_PORT, self.port.to_string())
            .env(stand_in::ENV_SECRET, SECRET)
            .env_remove(stand_in::ENV_EPOCH)
            .env_remove(stand_in::ENV_STORE);
        if let Some(e) = self.options.epoch {
            cmd.env(stand_in::ENV_EPOCH, e.to_string());
        }
        if let Some(dir) = &self.options.store {
            cmd.env(stand_in::ENV_STORE, dir);
        }
        log_to_path(&mut cmd, &self.log);
        let proc = self
            .proc
            .insert(ChildProcess::spawn(&mut cmd, "the backend process"));
        let log = &self.log;
        let listening = || {
            read_text(log)
                .lines()
                .find_map(|l| l.split_once(stand_in::LISTENING).map(|(_, p)| p))
                .and_then(|p| p.trim().parse::<u16>().ok())
        };
        self.port = match proc.wait_for(STARTUP_DEADLINE, POLL, listening) {
            Ok(port) => port,
            Err(NotReady::Exited(status)) => panic!(
                "backend {} exited with {status}:\n{}",
                self.name,
                log_tail(&self.log, 40)
            ),
            Err(NotReady::TimedOut) => panic!(
                "backend {} did not start listening:\n{}",
                self.name,
                log_tail(&self.log, 40)
            ),
        };
        let name = self.name.clone();
        wait_until(STARTUP_DEADLINE, &format!("backend {name} answers"), || {
            self.try_stats()
                .is_some_and(|s| s["name"].as_str() == Some(name.as_str()))
        });
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn try_stats(&self) -> Option<Value> {
        let resp = HttpClient::new(self.addr()).get("/_test/stats").ok()?;
        serde_json::from_slice(&resp.body).ok()
    }

    /// The backend's own figures: name, epoch, requests, fences.
    pub fn stats(&self) -> Value {
        self.try_stats()
            .unwrap_or_else(|| panic!("backend {} does not answer", self.name))
    }

    /// Requests it served.
    pub fn requests(&self) -> u64 {
        self.stats()["requests"].as_u64().unwrap()
    }

    /// Its epoch now.
    pub fn epoch(&self) -> u64 {
        self.stats()["epoch"].as_u64().unwrap()
    }

    /// How many times it was fenced.
    pub fn fences(&self) -> u64 {
        self.stats()["fences"].as_u64().unwrap()
    }

    /// Requests it refused because they carried an epoch it had left.
    pub fn refused_stale(&self) -> u64 {
        self.stats()["refused_stale"].as_u64().unwrap()
    }

    /// `POST path` straight to the backend (e.g. `/_test/sick`).
    pub fn post(&self, path: &str) {
        let resp = HttpClient::new(self.addr())
            .request("POST", path, &[], b"")
            .unwrap();
        assert_eq!(resp.status, 200, "{path}: {}", resp.text());
    }

    /// SIGKILL, and reap.
    pub fn kill9(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill_quietly();
        }
    }

    /// Starts the process again on the same port, with `epoch` if given
    /// (else a random one).
    pub fn restart(&mut self, epoch: Option<u64>) {
        self.kill9();
        self.options.epoch = epoch;
        self.spawn();
    }
}

impl Drop for BackendProcess {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "--- backend {} log {} ---\n{}\n--- end ---",
                self.name,
                self.log.display(),
                log_tail(&self.log, 20)
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// The director's count of requests (waits for a head, bodies, tunnels)
/// ended because their server was marked down (`end_requests_on_down`).
pub const ENDED_ON_DOWN: &str = "sticky_director_upstream_errors_total{kind=\"marked_down\"}";

/// The value of one metric line, e.g. `name{le="0.25"}`.
pub fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("{series} missing from:\n{text}"))
        .parse()
        .unwrap()
}

/// A cluster file for these backends: `(backend, standby)`.
/// `director_extra` is appended to `[director]` (keys not set here).
pub fn cluster_file(webs: &[(&BackendProcess, bool)], director_extra: &str) -> String {
    // `HttpClient` sends `Host: sticky.test`, which the admin listener
    // must be told to accept (`admin_hosts`). Health checks get two seconds
    // and no slow-check mark: on a loaded test machine a check may take
    // longer than 100 ms, and these tests assert where clients land
    // (`director_failover_net.rs` tests the mark).
    let mut text = format!(
        "secret = \"{SECRET}\"\n\n[director]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
         admin_hosts = [\"sticky.test\"]\nhealth_interval_ms = 300\nhealth_timeout_ms = 2000\nhealth_slow_ms = 0\nfall = 2\nrise = 2\n{director_extra}\n"
    );
    for (b, standby) in webs {
        text.push_str(&format!(
            "\n[[web]]\nname = \"{}\"\nlisten = \"{}\"\nstandby = {standby}\n",
            b.name,
            b.addr()
        ));
    }
    text
}

/// A running `sticky director`. Killed when dropped.
pub struct DirectorProcess {
    proc: ChildProcess,
    log: PathBuf,
    /// The cluster file it reads.
    pub config: PathBuf,
    /// The public listener.
    pub public: SocketAddr,
    /// The admin listener.
    pub admin: SocketAddr,
}

impl DirectorProcess {
    /// Starts a director on `cluster` (a cluster file's text) and waits
    /// until every server is up.
    pub fn start(sticky: Sticky, cluster: &str) -> Self {
        let d = Self::start_no_wait(sticky, cluster);
        d.wait_all_up();
        d
    }

    /// Starts a director and waits only until it listens.
    pub fn start_no_wait(sticky: Sticky, cluster: &str) -> Self {
        Self::start_with_args(sticky, cluster, &[])
    }

    /// `sticky director --config FILE ARGS...`, waited for until it
    /// listens (its ports are read back from its log).
    pub fn start_with_args(sticky: Sticky, cluster: &str, args: &[&str]) -> Self {
        let config = temp_path("director-cluster", "toml");
        std::fs::write(&config, cluster).expect("write the cluster file");
        let mut cmd = sticky.command();
        cmd.args([
            "--log",
            "info,sticky_director=debug",
            "director",
            "--config",
        ])
        .arg(&config)
        .args(args);
        let log = log_to(&mut cmd, "director");
        let mut proc = ChildProcess::spawn(&mut cmd, "sticky director");
        let listening = || {
            read_text(&log)
                .lines()
                .find(|l| l.contains("director listening"))
                .and_then(|l| {
                    let field = |k: &str| -> Option<SocketAddr> {
                        l.split_whitespace()
                            .find_map(|w| w.strip_prefix(k))
                            .and_then(|v| v.parse().ok())
                    };
                    Some((field("public=")?, field("admin=")?))
                })
        };
        let (public, admin) = match proc.wait_for(STARTUP_DEADLINE, POLL, listening) {
            Ok(found) => found,
            Err(NotReady::Exited(status)) => panic!(
                "sticky director exited with {status}:\n{}",
                log_tail(&log, 40)
            ),
            Err(NotReady::TimedOut) => panic!(
                "sticky director did not start listening:\n{}",
                log_tail(&log, 40)
            ),
        };
        Self {
            proc,
            log,
            config,
            public,
            admin,
        }
    }

    /// A client of the public listener, with an empty cookie jar.
    pub fn client(&self) -> HttpClient {
        HttpClient::new(self.public)
    }

    /// `GET path` on the admin listener.
    pub fn admin_get(&self, path: &str) -> Response {
        HttpClient::new(self.admin).get(path).expect("admin GET")
    }

    /// `POST path` on the admin listener.
    pub fn admin_post(&self, path: &str) -> Response {
        // State changes on the admin listener need the admin token.
        let auth = format!(
            "Bearer {}",
            sticky_proto::control::admin_token(SECRET.as_bytes())
        );
        HttpClient::new(self.admin)
            .request("POST", path, &[("Authorization", &auth)], b"")
            .expect("admin POST")
    }

    /// `GET /api/cluster`.
    pub fn cluster(&self) -> Value {
        let resp = self.admin_get("/api/cluster");
        assert_eq!(resp.status, 200, "{}", resp.text());
        serde_json::from_slice(&resp.body).expect("cluster JSON")
    }

    /// One server's entry of `/api/cluster`.
    pub fn server(&self, name: &str) -> Value {
        self.cluster()["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// The state of server `name` in `/api/cluster` (`absent` if not
    /// there).
    pub fn state(&self, name: &str) -> String {
        self.server(name)["state"]
            .as_str()
            .unwrap_or("absent")
            .to_owned()
    }

    /// Waits until `name` is in `state`.
    pub fn wait_state(&self, name: &str, state: &str) {
        wait_until(DEADLINE, &format!("{name} is {state}"), || {
            self.state(name) == state
        });
    }

    /// Waits until every configured server is up (standbys included).
    pub fn wait_all_up(&self) {
        wait_until(STARTUP_DEADLINE, "every web server is up", || {
            self.cluster()["servers"]
                .as_array()
                .unwrap()
                .iter()
                .all(|s| s["state"] == "up")
        });
    }

    /// Replaces the cluster file (for reloads).
    pub fn rewrite_config(&self, cluster: &str) {
        std::fs::write(&self.config, cluster).expect("rewrite the cluster file");
    }

    /// The director's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Sends a signal by name (`HUP`, `TERM`...).
    pub fn signal(&self, sig: &str) {
        signal(self.pid(), sig);
    }

    /// Waits for the process to exit; its exit status.
    pub fn wait_exit(&mut self, deadline: Duration) -> std::process::ExitStatus {
        self.proc
            .wait_exit(deadline)
            .unwrap_or_else(|| panic!("director still running:\n{}", self.log_text()))
    }

    /// Everything it has logged so far.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }
}

impl Drop for DirectorProcess {
    fn drop(&mut self) {
        self.proc.kill_quietly();
        if std::thread::panicking() {
            eprintln!(
                "--- director log {} ---\n{}\n--- end ---",
                self.log.display(),
                log_tail(&self.log, 60)
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
            let _ = std::fs::remove_file(&self.config);
        }
    }
}

/// The server named by a route cookie value (`ws1.<mac>` → `ws1`).
pub fn route_target(value: &str) -> &str {
    value.rsplit_once('.').map_or(value, |(name, _)| name)
}

/// What one virtual user of a [`Load`] saw.
#[derive(Debug, Default, Clone)]
pub struct ClientReport {
    /// The backend of every successful response, in order.
    pub served_by: Vec<String>,
    /// The body of every successful response, in order.
    pub bodies: Vec<String>,
    /// `(response index, server named)` for each route cookie received.
    pub route_cookies: Vec<(usize, String)>,
    /// Every failure: transport errors and non-200 answers.
    pub failures: Vec<String>,
}

/// Virtual users, each on its own thread with its own connection and
/// cookie jar, sending `GET path` in a loop until stopped.
pub struct Load {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    reports: std::sync::Arc<Vec<std::sync::Mutex<ClientReport>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    /// `clients` virtual users sending `GET path` to `addr`.
    pub fn start(addr: SocketAddr, clients: usize, path: &str) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, Mutex};
        let stop = Arc::new(AtomicBool::new(false));
        let reports: Arc<Vec<Mutex<ClientReport>>> = Arc::new(
            (0..clients)
                .map(|_| Mutex::new(ClientReport::default()))
                .collect(),
        );
        let threads = (0..clients)
            .map(|i| {
                let stop = Arc::clone(&stop);
                let reports = Arc::clone(&reports);
                let path = path.to_owned();
                std::thread::spawn(move || {
                    let mut client = HttpClient::new(addr);
                    while !stop.load(Ordering::Relaxed) {
                        let result = client.get(&path);
                        let mut r = reports[i].lock().unwrap();
                        match result {
                            Ok(resp) if resp.status == 200 => {
                                if let Some((_, v)) = resp
                                    .set_cookies()
                                    .into_iter()
                                    .find(|(k, _)| k == "sticky.route")
                                {
                                    let n = r.served_by.len();
                                    r.route_cookies.push((n, route_target(&v).to_owned()));
                                }
                                r.served_by.push(resp.backend().unwrap_or("?").to_owned());
                                r.bodies.push(resp.text());
                            }
                            Ok(resp) => {
                                let n = r.served_by.len();
                                r.failures.push(format!(
                                    "HTTP {} after {n} requests: {}",
                                    resp.status,
                                    resp.text()
                                ));
                            }
                            Err(e) => {
                                let n = r.served_by.len();
                                r.failures.push(format!("{e} after {n} requests"));
                            }
                        }
                        drop(r);
                        // A little think time keeps a 2-core machine usable.
                        std::thread::sleep(Duration::from_millis(2));
                    }
                })
            })
            .collect();
        Self {
            stop,
            reports,
            threads,
        }
    }

    /// How many virtual users there are.
    pub fn clients(&self) -> usize {
        self.reports.len()
    }

    /// Successful responses of client `i` so far.
    pub fn done(&self, i: usize) -> usize {
        self.reports[i].lock().unwrap().served_by.len()
    }

    /// The server that last answered client `i`.
    pub fn last_server(&self, i: usize) -> Option<String> {
        self.reports[i].lock().unwrap().served_by.last().cloned()
    }

    /// Waits until every client has `n` more successful responses than in
    /// `since` (from [`Load::snapshot`]).
    pub fn wait_progress(&self, since: &[usize], n: usize) {
        wait_until(
            DEADLINE,
            &format!("every client made {n} more requests"),
            || (0..self.clients()).all(|i| self.done(i) >= since[i] + n),
        );
    }

    /// Successful responses per client now.
    pub fn snapshot(&self) -> Vec<usize> {
        (0..self.clients()).map(|i| self.done(i)).collect()
    }

    /// Stops every client and returns what each saw.
    pub fn stop(self) -> Vec<ClientReport> {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.threads {
            t.join().expect("a load thread panicked");
        }
        self.reports
            .iter()
            .map(|r| r.lock().unwrap().clone())
            .collect()
    }
}
