//! `sticky up`: a whole local cluster as one child process
//! ([`UpProcess`]), with `sticky status --json`, the director's
//! `/api/cluster` and SIGINT at hand.

use std::fs::File;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::http::http_request;
use crate::process::{
    log_tail, pid_alive, read_text, signal, temp_path, ChildProcess, NotReady, Sticky,
};
use crate::random::random_u64;
use crate::wait::POLL;
use crate::web::admin_token;
/// How long `sticky up` may take to print its table (the promise).
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
    bin: Sticky,
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
    pub fn start(sticky: Sticky, extra_args: &[&str]) -> UpProcess {
        let mut last = String::new();
        for _ in 0..UP_PORT_ATTEMPTS {
            // Ports base..base+60 are used; ranges on a 100-port grid.
            let base = 10_000 + (random_u64() % 220) as u16 * 100;
            let mut up = Self::spawn(sticky, base, extra_args);
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

    fn spawn(sticky: Sticky, port: u16, extra_args: &[&str]) -> UpProcess {
        let dir = temp_path("sticky-up", "d");
        std::fs::create_dir_all(&dir).expect("create the run dir");
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("create the test's HOME");
        let stdout = dir.join("up.stdout");
        let stderr = dir.join("up.stderr");
        let mut cmd = sticky.command();
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
            bin: sticky,
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
        self.bin
            .command()
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
