//! Shared support for the integration tests that drive the real `sticky`
//! binary over real TCP sockets.
//!
//! Use it from a test file with `mod support;`. It is the base the other
//! support modules (`cluster_support`, `redis_support`, `director_support`)
//! build on, so every test file declares it. What it offers:
//!
//! - [`ChildProcess`]: a child process reaped once, killed on drop, with
//!   [`ChildProcess::wait_for`] (readiness against a deadline, noticing an
//!   early exit) and [`ChildProcess::wait_exit`]; [`signal`] sends any
//!   signal with `kill(1)`.
//! - [`sticky_command`]: the built `sticky` binary, with no `STICKY_*`
//!   variable of the environment; [`log_to`] sends a child's output to a
//!   log file, [`read_text`] and [`log_tail`] read it back.
//! - [`free_port`], [`temp_path`]: a free loopback port, a unique file
//!   path under cargo's temporary directory.
//! - [`StoreProcess`]: a `sticky store` child process on a free loopback
//!   port, started and waited for (it answers `PING`), killed on drop, its
//!   output kept in a log file whose path (and tail) is printed when the test
//!   fails.
//! - [`wait_until`]: polls a condition until a deadline; use it instead of
//!   fixed sleeps.
//! - [`require_program`]: skips a test loudly when an external program
//!   (e.g. `redis-cli`) is missing, except in CI (`CI` set) where it fails;
//!   [`require_program_from`] names the package to install.
//! - [`Resp`], [`RespConn`], [`resp_cmd`], [`read_reply`]: a tiny blocking
//!   RESP2/RESP3 client that shows replies exactly as sent on the wire.
//! - [`redis_connection`]: a synchronous `redis` crate connection, for
//!   convenient round trips where the exact wire form does not matter.
//!
//! Timeouts are generous on purpose: tests run in parallel with each other
//! and with builds on a small, loaded machine.

// Not every test binary uses every helper.
#![allow(dead_code, unreachable_pub)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How long a store may take to start answering `PING`.
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// Default deadline for a condition that should hold "soon".
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Interval between two polls of [`wait_until`] and friends.
pub const POLL: Duration = Duration::from_millis(20);
/// Read/write timeout of the sockets opened by this module: a bound on a
/// hung test, never a wait that a passing test sits through.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// How many times [`StoreProcess::start`] tries another port when the one it
/// picked was taken between picking and binding.
const PORT_ATTEMPTS: usize = 10;

/// Polls `f` every [`POLL`] until it returns `true`; panics with `what` if it
/// has not within `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if f() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        std::thread::sleep(POLL);
    }
}

/// Whether the program `name` can be run (is an executable file on `PATH`).
///
/// If it cannot, prints a loud `SKIPPED` line and returns `false` so the
/// test can return early; but when the `CI` variable is set, panics instead:
/// in CI these tests must run.
pub fn require_program(name: &str) -> bool {
    require_program_from(name, "redis-tools")
}

/// [`require_program`] for a program that Debian's package `package`
/// provides (the `SKIPPED` line says what to install).
pub fn require_program_from(name: &str, package: &str) -> bool {
    if find_program(name).is_some() {
        return true;
    }
    let msg = format!("SKIPPED: {name} is not installed (apt-get install {package})");
    if std::env::var_os("CI").is_some() {
        panic!("{msg}; CI is set, so this test must run");
    }
    eprintln!("\n{}\n{msg}\n{}\n", "=".repeat(72), "=".repeat(72));
    false
}

/// The path of the executable `name` found on `PATH`.
pub fn find_program(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A unique path for a test's file (e.g. a log) under cargo's temporary
/// directory for integration tests.
pub fn temp_path(prefix: &str, ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let _ = std::fs::create_dir_all(dir);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    dir.join(format!("{prefix}-{}-{n}-{nanos}.{ext}", std::process::id()))
}

/// A free loopback port, as the OS hands it out now (it may be taken again
/// before it is used: callers must cope).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// A command running the `sticky` binary built for these tests, with
/// `NO_COLOR=1` and without any `STICKY_*` variable of the environment (none
/// may change the settings a test gives).
pub fn sticky_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sticky"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("STICKY_") {
            cmd.env_remove(key);
        }
    }
    cmd.env("NO_COLOR", "1");
    cmd
}

/// Sends `cmd`'s stdout and stderr to a new log file under cargo's
/// temporary directory (named after `prefix`), and its stdin from
/// `/dev/null`; returns the log's path.
pub fn log_to(cmd: &mut Command, prefix: &str) -> PathBuf {
    let log = temp_path(prefix, "log");
    log_to_path(cmd, &log);
    log
}

/// [`log_to`] the file at `log` (created, or emptied).
pub fn log_to_path(cmd: &mut Command, log: &Path) {
    let out = File::create(log).expect("create a log file");
    let err = out.try_clone().expect("clone the log file handle");
    cmd.stdin(Stdio::null()).stdout(out).stderr(err);
}

/// The text of the file at `path` (lossy UTF-8; empty if unreadable).
pub fn read_text(path: &Path) -> String {
    std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last `n` lines of the file at `path` (e.g. a child's log).
pub fn log_tail(path: &Path, n: usize) -> String {
    tail(&read_text(path), n)
}

/// Sends `SIG<sig>` to `pid` with `kill(1)`; panics if it fails.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed: {status}");
}

/// Why [`ChildProcess::wait_for`] gave up.
#[derive(Debug, Clone, Copy)]
pub enum NotReady {
    /// The child exited first.
    Exited(ExitStatus),
    /// The deadline passed.
    TimedOut,
}

/// A child process that remembers its exit status once reaped. Killed
/// (SIGKILL) and reaped when dropped, unless it has exited.
pub struct ChildProcess {
    child: Child,
    exited: Option<ExitStatus>,
}

impl ChildProcess {
    /// Spawns `cmd`; panics (naming `what`) if it cannot.
    pub fn spawn(cmd: &mut Command, what: &str) -> ChildProcess {
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        ChildProcess {
            child,
            exited: None,
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited (reaping it), without waiting.
    pub fn try_exited(&mut self) -> Option<ExitStatus> {
        if self.exited.is_none() {
            self.exited = self.child.try_wait().expect("try_wait");
        }
        self.exited
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.try_exited().is_none()
    }

    /// Kills it with SIGKILL (std's `Child::kill` sends it on unix; no
    /// chance to clean up, and it also ends a stopped process) and reaps it.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.exited {
            return status;
        }
        let _ = self.child.kill();
        let status = self.child.wait().expect("wait for the killed child");
        self.exited = Some(status);
        status
    }

    /// [`kill9`](Self::kill9) that never panics (for `Drop`).
    pub fn kill_quietly(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            self.exited = self.child.wait().ok();
        }
    }

    /// Waits up to `deadline` for it to exit: its status, or `None` if it
    /// still runs.
    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(status) = self.try_exited() {
                return Some(status);
            }
            if start.elapsed() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Polls `ready` every `every` until it gives a value; gives up when
    /// the child exits first or `deadline` passes.
    pub fn wait_for<T>(
        &mut self,
        deadline: Duration,
        every: Duration,
        mut ready: impl FnMut() -> Option<T>,
    ) -> Result<T, NotReady> {
        let start = Instant::now();
        loop {
            if let Some(value) = ready() {
                return Ok(value);
            }
            if let Some(status) = self.try_exited() {
                return Err(NotReady::Exited(status));
            }
            if start.elapsed() > deadline {
                return Err(NotReady::TimedOut);
            }
            std::thread::sleep(every);
        }
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill_quietly();
    }
}

/// A running `sticky store` child process. Killed (SIGKILL) when dropped.
pub struct StoreProcess {
    proc: ChildProcess,
    addr: SocketAddr,
    log: PathBuf,
    password: Option<String>,
}

/// The password a store started with `extra_args` wants: that of
/// `--requirepass PASS`, or the first line of `--requirepass-file FILE`.
fn password_of(extra_args: &[&str]) -> Option<String> {
    let flag = |name: &str| {
        extra_args
            .windows(2)
            .find(|w| w[0] == name)
            .map(|w| w[1].to_owned())
    };
    flag("--requirepass").or_else(|| {
        let file = flag("--requirepass-file")?;
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().next().map(str::to_owned)
    })
}

impl StoreProcess {
    /// Starts `sticky store --listen 127.0.0.1:PORT EXTRA_ARGS...` on a free
    /// port and waits until it accepts connections and answers `PING`.
    ///
    /// If `extra_args` has `--requirepass PASS` or `--requirepass-file
    /// FILE`, the readiness probe (and [`client`](Self::client))
    /// authenticates with that password.
    ///
    /// The probe's connection is closed before this returns, but the store
    /// may notice a moment later: a test that counts connections (e.g. of
    /// `--max-clients`) should first wait until `INFO clients` shows its own
    /// connection alone. Panics (showing the log) if the store exits or
    /// is not ready within [`STARTUP_DEADLINE`].
    pub fn start(extra_args: &[&str]) -> StoreProcess {
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut store = Self::spawn(port, extra_args);
            match store.wait_ready() {
                Ok(()) => return store,
                Err(log) => {
                    // The port was taken between picking and binding it:
                    // try another one. Anything else is a real failure.
                    if !log.contains("cannot listen") {
                        panic!(
                            "sticky store {extra_args:?} did not start; log {}:\n{log}",
                            store.log.display()
                        );
                    }
                    eprintln!("port {port} was taken; retrying with another port");
                    last_log = log;
                }
            }
        }
        panic!("sticky store could not bind a free port in {PORT_ATTEMPTS} attempts:\n{last_log}");
    }

    /// Starts `sticky store` on the given `port` (e.g. to restart a killed
    /// store where its clients expect it) and waits until it answers `PING`.
    /// Panics (showing the log) if it cannot bind the port, exits, or is not
    /// ready within [`STARTUP_DEADLINE`].
    pub fn start_on_port(port: u16, extra_args: &[&str]) -> StoreProcess {
        let mut store = Self::spawn(port, extra_args);
        if let Err(log) = store.wait_ready() {
            panic!(
                "sticky store on port {port} {extra_args:?} did not start; log {}:\n{log}",
                store.log.display()
            );
        }
        store
    }

    fn spawn(port: u16, extra_args: &[&str]) -> StoreProcess {
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = sticky_command();
        cmd.args([
            "--log",
            "info,sticky_store=debug",
            "store",
            "--listen",
            &listen,
        ])
        .args(extra_args);
        let log = log_to(&mut cmd, "sticky-store");
        StoreProcess {
            proc: ChildProcess::spawn(&mut cmd, "the sticky binary"),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            log,
            password: password_of(extra_args),
        }
    }

    /// Waits until the store answers `PING` and reports our child's pid in
    /// `INFO` (so that we are not talking to another test's store that took
    /// the port). `Err(log)` if the child exits first.
    fn wait_ready(&mut self) -> Result<(), String> {
        let (addr, password, pid) = (self.addr, self.password.clone(), self.pid());
        let ready = || probe(addr, password.as_deref(), pid).then_some(());
        match self.proc.wait_for(STARTUP_DEADLINE, POLL, ready) {
            Ok(()) => Ok(()),
            Err(NotReady::Exited(status)) => {
                Err(format!("exited with {status}\n{}", self.log_text()))
            }
            Err(NotReady::TimedOut) => panic!(
                "sticky store did not answer PING within {STARTUP_DEADLINE:?}; log {}:\n{}",
                self.log.display(),
                self.log_text()
            ),
        }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the store listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The password given with `--requirepass`, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// Path of the file holding the store's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Everything the store has logged so far.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }

    /// A new plain TCP connection to the store, with [`IO_TIMEOUT`]s.
    pub fn connect(&self) -> TcpStream {
        let s = TcpStream::connect_timeout(&self.addr, IO_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to the store at {}: {e}", self.addr));
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        s
    }

    /// A new RESP connection, authenticated if the store has a password.
    pub fn client(&self) -> RespConn {
        let mut c = RespConn::from_stream(self.connect()).unwrap();
        if let Some(pass) = &self.password {
            assert_eq!(c.cmd(&[b"AUTH", pass.as_bytes()]).unwrap(), Resp::ok());
        }
        c
    }

    /// The store's resident set size, from `/proc/PID/status` (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .expect("read /proc/PID/status");
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse().ok())
            .expect("VmRSS in /proc/PID/status");
        kb * 1024
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.proc.is_running()
    }

    /// Kills the store with SIGKILL (no chance to clean up) and reaps it.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc.kill9()
    }

    /// Sends SIGTERM (graceful shutdown); does not wait.
    pub fn sigterm(&self) {
        signal(self.pid(), "TERM");
    }

    /// Waits for the child to exit; panics (showing the log) if it has not
    /// within `deadline`.
    pub fn wait_exit(&mut self, deadline: Duration) -> ExitStatus {
        self.proc.wait_exit(deadline).unwrap_or_else(|| {
            panic!(
                "sticky store (pid {}) still running {deadline:?} later; log {}:\n{}",
                self.pid(),
                self.log.display(),
                self.log_text()
            )
        })
    }
}

/// Whether the store at `addr` answers `PING` (after `AUTH` with
/// `password`, if any) and reports `pid` as its process id in `INFO`.
fn probe(addr: SocketAddr, password: Option<&str>, pid: u32) -> bool {
    let Ok(stream) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return false;
    };
    let Ok(mut conn) = RespConn::from_stream(stream) else {
        return false;
    };
    if let Some(pass) = password {
        if conn.cmd(&[b"AUTH", pass.as_bytes()]).ok() != Some(Resp::ok()) {
            return false;
        }
    }
    let pong = conn.cmd(&[b"PING"]).ok() == Some(Resp::simple("PONG"));
    let ours = conn
        .cmd(&[b"INFO", b"server"])
        .ok()
        .and_then(|r| r.info_field("process_id"))
        .is_some_and(|p| p == pid.to_string());
    pong && ours
}

impl Drop for StoreProcess {
    fn drop(&mut self) {
        self.proc.kill_quietly();
        if std::thread::panicking() {
            eprintln!(
                "--- sticky store log {} (last 40 lines) ---\n{}\n--- end of log ---",
                self.log.display(),
                log_tail(&self.log, 40)
            );
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A synchronous `redis` crate connection to `store` (authenticated if it
/// has a password), with [`IO_TIMEOUT`]s.
pub fn redis_connection(store: &StoreProcess) -> redis::Connection {
    let url = match store.password() {
        Some(p) => format!("redis://:{p}@127.0.0.1:{}/", store.port()),
        None => format!("redis://127.0.0.1:{}/", store.port()),
    };
    let client = redis::Client::open(url).expect("redis client");
    let conn = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .expect("redis connection");
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    conn
}

/// One RESP2 or RESP3 reply, as sent.
#[derive(Clone, PartialEq)]
pub enum Resp {
    /// `+text`
    Simple(String),
    /// `-text` (code and message)
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` bulk string
    Bulk(Vec<u8>),
    /// `$-1` (RESP2 null bulk)
    NilBulk,
    /// `*-1` (RESP2 null array)
    NilArray,
    /// `_` (RESP3 null)
    Null,
    /// `*n` array
    Array(Vec<Resp>),
    /// `%n` map (RESP3)
    Map(Vec<(Resp, Resp)>),
    /// `~n` set (RESP3)
    Set(Vec<Resp>),
    /// `#t` / `#f` (RESP3)
    Boolean(bool),
    /// `,x` double (RESP3), as text
    Double(String),
}

impl Resp {
    /// `+OK`
    pub fn ok() -> Resp {
        Resp::Simple("OK".into())
    }

    /// `+text`
    pub fn simple(text: &str) -> Resp {
        Resp::Simple(text.into())
    }

    /// `-text`
    pub fn error(text: &str) -> Resp {
        Resp::Error(text.into())
    }

    /// `$n` bulk with these bytes.
    pub fn bulk(b: impl AsRef<[u8]>) -> Resp {
        Resp::Bulk(b.as_ref().to_vec())
    }

    /// Whether this is an error reply starting with `prefix`.
    pub fn is_error_starting(&self, prefix: &str) -> bool {
        matches!(self, Resp::Error(e) if e.starts_with(prefix))
    }

    /// The integer of a `:n` reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Resp::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes of a bulk string or the text of a status.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Resp::Bulk(b) => Some(b),
            Resp::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The `name:value` field of an `INFO` reply.
    pub fn info_field(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(self.as_bytes()?).into_owned();
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    }
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Simple(s) => write!(f, "+{s}"),
            Resp::Error(s) => write!(f, "-{s}"),
            Resp::Int(n) => write!(f, ":{n}"),
            Resp::Bulk(b) => write!(f, "${:?}", String::from_utf8_lossy(b)),
            Resp::NilBulk => write!(f, "$-1"),
            Resp::NilArray => write!(f, "*-1"),
            Resp::Null => write!(f, "_"),
            Resp::Array(items) => f.debug_list().entries(items).finish(),
            Resp::Map(pairs) => f
                .debug_map()
                .entries(pairs.iter().map(|(k, v)| (k, v)))
                .finish(),
            Resp::Set(items) => write!(f, "~{items:?}"),
            Resp::Boolean(b) => write!(f, "#{b}"),
            Resp::Double(d) => write!(f, ",{d}"),
        }
    }
}

/// The RESP multibulk encoding of a request.
pub fn encode_request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads a CRLF-terminated line, byte by byte (never reads past it).
fn read_line(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed (after {:?})",
                    String::from_utf8_lossy(&line)
                ),
            ));
        }
        line.push(byte[0]);
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            return Ok(line);
        }
        if line.len() > 1 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn parse_num(text: &str) -> io::Result<i64> {
    text.parse()
        .map_err(|_| bad(format!("bad number in reply: {text:?}")))
}

/// Reads exactly one reply from `r`, never reading past its end (so the next
/// reply stays in the socket). An EOF before a complete reply is an
/// `UnexpectedEof` error.
pub fn read_reply(r: &mut impl Read) -> io::Result<Resp> {
    let line = read_line(r)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(bad("empty reply line".into()));
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    Ok(match kind {
        b'+' => Resp::Simple(text),
        b'-' => Resp::Error(text),
        b':' => Resp::Int(parse_num(&text)?),
        b'_' => Resp::Null,
        b'#' => Resp::Boolean(text == "t"),
        b',' => Resp::Double(text),
        b'$' => match parse_num(&text)? {
            -1 => Resp::NilBulk,
            n if n < 0 => return Err(bad(format!("bad bulk length {n}"))),
            n => {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                if !buf.ends_with(b"\r\n") {
                    return Err(bad("bulk string without CRLF".into()));
                }
                buf.truncate(n as usize);
                Resp::Bulk(buf)
            }
        },
        b'*' | b'~' => match parse_num(&text)? {
            -1 if kind == b'*' => Resp::NilArray,
            n if n < 0 => return Err(bad(format!("bad aggregate length {n}"))),
            n => {
                let items = (0..n).map(|_| read_reply(r)).collect::<io::Result<_>>()?;
                if kind == b'*' {
                    Resp::Array(items)
                } else {
                    Resp::Set(items)
                }
            }
        },
        b'%' => {
            let n = parse_num(&text)?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let k = read_reply(r)?;
                let v = read_reply(r)?;
                pairs.push((k, v));
            }
            Resp::Map(pairs)
        }
        other => {
            return Err(bad(format!(
                "unknown reply type {:?} in line {:?}",
                char::from(other),
                String::from_utf8_lossy(&line)
            )))
        }
    })
}

/// Sends one request (as a multibulk) on `stream` and reads its reply.
pub fn resp_cmd(stream: &mut TcpStream, args: &[&[u8]]) -> io::Result<Resp> {
    stream.write_all(&encode_request(args))?;
    read_reply(stream)
}

/// Reads from `stream` until the peer closes it, up to [`IO_TIMEOUT`];
/// returns what was read. A connection reset counts as closed.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let start = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return all
            }
            Err(e) => panic!(
                "the store did not close the connection within {:?} ({e}); read so far: {:?}",
                start.elapsed(),
                String::from_utf8_lossy(&all)
            ),
        }
    }
}

/// A blocking RESP connection: send requests, read replies, exactly as on
/// the wire.
pub struct RespConn {
    stream: TcpStream,
}

impl RespConn {
    /// Wraps a connected stream, setting [`IO_TIMEOUT`]s.
    pub fn from_stream(stream: TcpStream) -> io::Result<RespConn> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RespConn { stream })
    }

    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<RespConn> {
        Self::from_stream(TcpStream::connect_timeout(&addr, IO_TIMEOUT)?)
    }

    /// Sends one request and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> io::Result<Resp> {
        resp_cmd(&mut self.stream, args)
    }

    /// [`cmd`](Self::cmd) with the arguments as text, split on blanks
    /// (convenient for requests without binary or blank-containing values).
    /// Panics on an I/O error.
    pub fn cmd_str(&mut self, line: &str) -> Resp {
        let args: Vec<&[u8]> = line.split_ascii_whitespace().map(str::as_bytes).collect();
        self.cmd(&args)
            .unwrap_or_else(|e| panic!("request {line:?}: {e}"))
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one reply.
    pub fn read_reply(&mut self) -> io::Result<Resp> {
        read_reply(&mut self.stream)
    }

    /// Reads until the store closes the connection (see [`read_to_close`]).
    pub fn read_to_close(&mut self) -> Vec<u8> {
        read_to_close(&mut self.stream)
    }

    /// Closes the writing half (the store sees EOF).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
