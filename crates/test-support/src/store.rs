//! Stores to test against: [`StoreProcess`], a `sticky store` child
//! process (for the tests of flags, signals and whole clusters), and
//! [`StoreServer`], a [`sticky_store::Store`] served in this process on a
//! port chosen by the OS (the mini-redis way, for the store's own tests).

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::thread::JoinHandle;
use std::time::Duration;

use sticky_store::{Store, StoreConfig};
use tokio::sync::oneshot;

use crate::process::{
    free_port, log_tail, log_to, read_text, rss_bytes, signal, tmp_root, ChildProcess, NotReady,
    Sticky,
};
use crate::resp::{self, Resp, RespConn};
use crate::wait::{POLL, STARTUP_DEADLINE};

/// How many times [`StoreProcess::start`] tries another port when the one it
/// picked was taken between picking and binding.
const PORT_ATTEMPTS: usize = 10;

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
    pub fn start(sticky: Sticky, extra_args: &[&str]) -> StoreProcess {
        let mut last_log = String::new();
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            let mut store = Self::spawn(sticky, port, extra_args, true);
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
    pub fn start_on_port(sticky: Sticky, port: u16, extra_args: &[&str]) -> StoreProcess {
        let mut store = Self::spawn(sticky, port, extra_args, false);
        if let Err(log) = store.wait_ready() {
            panic!(
                "sticky store on port {port} {extra_args:?} did not start; log {}:\n{log}",
                store.log.display()
            );
        }
        store
    }

    /// `fresh`: a first start, on a port this process picked anew; else a
    /// restart where a store of this test ran before.
    fn spawn(sticky: Sticky, port: u16, extra_args: &[&str], fresh: bool) -> StoreProcess {
        let listen = format!("127.0.0.1:{port}");
        let mut cmd = sticky.command();
        cmd.args([
            "--log",
            "info,sticky_store=debug",
            "store",
            "--listen",
            &listen,
        ])
        .args(extra_args);
        if !extra_args.contains(&"--state-dir") {
            // A state dir per test process and port: the first start is a
            // first start (no recovery window), and a restart on the same
            // port is a restart, as in a deployment (docs/safety.md §3).
            // A fresh start clears it: another test of this process may
            // have had a store on this port before (that store's state
            // made this one a "restarted" store, refusing takeovers for
            // its recovery window).
            // Under the tests' directory (`target/tmp`), beside the logs,
            // not in the system's temporary directory.
            let dir = tmp_root()
                .join("store-state")
                .join(format!("{}-{port}", std::process::id()));
            if fresh {
                let _ = std::fs::remove_dir_all(&dir);
            }
            cmd.arg("--state-dir").arg(dir);
        }
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
        let log = self.log.clone();
        // A TLS store answers no plain probe: its own log says it listens.
        let ready = || {
            let listening = read_text(&log)
                .lines()
                .any(|l| l.contains("store listening") && l.contains("tls=true"));
            (listening || probe(addr, password.as_deref(), pid)).then_some(())
        };
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

    /// A new plain TCP connection to the store, with
    /// [`IO_TIMEOUT`](crate::IO_TIMEOUT)s.
    pub fn connect(&self) -> TcpStream {
        resp::connect(self.addr)
    }

    /// A new RESP connection, authenticated if the store has a password.
    pub fn client(&self) -> RespConn {
        resp::client(self.addr, self.password())
    }

    /// A `redis` crate connection, authenticated if the store has a
    /// password.
    pub fn redis_connection(&self) -> redis::Connection {
        resp::redis_connection(self.addr, self.password())
    }

    /// The store's resident set size, from `/proc/PID/status` (`VmRSS`).
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid())
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

/// A [`Store`] serving on a free loopback port in this process, on a
/// runtime of its own (so blocking tests and `#[tokio::test]`s alike can
/// use it). Shut down when dropped.
#[derive(Debug)]
pub struct StoreServer {
    addr: SocketAddr,
    password: Option<String>,
    store: Store,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl StoreServer {
    /// Serves a store with `config` on `127.0.0.1:0` (its `listen` becomes
    /// the address bound, as `INFO` reports it). It accepts connections
    /// when this returns.
    pub fn start(mut config: StoreConfig) -> StoreServer {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local_addr");
        config.listen = addr;
        let password = config.requirepass.clone();
        let store = Store::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = store.clone();
        let thread = std::thread::Builder::new()
            .name(format!("store-{}", addr.port()))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("the store's runtime");
                rt.block_on(async move {
                    let listener =
                        tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                    serving
                        .serve(listener, async {
                            let _ = stopped.await;
                        })
                        .await
                        .expect("serve the store");
                });
            })
            .expect("spawn the store's thread");
        StoreServer {
            addr,
            password,
            store,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A store with the default settings.
    pub fn start_default() -> StoreServer {
        Self::start(StoreConfig::default())
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port the store listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The password clients must give (`requirepass`), if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// The store itself (e.g. for [`Store::snapshot`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Whether the store still serves (its thread has not ended).
    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }

    /// The process the store runs in: this one.
    pub fn pid(&self) -> u32 {
        std::process::id()
    }

    /// The resident set size of the process the store runs in.
    pub fn rss_bytes(&self) -> u64 {
        rss_bytes(self.pid())
    }

    /// A new plain TCP connection to the store, with
    /// [`IO_TIMEOUT`](crate::IO_TIMEOUT)s.
    pub fn connect(&self) -> TcpStream {
        resp::connect(self.addr)
    }

    /// A new RESP connection, authenticated if the store has a password.
    pub fn client(&self) -> RespConn {
        resp::client(self.addr, self.password())
    }

    /// A `redis` crate connection, authenticated if the store has a
    /// password.
    pub fn redis_connection(&self) -> redis::Connection {
        resp::redis_connection(self.addr, self.password())
    }
}

impl Drop for StoreServer {
    fn drop(&mut self) {
        // Shutdown closes idle connections at once and waits for busy ones
        // up to the store's grace period.
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
