//! Support for integration tests that run whole clusters: `sticky store`
//! and `sticky web` processes on loopback ports.
//!
//! Use it from a test file with `mod support; mod cluster_support;` (it
//! builds on [`crate::support`]). What it offers:
//!
//! - [`ClusterConfig`]: writes a cluster file (stores, web servers,
//!   replicas, mode, `[session]` overrides, a fresh random secret) to a
//!   temporary file.
//! - [`WebProcess`]: a `sticky web --config FILE --name wsN` child, started
//!   and waited for (its `/.sticky/health` answers 200 to the admin token),
//!   killed on drop, with `kill -9`, `SIGSTOP` and `SIGCONT` at hand; its log
//!   is printed when the test fails.
//! - [`Browser`]: a tiny blocking HTTP/1.1 client with a jar for the
//!   session cookie; [`http_request`] underneath it.
//! - [`sess_get`], [`store_sessions`], [`sess_command_calls`]: what the
//!   stores themselves hold and how many session commands they served.
//! - [`sign_cookie`]: the session cookie value for an id, as the cluster
//!   signs it (to forge values with another secret, or to present a valid
//!   id that no store has).
//! - [`FakeStore`]: a TCP listener that plays a broken store (hangs, or
//!   answers garbage).
//! - [`CookieJar`]: a client keeping every cookie (route and session), for
//!   talking to the shop through the director.
//! - [`UpProcess`]: a whole `sticky up` cluster on a free port range, with
//!   `sticky status --json` and the director's `/api/cluster` at hand;
//!   [`pid_alive`].
//! - [`create_sessions`], [`holders`], [`assert_no_newer_copy`],
//!   [`old_hosts_late_write_is_refused`]: session checks shared by the
//!   tests on `sticky store` and on Redis, given how to read the copies
//!   ([`copies_by_store`] or `redis_support::redis_copies_by_store`).
//! - [`run_bench`]: `sticky bench` against a web server, its report.
//! - [`signal`] (from [`crate::support`], re-exported for the tests that
//!   import it from here).
//!
//! Deadlines are generous: tests share a small, loaded machine.

// Not every test binary uses every helper.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::fs::File;
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

pub use crate::support::signal;
use crate::support::{
    free_port, log_tail, log_to, read_text, sticky_command, temp_path, ChildProcess, NotReady,
    Resp, RespConn, StoreProcess, POLL,
};

/// How long a web server may take to answer its first health check.
pub const WEB_STARTUP_DEADLINE: Duration = Duration::from_secs(40);
/// Timeout of one HTTP request made by this module (a bound on a hung
/// test, never a wait a passing test sits through).
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);
/// The session cookie's default name.
pub const COOKIE_NAME: &str = "sticky.sid";

/// A random lowercase hex string of `len` characters (test secrets,
/// item names; not for cryptography).
pub fn random_hex(len: usize) -> String {
    let mut out = String::with_capacity(len + 16);
    while out.len() < len {
        out.push_str(&format!("{:016x}", random_u64()));
    }
    out.truncate(len);
    out
}

/// 64 random bits from the std hasher's per-process random keys.
pub fn random_u64() -> u64 {
    static N: AtomicUsize = AtomicUsize::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_usize(N.fetch_add(1, Ordering::Relaxed));
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// The admin token for `secret` (see `docs/protocol.md`).
pub fn admin_token(secret: &str) -> String {
    sticky_proto::control::admin_token(secret.as_bytes())
}

/// The session cookie value for the 32-hex-character `id` signed with
/// `secret`: `<id>.<first 128 bits of HMAC-SHA256(secret, "sticky/sid/v1" || id bytes), hex>`.
pub fn sign_cookie(secret: &str, id_hex: &str) -> String {
    use hmac::{Hmac, Mac};
    let id = hex::decode(id_hex).expect("the id is hex");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"sticky/sid/v1");
    mac.update(&id);
    let tag = mac.finalize().into_bytes();
    format!("{id_hex}.{}", hex::encode(&tag[..16]))
}

// ---------------------------------------------------------------------------
// Cluster file
// ---------------------------------------------------------------------------

/// Builder and result of a cluster file in a temporary directory.
///
/// ```ignore
/// let cfg = ClusterConfig::new(&[s1.addr(), s2.addr()], &["ws1", "ws2"])
///     .replicas(1)
///     .session("lease_ms", "1000")
///     .write();
/// let ws1 = WebProcess::start(cfg.path(), "ws1");
/// ```
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    secret: String,
    replicas: usize,
    mode: String,
    session: Vec<(String, String)>,
    webs: Vec<(String, SocketAddr)>,
    stores: Vec<(String, SocketAddr)>,
    /// `url` of the `[[store]]` tables that have one, by store name.
    store_urls: Vec<(String, String)>,
    path: Option<PathBuf>,
}

impl ClusterConfig {
    /// Stores named `s1`, `s2`... at `stores`; web servers called `webs`,
    /// each on a free loopback port; a fresh random secret; R=2, sync mode.
    pub fn new(stores: &[SocketAddr], webs: &[&str]) -> Self {
        let stores = stores
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("s{}", i + 1), *a))
            .collect();
        let webs = webs
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    SocketAddr::from(([127, 0, 0, 1], free_port())),
                )
            })
            .collect();
        Self {
            secret: format!("test-secret-{}", random_hex(40)),
            replicas: 2,
            mode: "sync".into(),
            session: Vec::new(),
            webs,
            stores,
            store_urls: Vec::new(),
            path: None,
        }
    }

    /// Store `name` (`s1`...) gets `url = URL`: web servers connect with it
    /// instead of `listen` (e.g. `redis://127.0.0.1:6390` for Redis).
    pub fn store_url(mut self, name: &str, url: &str) -> Self {
        self.store_urls.push((name.into(), url.into()));
        self
    }

    /// Replicas per session (1 or 2).
    pub fn replicas(mut self, r: usize) -> Self {
        self.replicas = r;
        self
    }

    /// `sync` or `async`.
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.into();
        self
    }

    /// A `[session]` setting; `value` is a TOML literal (`1000`, `"1KiB"`).
    /// Unless `lease_ms` is set, it is one hour: no director renews the
    /// lease that [`WebProcess::start`]'s health check arms.
    pub fn session(mut self, key: &str, value: &str) -> Self {
        self.session.push((key.into(), value.into()));
        self
    }

    /// Web server `name` listens on `port` instead of a free one.
    pub fn web_port(mut self, name: &str, port: u16) -> Self {
        for w in &mut self.webs {
            if w.0 == name {
                w.1 = SocketAddr::from(([127, 0, 0, 1], port));
            }
        }
        self
    }

    /// Store `name` (`s1`...) is at `addr` in this file: e.g. an address
    /// where nothing listens, for a web server that cannot reach it.
    pub fn store_addr(mut self, name: &str, addr: SocketAddr) -> Self {
        for s in &mut self.stores {
            if s.0 == name {
                s.1 = addr;
            }
        }
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let mut t = format!(
            "secret = {:?}\nreplicas = {}\nmode = {:?}\n\n[session]\n",
            self.secret, self.replicas, self.mode
        );
        for (k, v) in &self.session {
            t.push_str(&format!("{k} = {v}\n"));
        }
        if !self.session.iter().any(|(k, _)| k == "lease_ms") {
            // No director renews the lease that the first health check
            // arms; tests that want one set it (and use a `Heartbeat`).
            t.push_str("lease_ms = 3600000\n");
        }
        for (name, addr) in &self.webs {
            t.push_str(&format!(
                "\n[[web]]\nname = {name:?}\nlisten = \"{addr}\"\n"
            ));
        }
        for (name, addr) in &self.stores {
            t.push_str(&format!(
                "\n[[store]]\nname = {name:?}\nlisten = \"{addr}\"\n"
            ));
            if let Some((_, url)) = self.store_urls.iter().find(|(n, _)| n == name) {
                t.push_str(&format!("url = {url:?}\n"));
            }
        }
        t
    }

    /// Writes the file (once); returns the finished config.
    pub fn write(mut self) -> Self {
        let path = temp_path("sticky-cluster", "toml");
        std::fs::write(&path, self.toml()).expect("write the cluster file");
        self.path = Some(path);
        self
    }

    /// The file's path; panics if [`write`](Self::write) was not called.
    pub fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("ClusterConfig::write was not called")
    }

    /// The cluster secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The admin token derived from the secret.
    pub fn admin_token(&self) -> String {
        admin_token(&self.secret)
    }

    /// The configured address of web server `name`.
    pub fn web_addr(&self, name: &str) -> SocketAddr {
        self.webs
            .iter()
            .find(|w| w.0 == name)
            .map(|w| w.1)
            .unwrap_or_else(|| panic!("no web server {name:?} in the cluster file"))
    }
}

impl Drop for ClusterConfig {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            if std::thread::panicking() {
                eprintln!("cluster file kept: {}\n{}", p.display(), self.toml());
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A whole cluster
// ---------------------------------------------------------------------------

/// Stores, a cluster file naming them, and web servers started from it.
/// Everything is killed on drop.
pub struct Cluster {
    /// The web servers, in the order given.
    pub webs: Vec<WebProcess>,
    /// The stores `s1`, `s2`... in order.
    pub stores: Vec<StoreProcess>,
    /// The cluster file.
    pub config: ClusterConfig,
}

impl Cluster {
    /// Starts `stores` stores, writes a cluster file for them and the web
    /// servers `webs` (adjusted by `configure`: replicas, mode, `[session]`
    /// settings), and starts the web servers.
    pub fn start(
        stores: usize,
        webs: &[&str],
        configure: impl FnOnce(ClusterConfig) -> ClusterConfig,
    ) -> Cluster {
        let stores: Vec<StoreProcess> = (0..stores).map(|_| StoreProcess::start(&[])).collect();
        let addrs: Vec<SocketAddr> = stores.iter().map(StoreProcess::addr).collect();
        let config = configure(ClusterConfig::new(&addrs, webs)).write();
        Cluster {
            webs: start_webs(&config, webs),
            stores,
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

    /// The stores' addresses, `s1` first.
    pub fn store_addrs(&self) -> Vec<SocketAddr> {
        self.stores.iter().map(StoreProcess::addr).collect()
    }

    /// How many keys (session copies) the stores hold together (`DBSIZE`).
    pub fn stored_keys(&self) -> i64 {
        self.stores
            .iter()
            .map(|s| {
                s.client()
                    .cmd_str("DBSIZE")
                    .as_int()
                    .expect("DBSIZE answers an integer")
            })
            .sum()
    }
}

/// Runs `sticky bench --url http://WEB ARGS... --json FILE` against `web`
/// and panics (showing its output and the end of `web`'s log) unless it
/// succeeds: what it printed on standard output, and the `--json` report.
pub fn run_bench(web: &WebProcess, args: &[&str]) -> (String, Value) {
    let json_path = temp_path("sticky-bench", "json");
    let out = sticky_command()
        .args(["bench", "--url", &format!("http://{}", web.addr())])
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .output()
        .expect("run sticky bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sticky bench failed ({}):\n{stdout}\n{stderr}\nweb log:\n{}",
        out.status,
        web.log_tail(40)
    );
    let text = std::fs::read_to_string(&json_path).expect("the --json file");
    let _ = std::fs::remove_file(&json_path);
    let report = serde_json::from_str(&text).expect("the --json file is JSON");
    (stdout, report)
}

/// Starts the web servers `names` of the (written) cluster file `config`.
pub fn start_webs(config: &ClusterConfig, names: &[&str]) -> Vec<WebProcess> {
    names
        .iter()
        .map(|n| WebProcess::start(config.path(), n))
        .collect()
}

/// The web server called `name` among `webs`.
pub fn web_named<'a>(webs: &'a [WebProcess], name: &str) -> &'a WebProcess {
    webs.iter()
        .find(|w| w.name() == name)
        .unwrap_or_else(|| panic!("no web server {name:?}"))
}

/// [`web_named`], mutably (to kill it).
pub fn web_named_mut<'a>(webs: &'a mut [WebProcess], name: &str) -> &'a mut WebProcess {
    webs.iter_mut()
        .find(|w| w.name() == name)
        .unwrap_or_else(|| panic!("no web server {name:?}"))
}

// ---------------------------------------------------------------------------
// Web server processes
// ---------------------------------------------------------------------------

/// A running `sticky web` child process. Killed (SIGKILL) when dropped.
pub struct WebProcess {
    proc: ChildProcess,
    name: String,
    addr: SocketAddr,
    token: String,
    log: PathBuf,
}

/// How many times [`WebProcess::start`] tries another port when the
/// configured one was taken by someone else.
const WEB_PORT_ATTEMPTS: usize = 5;

impl WebProcess {
    /// Starts `sticky web --config CONFIG --name NAME` and waits until
    /// `GET /.sticky/health` with the admin token answers 200 naming `name`.
    ///
    /// If the configured port was taken in the meantime (another test got
    /// it), retries on a free one with `--listen`; [`addr`](Self::addr) is
    /// where it listens. Panics (showing the log) if the server exits or is
    /// not ready within [`WEB_STARTUP_DEADLINE`].
    pub fn start(config: &Path, name: &str) -> WebProcess {
        let file = sticky_config::ClusterFile::load(config).expect("load the cluster file");
        let entry = file
            .web(name)
            .unwrap_or_else(|| panic!("no [[web]] {name:?}"));
        let secret = file.secret(config).expect("the cluster file's secret");
        let token = admin_token(&secret);
        let mut addr = entry.listen;
        let mut last = String::new();
        for attempt in 0..WEB_PORT_ATTEMPTS {
            let listen = (attempt > 0).then_some(addr);
            let mut web = Self::spawn(config, name, addr, listen, &token);
            match web.wait_ready() {
                Ok(()) => return web,
                Err(log) if log.contains("cannot listen") => {
                    eprintln!("{name}: port {} taken; retrying on another", addr.port());
                    last = log;
                    addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
                }
                Err(log) => panic!(
                    "sticky web {name} did not start; log {}:\n{log}",
                    web.log.display()
                ),
            }
        }
        panic!("sticky web {name} could not bind a port in {WEB_PORT_ATTEMPTS} attempts:\n{last}");
    }

    fn spawn(
        config: &Path,
        name: &str,
        addr: SocketAddr,
        listen: Option<SocketAddr>,
        token: &str,
    ) -> WebProcess {
        let mut cmd = sticky_command();
        cmd.args(["--log", "info,sticky_session=debug", "web", "--config"])
            .arg(config)
            .args(["--name", name, "--threads", "2"]);
        if let Some(l) = listen {
            cmd.args(["--listen", &l.to_string()]);
        }
        let log = log_to(&mut cmd, &format!("sticky-web-{name}"));
        WebProcess {
            proc: ChildProcess::spawn(&mut cmd, "the sticky binary"),
            name: name.to_owned(),
            addr,
            token: token.to_owned(),
            log,
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let (addr, token, name) = (self.addr, self.token.clone(), self.name.clone());
        let ready = || {
            try_health(addr, &token, Duration::from_secs(2))
                .is_some_and(|h| h["name"] == name.as_str())
                .then_some(())
        };
        match self.proc.wait_for(WEB_STARTUP_DEADLINE, POLL * 5, ready) {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => {
                Err(format!("exited with {status}\n{}", self.log_text()))
            }
            Err(NotReady::TimedOut) => panic!(
                "sticky web {} did not answer its health check within {WEB_STARTUP_DEADLINE:?}; log {}:\n{}",
                self.name,
                self.log.display(),
                self.log_text()
            ),
        }
    }

    /// `GET /.sticky/health` with the admin token (which renews the lease):
    /// the JSON report if it answered 200 within `timeout`.
    pub fn try_health(&self, timeout: Duration) -> Option<Value> {
        try_health(self.addr, &self.token, timeout)
    }

    /// [`try_health`](Self::try_health) that must succeed.
    pub fn health(&self) -> Value {
        self.try_health(HTTP_TIMEOUT).unwrap_or_else(|| {
            panic!(
                "{}: /.sticky/health did not answer 200; log tail:\n{}",
                self.name,
                self.log_tail(30)
            )
        })
    }

    /// Renews this server's lease every 100 ms from a background thread,
    /// as a director would, until the returned guard is dropped.
    pub fn heartbeat(&self) -> Heartbeat {
        Heartbeat::start(self.addr, self.token.clone())
    }

    /// `POST /.sticky/fence` with the admin token; the JSON report.
    pub fn fence(&self) -> Value {
        let auth = format!("Bearer {}", self.token);
        let r = http_request(
            self.addr,
            "POST",
            "/.sticky/fence",
            &[("Authorization", &auth)],
            None,
        )
        .expect("POST /.sticky/fence");
        r.json_ok()
    }

    /// The configured name (`ws1`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The admin token it accepts.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Path of the file holding its stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything it has logged so far.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Panics if the log shows a panic (of any thread or task).
    pub fn assert_no_panic(&self) {
        let text = self.log_text();
        assert!(
            !text.contains("panicked"),
            "{} panicked; log {}:\n{}",
            self.name,
            self.log.display(),
            self.log_tail(60)
        );
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// `kill -9` (std's `Child::kill` sends SIGKILL) and reap.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc.kill9()
    }

    /// `kill -STOP`: the process freezes (its sockets stay open).
    pub fn sigstop(&self) {
        signal(self.pid(), "STOP");
    }

    /// `kill -CONT`: a stopped process resumes.
    pub fn sigcont(&self) {
        signal(self.pid(), "CONT");
    }
}

impl Drop for WebProcess {
    fn drop(&mut self) {
        // SIGKILL also ends a stopped process.
        self.proc.kill_quietly();
        if std::thread::panicking() {
            eprintln!(
                "--- sticky web {} log {} (last 60 lines) ---\n{}\n--- end of log ---",
                self.name,
                self.log.display(),
                self.log_tail(60)
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// Authenticated health checks every 100 ms until dropped (see
/// [`WebProcess::heartbeat`]).
pub struct Heartbeat {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Heartbeat {
    fn start(addr: SocketAddr, token: String) -> Heartbeat {
        let stop = Arc::new(AtomicBool::new(false));
        let st = stop.clone();
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                let _ = try_health(addr, &token, Duration::from_secs(1));
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        Heartbeat {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `GET /.sticky/health` on `addr` with the admin token `token` (which
/// renews the lease): the JSON report if it answered 200 within `timeout`.
fn try_health(addr: SocketAddr, token: &str, timeout: Duration) -> Option<Value> {
    let auth = format!("Bearer {token}");
    let r = http_request_timeout(
        addr,
        "GET",
        "/.sticky/health",
        &[("Authorization", &auth)],
        None,
        timeout,
    )
    .ok()?;
    (r.status == 200).then(|| serde_json::from_slice(&r.body).ok())?
}

// ---------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------

/// One HTTP response.
#[derive(Clone)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl fmt::Debug for HttpResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} {:?} {:?}",
            self.status,
            self.headers,
            self.text()
        )
    }
}

impl HttpResponse {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics showing the response if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }

    /// Asserts status 200 and returns the JSON body.
    pub fn json_ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200: {self:?}");
        self.json()
    }

    /// The value the response sets cookie `name` to: `Some(Some(v))` for a
    /// new value, `Some(None)` for a removal (`Max-Age=0` or empty value),
    /// `None` if it does not set it.
    pub fn set_cookie(&self, name: &str) -> Option<Option<String>> {
        self.cookies_set()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Every cookie the response sets, in order, as in
    /// [`set_cookie`](Self::set_cookie): `(name, Some(value))` for a new
    /// value, `(name, None)` for a removal.
    pub fn cookies_set(&self) -> Vec<(String, Option<String>)> {
        self.headers_all("set-cookie")
            .filter_map(|line| {
                let mut parts = line.split(';');
                let (k, v) = parts.next()?.trim().split_once('=')?;
                let removed =
                    v.is_empty() || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
                Some((k.to_owned(), (!removed).then(|| v.to_owned())))
            })
            .collect()
    }
}

/// `method path` on `addr` (see [`http_request`]) with `Cookie: cookie`
/// unless `cookie` is empty, and `json` as the body if given.
fn request_with_cookie(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    json: Option<&Value>,
) -> io::Result<HttpResponse> {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if !cookie.is_empty() {
        headers.push(("Cookie", cookie));
    }
    let body = json.map(|j| serde_json::to_vec(j).unwrap());
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    http_request(addr, method, path, &headers, body.as_deref())
}

/// [`http_request_timeout`] with [`HTTP_TIMEOUT`].
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<HttpResponse> {
    http_request_timeout(addr, method, path, headers, body, HTTP_TIMEOUT)
}

/// One HTTP/1.1 request on a new connection (`Connection: close`): the
/// whole response, read until the server closes. Header values are sent
/// as given, byte for byte.
pub fn http_request_timeout(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<HttpResponse> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let body = body.unwrap_or_default();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    s.write_all(&req)?;
    let started = Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // A reset after a complete response counts as closed.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
        if started.elapsed() > timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "response took too long",
            ));
        }
    }
    parse_response(&raw)
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn parse_response(raw: &[u8]) -> io::Result<HttpResponse> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| {
            invalid(format!(
                "no complete response head in {:?}",
                String::from_utf8_lossy(raw)
            ))
        })?;
    let head =
        std::str::from_utf8(&raw[..end]).map_err(|_| invalid("response head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status: u16 = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some((_, len)) = headers.iter().find(|(k, _)| k == "content-length") {
        let len: usize = len.parse().map_err(|_| invalid("bad content-length"))?;
        if rest.len() < len {
            return Err(invalid(format!(
                "body cut short: {} of {len} bytes",
                rest.len()
            )));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| invalid("chunk size line cut short"))?;
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| invalid("bad chunk size"))?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| invalid(format!("bad chunk size {size_text:?}")))?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(body);
        }
        if rest.len() < size + 2 {
            return Err(invalid("chunk cut short"));
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// An HTTP client with a cookie jar holding the session cookie, like one
/// browser tab. The same jar may be used against any web server (as the
/// director would route it after a failover).
#[derive(Debug, Clone)]
pub struct Browser {
    cookie_name: String,
    /// The session cookie's value, if any.
    pub cookie: Option<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    /// An empty jar for the `sticky.sid` cookie.
    pub fn new() -> Self {
        Self {
            cookie_name: COOKIE_NAME.into(),
            cookie: None,
        }
    }

    /// A jar already holding `value` (e.g. a forged one).
    pub fn with_cookie(value: &str) -> Self {
        Self {
            cookie: Some(value.to_owned()),
            ..Self::new()
        }
    }

    /// The session id: the part of the cookie before the `.`.
    pub fn session_id(&self) -> Option<String> {
        self.cookie
            .as_deref()
            .and_then(|c| c.split_once('.'))
            .map(|(id, _)| id.to_owned())
    }

    /// The session id; panics if the jar has no session cookie.
    pub fn id(&self) -> String {
        self.session_id()
            .expect("the browser has no session cookie")
    }

    /// Sends a request with the jar's cookie (and `json` as the body, if
    /// given) and updates the jar from `Set-Cookie`. Panics on I/O errors.
    pub fn request(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> HttpResponse {
        let cookie = self
            .cookie
            .as_ref()
            .map(|c| format!("{}={c}", self.cookie_name))
            .unwrap_or_default();
        let r = request_with_cookie(addr, method, path, &cookie, json)
            .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"));
        match r.set_cookie(&self.cookie_name) {
            Some(Some(v)) => self.cookie = Some(v),
            Some(None) => self.cookie = None,
            None => {}
        }
        r
    }

    /// `GET path`.
    pub fn get(&mut self, addr: SocketAddr, path: &str) -> HttpResponse {
        self.request(addr, "GET", path, None)
    }

    /// `POST path` with an optional JSON body.
    pub fn post(&mut self, addr: SocketAddr, path: &str, json: Option<&Value>) -> HttpResponse {
        self.request(addr, "POST", path, json)
    }

    /// `POST /api/counter`, which must answer 200: the parsed answer.
    pub fn increment(&mut self, addr: SocketAddr) -> Answer {
        Answer::from(&self.post(addr, "/api/counter", None))
    }

    /// `GET /api/counter`, which must answer 200: the parsed answer.
    pub fn counter(&mut self, addr: SocketAddr) -> Answer {
        Answer::from(&self.get(addr, "/api/counter"))
    }
}

/// A session stamp `(generation, seq)`, ordered lexicographically.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// Grows at every change of host.
    pub generation: u64,
    /// Grows at every write.
    pub seq: u64,
}

impl Stamp {
    /// Parses the demo app's `"gen.seq"`.
    pub fn parse(s: &str) -> Stamp {
        let (g, q) = s
            .split_once('.')
            .unwrap_or_else(|| panic!("bad stamp {s:?}"));
        Stamp {
            generation: g.parse().unwrap_or_else(|_| panic!("bad stamp {s:?}")),
            seq: q.parse().unwrap_or_else(|_| panic!("bad stamp {s:?}")),
        }
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.generation, self.seq)
    }
}

/// A demo app answer (`/api/counter` or `/api/cart...`).
#[derive(Debug, Clone)]
pub struct Answer {
    /// The whole JSON body.
    pub json: Value,
    /// `value` (counter answers; 0 otherwise).
    pub value: u64,
    /// `server`.
    pub server: String,
    /// `stamp`.
    pub stamp: Stamp,
    /// `source`: `cache`, `store` or `new`.
    pub source: String,
}

impl From<&HttpResponse> for Answer {
    /// Panics unless the response is a 200 with the demo app's fields.
    fn from(r: &HttpResponse) -> Self {
        let json = r.json_ok();
        let field = |k: &str| {
            json[k]
                .as_str()
                .unwrap_or_else(|| panic!("answer without {k:?}: {json}"))
                .to_owned()
        };
        Answer {
            value: json["value"].as_u64().unwrap_or(0),
            server: field("server"),
            stamp: Stamp::parse(&field("stamp")),
            source: field("source"),
            json,
        }
    }
}

impl Answer {
    /// The `items` of a cart answer.
    pub fn items(&self) -> Vec<String> {
        self.json["items"]
            .as_array()
            .unwrap_or_else(|| panic!("answer without items: {}", self.json))
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect()
    }
}

// ---------------------------------------------------------------------------
// What the stores hold
// ---------------------------------------------------------------------------

/// A session's copy on one store, from `SESS.GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    /// A live copy (`false`: a tombstone).
    pub live: bool,
    /// Its stamp.
    pub stamp: Stamp,
    /// The owning web server.
    pub owner: String,
    /// Remaining TTL in ms, -1 for none.
    pub pttl: i64,
    /// The payload: `{"c": created_ms, "d": {...session data...}}`.
    pub payload: Vec<u8>,
}

impl StoredCopy {
    /// The session data (`d` of the payload).
    pub fn data(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "stored payload is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.payload)
            )
        });
        v["d"].clone()
    }

    /// The demo counter in the data (0 if absent).
    pub fn counter(&self) -> u64 {
        self.data()["counter"].as_u64().unwrap_or(0)
    }
}

fn decode_sess_get(reply: Resp) -> Option<StoredCopy> {
    match reply {
        Resp::NilBulk | Resp::Null => None,
        Resp::Array(items) => {
            let [Resp::Bulk(kind), Resp::Int(g), Resp::Int(s), Resp::Bulk(owner), Resp::Int(pttl), Resp::Bulk(payload)] =
                &items[..]
            else {
                panic!("SESS.GET: unexpected shape {items:?}");
            };
            Some(StoredCopy {
                live: kind.as_slice() == b"live",
                stamp: Stamp {
                    generation: u64::try_from(*g).unwrap(),
                    seq: u64::try_from(*s).unwrap(),
                },
                owner: String::from_utf8_lossy(owner).into_owned(),
                pttl: *pttl,
                payload: payload.clone(),
            })
        }
        other => panic!("SESS.GET: unexpected reply {other:?}"),
    }
}

/// `SESS.GET <id>` on the store at `addr` (no password): its copy of the
/// session whose 32-hex-character id is `id`, if any.
pub fn sess_get(addr: SocketAddr, id: &str) -> Option<StoredCopy> {
    let mut c = RespConn::connect(addr).unwrap_or_else(|e| panic!("connect to store {addr}: {e}"));
    decode_sess_get(c.cmd(&[b"SESS.GET", id.as_bytes()]).expect("SESS.GET"))
}

/// The copies the store at `addr` holds of the sessions `ids` (one
/// connection, one `SESS.GET` each); sessions it lacks are absent.
pub fn store_sessions(addr: SocketAddr, ids: &[String]) -> HashMap<String, StoredCopy> {
    let mut c = RespConn::connect(addr).unwrap_or_else(|e| panic!("connect to store {addr}: {e}"));
    ids.iter()
        .filter_map(|id| {
            let reply = c.cmd(&[b"SESS.GET", id.as_bytes()]).expect("SESS.GET");
            decode_sess_get(reply).map(|copy| (id.clone(), copy))
        })
        .collect()
}

/// Calls of each session command (`sess.get`, `sess.put`, `sess.claim`,
/// `sess.touch`, `sess.del`) served by the store at `addr`, from
/// `INFO commandstats` (0 when absent).
pub fn sess_command_calls(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut c = RespConn::connect(addr).unwrap_or_else(|e| panic!("connect to store {addr}: {e}"));
    let info = c
        .cmd(&[b"INFO", b"commandstats"])
        .expect("INFO commandstats");
    let text =
        String::from_utf8_lossy(info.as_bytes().expect("INFO answers a bulk string")).into_owned();
    let mut calls: BTreeMap<String, u64> = [
        "sess.get",
        "sess.put",
        "sess.claim",
        "sess.touch",
        "sess.del",
    ]
    .iter()
    .map(|c| ((*c).to_owned(), 0))
    .collect();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if !name.starts_with("sess.") {
            continue;
        }
        let n = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no calls= in {line:?}"));
        calls.insert(name, n);
    }
    calls
}

// ---------------------------------------------------------------------------
// Broken stores
// ---------------------------------------------------------------------------

/// How a [`FakeStore`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehavior {
    /// Accepts connections, reads, and never answers.
    Hang,
    /// Answers whatever it reads with random bytes that are no RESP.
    Garbage,
}

/// A loopback listener that plays a broken store until dropped.
pub struct FakeStore {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeStore {
    /// Listens on a free loopback port and misbehaves as told.
    pub fn start(how: Misbehavior) -> FakeStore {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake store");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (st, acc) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        acc.fetch_add(1, Ordering::Relaxed);
                        let _ = sock.set_nonblocking(false);
                        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
                        match how {
                            Misbehavior::Hang => {
                                // Keep it open; drain what comes so the
                                // client's writes never block.
                                let st = st.clone();
                                let mut s = sock.try_clone().unwrap();
                                conns.lock().unwrap().push(sock);
                                std::thread::spawn(move || drain(&mut s, &st, false));
                            }
                            Misbehavior::Garbage => {
                                let st = st.clone();
                                let mut s = sock;
                                std::thread::spawn(move || drain(&mut s, &st, true));
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        FakeStore {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Reads from `s` until EOF or `stop`; with `answer`, answers every read
/// with random non-RESP bytes.
fn drain(s: &mut TcpStream, stop: &AtomicBool, answer: bool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) if answer => {
                let mut junk: Vec<u8> = (0..8).flat_map(|_| random_u64().to_le_bytes()).collect();
                // No RESP reply starts with a NUL byte.
                junk[0] = 0;
                junk.extend_from_slice(b"\r\n");
                if s.write_all(&junk).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads every copy of each of `ids` from the stores at `addrs`: for each
/// id, the copies by store index (`None` where a store has none).
pub fn copies_by_store(
    addrs: &[SocketAddr],
    ids: &[String],
) -> HashMap<String, Vec<Option<StoredCopy>>> {
    let per_store: Vec<HashMap<String, StoredCopy>> =
        addrs.iter().map(|a| store_sessions(*a, ids)).collect();
    copies_by_id(&per_store, ids)
}

/// For each of `ids`, its copies by store index (`None` where a store has
/// none), from what each store holds (`per_store`, by id).
pub fn copies_by_id(
    per_store: &[HashMap<String, StoredCopy>],
    ids: &[String],
) -> HashMap<String, Vec<Option<StoredCopy>>> {
    ids.iter()
        .map(|id| {
            let copies = per_store.iter().map(|m| m.get(id).cloned()).collect();
            (id.clone(), copies)
        })
        .collect()
}

/// Each session's last acknowledged `(value, stamp)`, by id.
pub type Acked = HashMap<String, (u64, Stamp)>;

/// What servers hold of sessions, by id: the copies by server index
/// (`None` where a server has none), as [`copies_by_store`] reads them from
/// `sticky store`s (and `redis_support::redis_copies_by_store` from Redis).
pub type CopiesById = HashMap<String, Vec<Option<StoredCopy>>>;

/// `n` new sessions on `web`, the i-th incremented `1 + i % 3` times:
/// the browsers and each session's last acknowledged (value, stamp).
pub fn create_sessions(web: SocketAddr, n: usize) -> (Vec<Browser>, Acked) {
    let mut browsers = Vec::new();
    let mut acked = HashMap::new();
    for i in 0..n {
        let mut b = Browser::new();
        let mut last = None;
        for v in 1..=1 + i as u64 % 3 {
            let a = b.increment(web);
            assert_eq!(a.value, v, "{a:?}");
            last = Some(a);
        }
        let last = last.unwrap();
        acked.insert(b.id(), (last.value, last.stamp));
        browsers.push(b);
    }
    (browsers, acked)
}

/// For each session, the indexes of the servers (among `addrs`, read with
/// `read`) holding a live copy with exactly the acknowledged stamp and
/// value.
pub fn holders(
    addrs: &[SocketAddr],
    acked: &Acked,
    read: impl Fn(&[SocketAddr], &[String]) -> CopiesById,
) -> HashMap<String, Vec<usize>> {
    let ids: Vec<String> = acked.keys().cloned().collect();
    let copies = read(addrs, &ids);
    ids.iter()
        .map(|id| {
            let (value, stamp) = acked[id];
            let on = copies[id]
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let c = c.as_ref()?;
                    (c.live && c.stamp == stamp && c.counter() == value).then_some(i)
                })
                .collect();
            (id.clone(), on)
        })
        .collect()
}

/// No server (among `addrs`, read with `read`) holds a copy newer than the
/// acknowledged one (nothing was written behind the client's back), nor a
/// tombstone.
pub fn assert_no_newer_copy(
    addrs: &[SocketAddr],
    acked: &Acked,
    read: impl Fn(&[SocketAddr], &[String]) -> CopiesById,
) {
    let ids: Vec<String> = acked.keys().cloned().collect();
    for (id, copies) in read(addrs, &ids) {
        for c in copies.iter().flatten() {
            assert!(
                c.live && c.stamp <= acked[&id].1,
                "unexpected copy of {id}: {c:?}"
            );
        }
    }
}

/// The scenario of a late write by the old host, the same on `sticky
/// store`s and on Redis (`addrs`, whose copies `read` reads), R=2: a
/// session made on `ws1` moves to `ws2`; ws1, which still caches it (no
/// lease runs out, so it is not fenced), must lose its write visibly
/// (409), the servers keep ws2's value on both replicas, and ws1 then
/// serves the stored copy.
pub fn old_hosts_late_write_is_refused(
    ws1: SocketAddr,
    ws2: SocketAddr,
    addrs: &[SocketAddr],
    read: impl Fn(&[SocketAddr], &[String]) -> CopiesById,
) {
    let mut b = Browser::new();
    for i in 1..=3 {
        assert_eq!(b.increment(ws1).value, i);
    }
    let id = b.id();
    let a = b.increment(ws2);
    assert_eq!((a.value, a.source.as_str()), (4, "store"), "{a:?}");
    let moved = a.stamp;

    let r = b.post(ws1, "/api/counter", None);
    assert_eq!(r.status, 409, "the old host's write is refused: {r:?}");
    assert!(r.text().contains("moved"), "a clear error: {r:?}");

    let copies = &read(addrs, std::slice::from_ref(&id))[&id];
    let live: Vec<_> = copies.iter().flatten().collect();
    assert_eq!(live.len(), 2, "{copies:?}");
    for copy in live {
        assert_eq!((copy.stamp, copy.counter()), (moved, 4), "{copies:?}");
    }
    // ws1 dropped its copy: it now serves the stored one.
    let a = b.counter(ws1);
    assert_eq!((a.value, a.source.as_str()), (4, "store"), "{a:?}");
}

// ---------------------------------------------------------------------------
// A cookie jar for the director
// ---------------------------------------------------------------------------

/// An HTTP client keeping every cookie it is given (the director's route
/// cookie as well as the session cookie), like one browser tab talking to
/// the director.
#[derive(Debug, Clone, Default)]
pub struct CookieJar {
    /// Cookie names and values.
    pub cookies: BTreeMap<String, String>,
}

impl CookieJar {
    /// An empty jar.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends a request with the jar's cookies (and `json` as the body, if
    /// given) and updates the jar from `Set-Cookie`. Errors are returned
    /// (a request during a failover may fail); see [`CookieJar::request`].
    pub fn try_request(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> io::Result<HttpResponse> {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let r = request_with_cookie(addr, method, path, &cookie, json)?;
        for (k, v) in r.cookies_set() {
            match v {
                Some(v) => self.cookies.insert(k, v),
                None => self.cookies.remove(&k),
            };
        }
        Ok(r)
    }

    /// [`try_request`](Self::try_request), panicking on I/O errors.
    pub fn request(
        &mut self,
        addr: SocketAddr,
        method: &str,
        path: &str,
        json: Option<&Value>,
    ) -> HttpResponse {
        self.try_request(addr, method, path, json)
            .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
    }

    /// `POST /api/cart/items {"item": item}`, which must answer 200.
    pub fn add_item(&mut self, addr: SocketAddr, item: &str) -> Answer {
        let body = serde_json::json!({ "item": item });
        Answer::from(&self.request(addr, "POST", "/api/cart/items", Some(&body)))
    }

    /// `GET /api/cart`, which must answer 200.
    pub fn cart(&mut self, addr: SocketAddr) -> Answer {
        Answer::from(&self.request(addr, "GET", "/api/cart", None))
    }

    /// The session id (the session cookie's value before the `.`).
    pub fn session_id(&self) -> Option<String> {
        self.cookies
            .get(COOKIE_NAME)
            .and_then(|c| c.split_once('.'))
            .map(|(id, _)| id.to_owned())
    }
}

// ---------------------------------------------------------------------------
// sticky up
// ---------------------------------------------------------------------------

/// How long `sticky up` may take to print its table (the issue's promise).
pub const UP_DEADLINE: Duration = Duration::from_secs(60);
/// How long `sticky up` may take to stop everything after SIGINT.
pub const UP_STOP_DEADLINE: Duration = Duration::from_secs(60);
/// The last line `sticky up` prints once everything is up.
pub const UP_READY_LINE: &str = "Ctrl-C stops everything.";
/// How many port ranges [`UpProcess::start`] tries.
const UP_PORT_ATTEMPTS: usize = 8;

/// A `sticky up` child process: a whole local cluster (director, web
/// servers, standby, stores) on a free range of loopback ports, in its own
/// run dir, with its own `HOME` (so its `~/.sticky/last-up` pointer is
/// private to the test). Dropping it stops the cluster with SIGINT, and
/// kills with SIGKILL whatever is left after [`UP_STOP_DEADLINE`].
pub struct UpProcess {
    proc: ChildProcess,
    /// The shop's port; the admin listener is `port + 1`, the
    /// supervisor's control API `port + 2`.
    pub port: u16,
    /// The run dir (`--dir`).
    pub dir: PathBuf,
    /// The `HOME` given to `sticky up` and to `sticky status`.
    pub home: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    /// How long `sticky up` took to print its table.
    pub started_in: Duration,
}

impl UpProcess {
    /// Runs `sticky up --port P --dir D EXTRA_ARGS...` on a free port range
    /// (below the ephemeral range, so no other test's sockets take its
    /// ports) and waits until it printed its table; panics (showing its
    /// output) if it fails or takes longer than [`UP_DEADLINE`].
    pub fn start(extra_args: &[&str]) -> UpProcess {
        let mut last = String::new();
        for _ in 0..UP_PORT_ATTEMPTS {
            // Ports base..base+60 are used; ranges on a 100-port grid.
            let base = 10_000 + (random_u64() % 220) as u16 * 100;
            let mut up = Self::spawn(base, extra_args);
            match up.wait_ready() {
                Ok(()) => return up,
                // Another test's cluster took a port of the range (`up`'s
                // own check, or a child losing the race to bind it).
                Err(out) if out.contains("is not free") || out.contains("in use") => {
                    eprintln!("port range {base} is taken; trying another");
                    last = out;
                }
                Err(out) => panic!(
                    "sticky up {extra_args:?} failed (run dir {}):\n{out}",
                    up.dir.display()
                ),
            }
        }
        panic!("sticky up found no free port range in {UP_PORT_ATTEMPTS} attempts:\n{last}");
    }

    fn spawn(port: u16, extra_args: &[&str]) -> UpProcess {
        let dir = temp_path("sticky-up", "d");
        std::fs::create_dir_all(&dir).expect("create the run dir");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("create the test's HOME");
        let stdout = dir.join("up.stdout");
        let stderr = dir.join("up.stderr");
        let mut cmd = sticky_command();
        cmd.env_remove("XDG_RUNTIME_DIR")
            .env("HOME", &home)
            .args(["up", "--port", &port.to_string(), "--dir"])
            .arg(&dir)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(File::create(&stdout).expect("create up.stdout"))
            .stderr(File::create(&stderr).expect("create up.stderr"));
        let started = Instant::now();
        let proc = ChildProcess::spawn(&mut cmd, "sticky up");
        UpProcess {
            proc,
            port,
            dir,
            home,
            stdout,
            stderr,
            started_in: started.elapsed(),
        }
    }

    /// Waits for the ready line; `Err(output)` if `sticky up` exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let start = Instant::now();
        let stdout = self.stdout.clone();
        let ready = || read_text(&stdout).contains(UP_READY_LINE).then_some(());
        match self.proc.wait_for(UP_DEADLINE, POLL, ready) {
            Ok(()) => {
                self.started_in += start.elapsed();
                Ok(())
            }
            Err(NotReady::Exited(status)) => {
                Err(format!("exited with {status}\n{}", self.output()))
            }
            Err(NotReady::TimedOut) => panic!(
                "sticky up did not print its table within {UP_DEADLINE:?}:\n{}",
                self.output()
            ),
        }
    }

    /// The director's public listener (the shop).
    pub fn shop(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The director's admin listener (the dashboard).
    pub fn admin(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 1))
    }

    /// The supervisor's control API.
    pub fn supervisor(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port + 2))
    }

    /// The `sticky up` process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// What `sticky up` printed on standard output so far.
    pub fn stdout_text(&self) -> String {
        read_text(&self.stdout)
    }

    /// What `sticky up` printed on standard error so far.
    pub fn stderr_text(&self) -> String {
        read_text(&self.stderr)
    }

    fn output(&self) -> String {
        format!(
            "--- stdout ---\n{}\n--- stderr ---\n{}",
            self.stdout_text(),
            self.stderr_text()
        )
    }

    /// The table's rows: `(name, role, address, pid)`.
    pub fn table(&self) -> Vec<(String, String, SocketAddr, u32)> {
        self.stdout_text()
            .lines()
            .skip_while(|l| !l.starts_with("NAME"))
            .skip(1)
            .take_while(|l| !l.trim().is_empty())
            .map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                assert_eq!(f.len(), 4, "bad table row {l:?}");
                (
                    f[0].to_owned(),
                    f[1].to_owned(),
                    f[2].parse().unwrap(),
                    f[3].parse().unwrap(),
                )
            })
            .collect()
    }

    /// The cluster file `sticky up` wrote.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("cluster.toml")
    }

    /// The admin token of the cluster (from its cluster file's secret).
    pub fn token(&self) -> String {
        let text = std::fs::read_to_string(self.config_path()).expect("read cluster.toml");
        let secret = text
            .lines()
            .find_map(|l| l.strip_prefix("secret = \""))
            .and_then(|s| s.strip_suffix('"'))
            .expect("a secret in cluster.toml");
        admin_token(secret)
    }

    /// Runs `sticky ARGS...` with this cluster's `HOME`; its output.
    pub fn sticky(&self, args: &[&str]) -> std::process::Output {
        sticky_command()
            .env_remove("XDG_RUNTIME_DIR")
            .env("HOME", &self.home)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run sticky")
    }

    /// `sticky status --json --dir DIR`, parsed; panics unless it succeeds.
    pub fn status_json(&self) -> Value {
        let dir = self.dir.to_string_lossy().into_owned();
        let out = self.sticky(&["status", "--json", "--dir", &dir]);
        // 0: every process up; 3: printed, but some process is not up.
        assert!(
            matches!(out.status.code(), Some(0 | 3)),
            "sticky status failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "sticky status --json printed no JSON ({e}):\n{}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }

    /// The entry of process `name` in [`status_json`](Self::status_json).
    pub fn status_of(&self, name: &str) -> Value {
        let status = self.status_json();
        status["processes"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name).cloned())
            .unwrap_or_else(|| panic!("no process {name:?} in sticky status: {status:#}"))
    }

    /// The current PID of process `name`, from `sticky status --json`.
    pub fn pid_of(&self, name: &str) -> u32 {
        let p = self.status_of(name);
        p["pid"]
            .as_u64()
            .and_then(|p| u32::try_from(p).ok())
            .unwrap_or_else(|| panic!("no pid for {name}: {p}"))
    }

    /// Every process's PID, from the state file.
    pub fn state_pids(&self) -> Vec<(String, u32)> {
        let text = std::fs::read_to_string(self.dir.join("up.json")).unwrap_or_default();
        let Ok(state) = serde_json::from_str::<Value>(&text) else {
            return Vec::new();
        };
        state["processes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| {
                Some((
                    p["name"].as_str()?.to_owned(),
                    u32::try_from(p["pid"].as_u64()?).ok()?,
                ))
            })
            .collect()
    }

    /// The director's `/api/cluster`.
    pub fn cluster(&self) -> Value {
        http_request(self.admin(), "GET", "/api/cluster", &[], None)
            .expect("GET /api/cluster")
            .json_ok()
    }

    /// Waits until the director reports every web server up and ready
    /// (and every store up, if it reports stores).
    pub fn wait_all_up(&self) {
        self.wait_all_up_but(&[]);
    }

    /// [`wait_all_up`](Self::wait_all_up), ignoring the processes named in
    /// `except` (e.g. one that was killed).
    pub fn wait_all_up_but(&self, except: &[&str]) {
        let counts = |v: &Value| !except.iter().any(|n| v["name"] == *n);
        let mut last = Value::Null;
        let start = Instant::now();
        loop {
            if let Ok(r) = http_request(self.admin(), "GET", "/api/cluster", &[], None) {
                if r.status == 200 {
                    last = r.json();
                    let servers_up = last["servers"].as_array().is_some_and(|s| {
                        !s.is_empty()
                            && s.iter()
                                .filter(|s| counts(s))
                                .all(|s| s["state"] == "up" && s["ready"] == true)
                    });
                    let stores_up = last["stores"]
                        .as_array()
                        .is_none_or(|s| s.iter().filter(|s| counts(s)).all(|s| s["state"] == "up"));
                    if servers_up && stores_up {
                        return;
                    }
                }
            }
            assert!(
                start.elapsed() < UP_DEADLINE,
                "the cluster is not all up after {UP_DEADLINE:?}: {last:#}"
            );
            std::thread::sleep(POLL);
        }
    }

    /// Whether `sticky up` still runs.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Sends SIGINT (what Ctrl-C sends) and waits for `sticky up` to exit;
    /// panics if it has not within [`UP_STOP_DEADLINE`].
    pub fn interrupt(&mut self) -> ExitStatus {
        if let Some(status) = self.proc.try_exited() {
            return status;
        }
        signal(self.pid(), "INT");
        self.proc.wait_exit(UP_STOP_DEADLINE).unwrap_or_else(|| {
            panic!(
                "sticky up still runs {UP_STOP_DEADLINE:?} after SIGINT:\n{}",
                self.output()
            )
        })
    }
}

/// Whether process `pid` exists (and is not a zombie).
pub fn pid_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

impl Drop for UpProcess {
    fn drop(&mut self) {
        let pids = self.state_pids();
        if self.proc.is_running() {
            let _ = Command::new("kill")
                .args(["-INT", &self.pid().to_string()])
                .status();
            if self.proc.wait_exit(UP_STOP_DEADLINE).is_none() {
                self.proc.kill_quietly();
            }
        }
        // Whatever is left (sticky up killed, or a child it lost) goes too.
        for (name, pid) in pids {
            let ours = std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(&*self.dir.to_string_lossy()));
            if ours && pid_alive(pid) {
                eprintln!("{name} (pid {pid}) outlived sticky up: killing it");
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- sticky up (run dir {}, logs in {}/logs) ---\n{}",
                self.dir.display(),
                self.dir.display(),
                self.output()
            );
            for entry in std::fs::read_dir(self.dir.join("logs"))
                .into_iter()
                .flatten()
                .flatten()
            {
                eprintln!(
                    "--- {} (last 30 lines) ---\n{}",
                    entry.path().display(),
                    log_tail(&entry.path(), 30)
                );
            }
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}
