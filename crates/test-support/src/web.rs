//! `sticky web` child processes ([`WebProcess`]), started from a cluster
//! file and waited for, with the admin endpoints (health, fence) and a
//! director's lease renewal ([`Heartbeat`]) at hand.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::http::{http_request, http_request_timeout, HTTP_TIMEOUT};
use crate::process::{
    free_port, log_tail, log_to, read_text, signal, ChildProcess, NotReady, Sticky,
};
use crate::wait::POLL;

/// The admin token for `secret` (see `docs/protocol.md`).
pub fn admin_token(secret: &str) -> String {
    sticky_proto::control::admin_token(secret.as_bytes())
}

/// How long a web server may take to answer its first health check.
pub const WEB_STARTUP_DEADLINE: Duration = Duration::from_secs(40);

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

/// Rewrites the cluster file at `config` so the web server listening at
/// `from` is at `to` (the address appears once: every entry has its own
/// port).
fn move_web_in_file(config: &Path, from: SocketAddr, to: SocketAddr) {
    let text = read_text(config);
    let (old, new) = (format!("\"{from}\""), format!("\"{to}\""));
    assert_eq!(
        text.matches(&old).count(),
        1,
        "{from} once in {}",
        config.display()
    );
    std::fs::write(config, text.replace(&old, &new)).expect("rewrite the cluster file");
}

impl WebProcess {
    /// Starts `sticky web --config CONFIG --name NAME` and waits until
    /// `GET /.sticky/health` with the admin token answers 200 naming `name`.
    ///
    /// If the configured port was taken in the meantime (another test got
    /// it), retries on a free one with `--listen`; [`addr`](Self::addr) is
    /// where it listens. Panics (showing the log) if the server exits or is
    /// not ready within [`WEB_STARTUP_DEADLINE`].
    pub fn start(sticky: Sticky, config: &Path, name: &str) -> WebProcess {
        Self::start_with(sticky, config, name, &[])
    }

    /// [`start`](Self::start) with more arguments after `web` (e.g. a
    /// sidecar's `--app URL`).
    pub fn start_with(sticky: Sticky, config: &Path, name: &str, extra: &[&str]) -> WebProcess {
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
            let mut web = Self::spawn(sticky, config, name, addr, listen, &token, extra);
            match web.wait_ready() {
                Ok(()) => return web,
                Err(log) if log.contains("cannot listen") => {
                    let taken = addr;
                    last = log;
                    addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
                    eprintln!("{name}: port {} taken; retrying on {addr}", taken.port());
                    // Peers find this server (to probe its epoch) in the
                    // cluster file: those started from now on must see
                    // where it really listens, not whoever holds the port.
                    move_web_in_file(config, taken, addr);
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
        sticky: Sticky,
        config: &Path,
        name: &str,
        addr: SocketAddr,
        listen: Option<SocketAddr>,
        token: &str,
        extra: &[&str],
    ) -> WebProcess {
        let mut cmd = sticky.command();
        cmd.args(["--log", "info,sticky_session=debug", "web", "--config"])
            .arg(config)
            .args(["--name", name, "--threads", "2"])
            .args(extra);
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

    /// `series` in the Prometheus text of its `/.sticky/metrics`: a name
    /// (its samples of every label set summed) or a name with its labels
    /// (`sticky_claims_total{path="batch"}`); 0 when absent.
    pub fn metric(&self, series: &str) -> u64 {
        let auth = format!("Bearer {}", self.token);
        let r = http_request(
            self.addr,
            "GET",
            "/.sticky/metrics",
            &[("authorization", auth.as_str())],
            None,
        )
        .expect("the web server's metrics");
        assert_eq!(r.status, 200);
        r.text()
            .lines()
            .filter_map(|l| l.strip_prefix(series))
            .filter(|rest| rest.starts_with(' ') || rest.starts_with('{'))
            .filter_map(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
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
