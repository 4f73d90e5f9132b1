//! The example apps that run behind a sidecar web server (`sticky web
//! --app`): [`AppKind`] (Python/Flask in `examples/python`, Node/Express in
//! `examples/node`) and [`AppProcess`], one of them as a child process on a
//! loopback port.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};
use std::time::Duration;

use crate::http::http_request_timeout;
use crate::process::{free_port, log_tail, log_to, read_text, ChildProcess, NotReady};
use crate::skip::{require_program_from, skip};
use crate::wait::POLL;

/// How long an app may take to answer its first request.
pub const APP_STARTUP_DEADLINE: Duration = Duration::from_secs(30);
/// How many ports [`AppProcess::start`] tries.
const APP_PORT_ATTEMPTS: usize = 5;

/// One of the example apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppKind {
    /// `examples/python`: Flask.
    Python,
    /// `examples/node`: Express.
    Node,
}

/// The repository's `examples/` folder.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

impl AppKind {
    /// `python` or `node`, as `sticky up --app` names them.
    pub fn name(self) -> &'static str {
        match self {
            AppKind::Python => "python",
            AppKind::Node => "node",
        }
    }

    /// The app's folder.
    pub fn dir(self) -> PathBuf {
        examples_dir().join(self.name())
    }

    /// Whether the app's runtime and packages are installed. If not, prints
    /// a loud `SKIPPED` line and returns `false`; panics instead when `CI`
    /// is set (`.ci/run` installs them).
    pub fn available(self) -> bool {
        let (program, package, check, install): (_, _, &[&str], _) = match self {
            AppKind::Python => (
                "python3",
                "python3",
                &["-c", "import flask"],
                "python3 -m pip install --user flask",
            ),
            AppKind::Node => (
                "node",
                "nodejs",
                &["-e", "require('express')"],
                "cd examples/node && npm ci",
            ),
        };
        if !require_program_from(program, package) {
            return false;
        }
        let ok = Command::new(program)
            .args(check)
            .current_dir(self.dir())
            .output()
            .is_ok_and(|o| o.status.success());
        if !ok {
            skip(&format!(
                "SKIPPED: the {} example's packages are not installed ({install})",
                self.name()
            ));
        }
        ok
    }

    fn command(self, port: u16) -> Command {
        let mut cmd = match self {
            AppKind::Python => {
                let mut c = Command::new("python3");
                c.arg("app.py");
                c
            }
            AppKind::Node => {
                let mut c = Command::new("node");
                c.arg("app.js");
                c
            }
        };
        cmd.current_dir(self.dir()).env("PORT", port.to_string());
        cmd
    }
}

/// An example app as a child process. Killed (SIGKILL) when dropped.
pub struct AppProcess {
    proc: ChildProcess,
    kind: AppKind,
    port: u16,
    log: PathBuf,
}

impl AppProcess {
    /// Starts `kind` on a free loopback port and waits until it answers;
    /// tries another port if another test took that one first.
    pub fn start(kind: AppKind) -> AppProcess {
        let mut last = String::new();
        for _ in 0..APP_PORT_ATTEMPTS {
            match Self::try_start_on(kind, free_port()) {
                Ok(app) => return app,
                Err(log) => {
                    eprintln!("the {} app did not start; trying another port", kind.name());
                    last = log;
                }
            }
        }
        panic!(
            "the {} app did not start in {APP_PORT_ATTEMPTS} attempts; last log:\n{last}",
            kind.name()
        );
    }

    /// Starts `kind` on `port` (e.g. again after a kill, where its sidecar
    /// expects it) and waits until it answers; panics (showing its log) if
    /// it exits first or does not answer within [`APP_STARTUP_DEADLINE`].
    pub fn start_on(kind: AppKind, port: u16) -> AppProcess {
        Self::try_start_on(kind, port).unwrap_or_else(|log| {
            panic!(
                "the {} app on port {port} exited during start-up:\n{log}",
                kind.name()
            )
        })
    }

    /// [`start_on`](Self::start_on), or the log if the app exited first.
    fn try_start_on(kind: AppKind, port: u16) -> Result<AppProcess, String> {
        let mut cmd = kind.command(port);
        let log = log_to(&mut cmd, &format!("app-{}", kind.name()));
        let mut app = AppProcess {
            proc: ChildProcess::spawn(&mut cmd, kind.name()),
            kind,
            port,
            log,
        };
        let addr = app.addr();
        // Without a sidecar in front, the app names no server: an answer
        // naming one is another test's web server on this port.
        let ready = || {
            http_request_timeout(
                addr,
                "GET",
                "/api/counter",
                &[],
                None,
                Duration::from_secs(2),
            )
            .ok()
            .filter(|r| {
                r.status == 200
                    && serde_json::from_slice::<serde_json::Value>(&r.body)
                        .is_ok_and(|v| v["server"] == "")
            })
        };
        match app.proc.wait_for(APP_STARTUP_DEADLINE, POLL * 5, ready) {
            Ok(_) => Ok(app),
            Err(NotReady::Exited(status)) => Err(format!(
                "exited with {status}; log {}:\n{}",
                app.log.display(),
                app.log_tail(40)
            )),
            Err(NotReady::TimedOut) => panic!(
                "the {} app did not answer within {APP_STARTUP_DEADLINE:?}; log {}:\n{}",
                kind.name(),
                app.log.display(),
                app.log_tail(40)
            ),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// `http://127.0.0.1:PORT`, for the sidecar's `--app`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Which app.
    pub fn kind(&self) -> AppKind {
        self.kind
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        read_text(&self.log)
    }

    /// The last `n` lines of its log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log, n)
    }

    /// Kills it with SIGKILL and reaps it.
    pub fn kill9(&mut self) -> ExitStatus {
        self.proc.kill9()
    }
}

impl Drop for AppProcess {
    fn drop(&mut self) {
        self.proc.kill_quietly();
        if std::thread::panicking() {
            eprintln!(
                "--- {} app log {} (last 30 lines) ---\n{}\n--- end of log ---",
                self.kind.name(),
                self.log.display(),
                self.log_tail(30)
            );
        }
    }
}
