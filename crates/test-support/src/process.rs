//! Child processes: the `sticky` binary ([`Sticky`]), a child reaped once
//! and killed on drop ([`ChildProcess`]), signals, log files, temporary
//! paths and free ports.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::wait::POLL;

/// The `sticky` binary under test.
///
/// Cargo sets `CARGO_BIN_EXE_sticky` only for the `sticky` crate's own
/// tests, so those pass it in; every helper that spawns the binary takes
/// this value:
///
/// ```ignore
/// const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));
/// let store = StoreProcess::start(STICKY, &[]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sticky {
    path: &'static str,
}

impl Sticky {
    /// The binary at `path`.
    pub const fn new(path: &'static str) -> Self {
        Self { path }
    }

    /// The binary's path.
    pub fn path(&self) -> &Path {
        Path::new(self.path)
    }

    /// A command running the binary, with `NO_COLOR=1` and without any
    /// `STICKY_*` variable of the environment (none may change the settings
    /// a test gives).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(self.path);
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("STICKY_") {
                cmd.env_remove(key);
            }
        }
        cmd.env("NO_COLOR", "1");
        cmd
    }
}

/// The directory for the tests' files (logs, cluster files, run dirs):
/// cargo's temporary directory for integration tests (`target/tmp`, found
/// from the test binary's path `target/<profile>/deps/...`), else the
/// system's temporary directory.
pub fn tmp_root() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let exe = std::env::current_exe().ok();
        let deps = exe.as_deref().and_then(Path::parent);
        let dir = match deps {
            Some(d) if d.file_name().is_some_and(|n| n == "deps") => d
                .parent()
                .and_then(Path::parent)
                .map(|target| target.join("tmp")),
            _ => None,
        }
        .unwrap_or_else(|| std::env::temp_dir().join("sticky-tests"));
        let _ = std::fs::create_dir_all(&dir);
        dir
    })
}

/// A unique path for a test's file (e.g. a log) under [`tmp_root`].
pub fn temp_path(prefix: &str, ext: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    tmp_root().join(format!("{prefix}-{}-{n}-{nanos}.{ext}", std::process::id()))
}

/// A fresh empty directory under [`tmp_root`].
pub fn temp_dir(prefix: &str) -> PathBuf {
    let dir = temp_path(prefix, "d");
    std::fs::create_dir_all(&dir).expect("create a temp dir");
    dir
}

/// A free loopback port, as the OS hands it out now (it may be taken again
/// before it is used: callers must cope).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().expect("local_addr").port()
}

/// Sends `cmd`'s stdout and stderr to a new log file under [`tmp_root`]
/// (named after `prefix`), and its stdin from `/dev/null`; returns the
/// log's path.
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

/// Sends `SIG<sig>` to `pid` with `kill(1)`; panics if it fails. For
/// `STOP`, returns only once every thread of `pid` is stopped: `kill`
/// returns when the signal is queued, and a thread running on another core
/// may still answer a request or two after that.
pub fn signal(pid: u32, sig: &str) {
    let status = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{sig} {pid} failed: {status}");
    if sig == "STOP" {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !all_threads_stopped(pid) {
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} not stopped 10 s after SIGSTOP"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

/// Pauses processes with `SIGSTOP` ([`signal`]) and sends them `SIGCONT`
/// when dropped, also when the test fails (a paused store left behind
/// would hold its port and its children's tests).
pub struct Paused(Vec<u32>);

impl Paused {
    /// `SIGSTOP`s each of `pids`, in order.
    pub fn stop(pids: &[u32]) -> Paused {
        let mut paused = Paused(Vec::with_capacity(pids.len()));
        for &pid in pids {
            signal(pid, "STOP");
            paused.0.push(pid);
        }
        paused
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-CONT", &pid.to_string()])
                .status();
        }
    }
}

/// Whether every thread of `pid` is stopped (`T`), or the process is gone.
fn all_threads_stopped(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return true;
    };
    tasks.flatten().all(|t| {
        std::fs::read_to_string(t.path().join("stat")).map_or(true, |stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next())
                .is_none_or(|state| state == "T" || state == "t" || state == "Z" || state == "X")
        })
    })
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

/// The resident set size of process `pid`, from `/proc/PID/status`
/// (`VmRSS`).
pub fn rss_bytes(pid: u32) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmRSS in /proc/PID/status");
    kb * 1024
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
#[derive(Debug)]
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
    ///
    /// # Errors
    ///
    /// [`NotReady`] says which of the two happened.
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
