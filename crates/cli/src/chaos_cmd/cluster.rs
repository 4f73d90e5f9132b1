//! The cluster under test: a `sticky up` that chaos starts (and stops), or
//! one already running; reached through the supervisor's control API (to
//! kill, pause, resume and restart processes), the web servers' metrics
//! (to know when the cluster has settled) and the director (the users'
//! target).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use http::{Method, StatusCode};
use sticky_config::Mode;
use sticky_proto::control::{self, ProcessAction, RequestError};
use tokio::process::{Child, Command};

use crate::up::state::{ProcState, ProcessInfo, UpState};

/// How long `sticky up` may take to start the cluster.
const UP_DEADLINE: Duration = Duration::from_secs(120);
/// How long `sticky up` may take to stop it.
const DOWN_DEADLINE: Duration = Duration::from_secs(60);
/// Limit of one control or metrics request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest control or metrics answer read.
const MAX_ANSWER: usize = 4 << 20;

/// How chaos gets its cluster.
#[derive(Debug, Clone)]
pub(crate) enum Source {
    /// Start `sticky up` with these arguments (after `up`), in this run dir.
    Start { args: Vec<String>, dir: PathBuf },
    /// Use the `sticky up` running in this run dir.
    Attach { dir: PathBuf },
}

/// A process of the cluster, from the supervisor's list.
pub(crate) type Process = ProcessInfo;

/// The cluster chaos works on.
pub(crate) struct Cluster {
    /// The `sticky up` chaos started, if it did.
    up: Option<Child>,
    /// The run dir (logs, state file, cluster file).
    pub(crate) dir: PathBuf,
    /// The director's public listener: the users' target.
    pub(crate) director: SocketAddr,
    supervisor: SocketAddr,
    token: String,
    /// Stores per session.
    pub(crate) replicas: usize,
    /// The cluster's replication mode.
    pub(crate) mode: Mode,
}

/// One HTTP/1.1 request over a fresh connection; the status and body.
pub(crate) async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let auth = token
        .map(control::bearer)
        .transpose()
        .context("the admin token is not a valid header")?;
    let resp = control::request(
        addr,
        method,
        path,
        auth.as_ref(),
        CONTROL_TIMEOUT,
        MAX_ANSWER,
    )
    .await
    .map_err(|e| match e {
        RequestError::Connect(e) => {
            anyhow::Error::new(e).context(format!("cannot connect to {addr}"))
        }
        RequestError::Handshake(e) => anyhow::Error::new(e).context(format!("no HTTP from {addr}")),
        RequestError::Path(e) => anyhow::Error::new(e).context(format!("bad path {path:?}")),
        RequestError::Send(e) => anyhow::Error::new(e).context(format!("{path} at {addr} failed")),
        RequestError::Body(e) => anyhow::anyhow!("reading {path} at {addr}: {e}"),
        RequestError::Timeout(_) => {
            anyhow::anyhow!("{path} at {addr}: no answer within {CONTROL_TIMEOUT:?}")
        }
    })?;
    let status = resp.status();
    Ok((status, resp.into_body()))
}

/// The value of an unlabelled sample `name` in Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let rest = line.strip_prefix(name)?;
        let value = rest.strip_prefix(' ')?;
        value.trim().parse().ok()
    })
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// The state file, once it shows a cluster whose every process runs.
fn ready_state(dir: &Path, up_pid: Option<u32>) -> Option<UpState> {
    let state = UpState::read(dir).ok()?;
    let ours = up_pid.is_none_or(|pid| pid == state.pid);
    let all_running = !state.processes.is_empty()
        && state
            .processes
            .iter()
            .all(|p| p.state == ProcState::Running);
    (ours && state.running && all_running).then_some(state)
}

impl Cluster {
    /// Starts or attaches to the cluster and waits until every process of
    /// it runs.
    pub(crate) async fn open(source: Source) -> anyhow::Result<Self> {
        let (up, dir) = match source {
            Source::Start { args, dir } => {
                std::fs::create_dir_all(&dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
                let log_path = dir.join("up.log");
                let log = std::fs::File::create(&log_path)
                    .with_context(|| format!("cannot create {}", log_path.display()))?;
                let err = log.try_clone().context("cannot duplicate a file handle")?;
                let exe = std::env::current_exe().context("cannot find my own executable")?;
                let mut cmd = Command::new(exe);
                cmd.arg("up")
                    .arg("--parent-pid")
                    .arg(std::process::id().to_string())
                    .args(&args)
                    .arg("--dir")
                    .arg(&dir)
                    .stdin(Stdio::null())
                    .stdout(log)
                    .stderr(err)
                    .kill_on_drop(true);
                // Not in our process group: a Ctrl-C reaches chaos alone,
                // which then stops `up` in order.
                cmd.process_group(0);
                let child = cmd.spawn().context("cannot start `sticky up`")?;
                (Some(child), dir)
            }
            Source::Attach { dir } => (None, dir),
        };
        let mut cluster_up = up;
        let deadline = Instant::now() + UP_DEADLINE;
        let state = loop {
            let pid = cluster_up.as_ref().and_then(Child::id);
            if let Some(state) = ready_state(&dir, pid) {
                break state;
            }
            if let Some(child) = cluster_up.as_mut() {
                if let Some(status) = child.try_wait().context("cannot poll `sticky up`")? {
                    bail!(
                        "`sticky up` exited ({status}) before the cluster ran; {}:\n{}",
                        dir.join("up.log").display(),
                        tail(&dir.join("up.log"))
                    );
                }
            } else if !dir.join(crate::up::state::STATE_FILE).exists() {
                bail!(
                    "{} holds no `sticky up` state file (is `sticky up --dir {}` running?)",
                    dir.display(),
                    dir.display()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the cluster in {} did not run within {UP_DEADLINE:?} (every process must be running; see `sticky status --dir {}`)",
                    dir.display(),
                    dir.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let file = sticky_config::ClusterFile::load(&state.config)?;
        let secret = file.secret(&state.config)?;
        let director = state
            .processes
            .iter()
            .find(|p| p.role == "director")
            .map(|p| p.addr)
            .context("the cluster has no director")?;
        Ok(Self {
            up: cluster_up,
            dir: state.dir.clone(),
            director,
            supervisor: state.supervisor,
            token: sticky_proto::control::admin_token(secret.as_bytes()),
            replicas: file.replicas,
            mode: file.mode,
        })
    }

    /// The same cluster's endpoints without the ownership of `sticky up`
    /// (for the nemesis task).
    pub(crate) fn view(&self) -> Self {
        Self {
            up: None,
            dir: self.dir.clone(),
            director: self.director,
            supervisor: self.supervisor,
            token: self.token.clone(),
            replicas: self.replicas,
            mode: self.mode,
        }
    }

    /// Every process, as the supervisor sees it now.
    pub(crate) async fn processes(&self) -> anyhow::Result<Vec<Process>> {
        #[derive(serde::Deserialize)]
        struct List {
            processes: Vec<Process>,
        }
        let (status, body) = request(
            self.supervisor,
            Method::GET,
            "/api/processes",
            Some(&self.token),
        )
        .await?;
        if status != StatusCode::OK {
            bail!("the supervisor answered {status} to the process list");
        }
        let list: List =
            serde_json::from_slice(&body).context("the supervisor's process list is unreadable")?;
        Ok(list.processes)
    }

    /// Kills, pauses, resumes or restarts process `name`.
    pub(crate) async fn act(&self, name: &str, action: ProcessAction) -> anyhow::Result<()> {
        let path = format!("/api/processes/{name}/{action}");
        let (status, body) =
            request(self.supervisor, Method::POST, &path, Some(&self.token)).await?;
        if status != StatusCode::OK {
            bail!(
                "{action} {name}: the supervisor answered {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        Ok(())
    }

    /// A web server's Prometheus text.
    pub(crate) async fn web_metrics(&self, addr: SocketAddr) -> anyhow::Result<String> {
        let (status, body) =
            request(addr, Method::GET, "/.sticky/metrics", Some(&self.token)).await?;
        if status != StatusCode::OK {
            bail!("{addr} answered {status} to /.sticky/metrics");
        }
        Ok(String::from_utf8_lossy(&body).into_owned())
    }

    /// Stops the `sticky up` chaos started (SIGTERM: it stops its
    /// processes in order); nothing for a cluster chaos attached to.
    pub(crate) async fn close(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.up.take() else {
            return Ok(());
        };
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(DOWN_DEADLINE, child.wait()).await {
            Ok(Ok(_)) => Ok(()),
            _ => {
                let _ = child.kill().await;
                bail!("`sticky up` did not stop within {DOWN_DEADLINE:?}; killed it")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_are_read_by_exact_name() {
        let text = "# TYPE sticky_recopy_pending gauge\nsticky_recopy_pending 3\n\
                    sticky_recopy_pending_total 9\nsticky_stores_live 2\n\
                    sticky_x{a=\"b\"} 1\n";
        assert_eq!(metric(text, "sticky_recopy_pending"), Some(3.0));
        assert_eq!(metric(text, "sticky_stores_live"), Some(2.0));
        assert_eq!(metric(text, "sticky_missing"), None);
        assert_eq!(metric(text, "sticky_x"), None);
    }
}
