//! The cluster under test: a `sticky up` that chaos starts (and stops), or
//! one already running; reached through the supervisor's control API (to
//! kill, pause, resume and restart processes), the web servers' metrics
//! (to know when the cluster has settled) and the directors (the users'
//! targets). A cluster of `sticky up --netns` also takes network faults
//! through the same API (`/api/net`).

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

use crate::up::netns::{NetFault, NetInfo};
use crate::up::state::{ProcState, ProcessInfo, UpState};

/// How long `sticky up` may take to start the cluster.
const UP_DEADLINE: Duration = Duration::from_secs(120);
/// How long `sticky up` may take to stop it.
const DOWN_DEADLINE: Duration = Duration::from_secs(60);
/// Limit of one control or metrics request.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(15);
/// Limit of a web server's metrics request while settling: a server cut
/// off by a network fault must not hold the nemesis (and its heals) up.
const METRICS_TIMEOUT: Duration = Duration::from_secs(1);
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
    /// The directors' public listeners: the users' targets (one, or
    /// several side by side).
    pub(crate) directors: Vec<SocketAddr>,
    /// The cluster's network, if it runs in namespaces (`up --netns`).
    pub(crate) net: Option<NetInfo>,
    supervisor: SocketAddr,
    token: String,
    /// The stores' password (`[session] store_password`), for `INFO`.
    store_password: Option<String>,
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
    request_within(addr, method, path, token, CONTROL_TIMEOUT).await
}

/// [`request`] with its own time limit.
async fn request_within(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
    limit: Duration,
) -> anyhow::Result<(StatusCode, Bytes)> {
    let auth = token
        .map(control::bearer)
        .transpose()
        .context("the admin token is not a valid header")?;
    let resp = control::request(addr, method, path, auth.as_ref(), limit, MAX_ANSWER)
        .await
        .map_err(|e| match e {
            RequestError::Connect(e) => {
                anyhow::Error::new(e).context(format!("cannot connect to {addr}"))
            }
            RequestError::Handshake(e) => {
                anyhow::Error::new(e).context(format!("no HTTP from {addr}"))
            }
            RequestError::Path(e) => anyhow::Error::new(e).context(format!("bad path {path:?}")),
            RequestError::Send(e) => {
                anyhow::Error::new(e).context(format!("{path} at {addr} failed"))
            }
            RequestError::Body(e) => anyhow::anyhow!("reading {path} at {addr}: {e}"),
            RequestError::Timeout(_) => {
                anyhow::anyhow!("{path} at {addr}: no answer within {limit:?}")
            }
        })?;
    let status = resp.status();
    Ok((status, resp.into_body()))
}

/// `POST path` with a JSON body over a fresh connection, with the admin
/// token; the status and body.
async fn post_json(
    addr: SocketAddr,
    path: &str,
    token: &str,
    body: Vec<u8>,
) -> anyhow::Result<(StatusCode, Bytes)> {
    use http_body_util::{BodyExt, Full};
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .with_context(|| format!("no HTTP from {addr}"))?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        let req = http::Request::post(path)
            .header(http::header::HOST, addr.to_string())
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))
            .context("cannot build the request")?;
        let resp = sender
            .send_request(req)
            .await
            .with_context(|| format!("{path} at {addr} failed"))?;
        let status = resp.status();
        let body = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| anyhow::anyhow!("reading {path} at {addr}: {e}"))?
            .to_bytes();
        anyhow::Ok((status, body))
    };
    tokio::time::timeout(CONTROL_TIMEOUT, exchange)
        .await
        .map_err(|_| anyhow::anyhow!("{path} at {addr}: no answer within {CONTROL_TIMEOUT:?}"))?
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

/// What `sticky chaos --attach` says it attached to: the `sticky up`,
/// its state file and control API, and every process.
fn attached_text(state: &UpState) -> String {
    let procs: Vec<String> = state
        .processes
        .iter()
        .map(|p| format!("{} ({} {}, pid {})", p.name, p.role, p.addr, p.pid))
        .collect();
    format!(
        "chaos: attached to the sticky up in {} (pid {})\n\
         chaos:   state file {}, control API {}, shop {}\n\
         chaos:   {} processes: {}",
        state.dir.display(),
        state.pid,
        state.dir.join(crate::up::state::STATE_FILE).display(),
        state.supervisor,
        state.shop,
        state.processes.len(),
        procs.join(", ")
    )
}

/// The state file, once it shows a cluster whose every process runs.
/// `sticky up` adds processes to it as they start (stores, web servers,
/// then the directors), so a state whose every listed process runs may
/// not list them all yet: it is complete once every director is in it.
fn ready_state(dir: &Path, up_pid: Option<u32>) -> Option<UpState> {
    let state = UpState::read(dir).ok()?;
    let ours = up_pid.is_none_or(|pid| pid == state.pid);
    let all_running = !state.processes.is_empty()
        && state
            .processes
            .iter()
            .all(|p| p.state == ProcState::Running);
    let listed = |name: &str| state.processes.iter().any(|p| p.name == name);
    let complete = if state.directors.is_empty() {
        state.processes.iter().any(|p| p.role == "director")
    } else {
        state.directors.iter().all(|d| listed(&d.name))
    };
    (ours && state.running && all_running && complete).then_some(state)
}

impl Cluster {
    /// Starts or attaches to the cluster and waits until every process of
    /// it runs.
    /// With `want_net`, the cluster must run in network namespaces.
    pub(crate) async fn open(source: Source, want_net: bool) -> anyhow::Result<Self> {
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
        if cluster_up.is_none() {
            eprintln!("{}", attached_text(&state));
        }
        let file = sticky_config::ClusterFile::load(&state.config)?;
        let secret = file.secret(&state.config)?;
        let directors: Vec<SocketAddr> = state
            .processes
            .iter()
            .filter(|p| p.role == "director")
            .map(|p| p.addr)
            .collect();
        if directors.is_empty() {
            bail!("the cluster has no director");
        }
        let mut cluster = Self {
            up: cluster_up,
            dir: state.dir.clone(),
            directors,
            net: None,
            supervisor: state.supervisor,
            token: sticky_proto::control::admin_token(secret.as_bytes()),
            store_password: file.session.store_password.clone(),
            replicas: file.replicas,
            mode: file.mode,
        };
        if want_net {
            match cluster.net_info().await {
                Ok(info) => cluster.net = Some(info),
                Err(e) => {
                    let _ = cluster.close().await;
                    return Err(e.context(
                        "--net needs a cluster in network namespaces (`sticky up --netns`, as root; chaos starts one so without --attach)",
                    ));
                }
            }
        }
        Ok(cluster)
    }

    /// The network of a cluster in namespaces (`GET /api/net`).
    pub(crate) async fn net_info(&self) -> anyhow::Result<NetInfo> {
        let (status, body) =
            request(self.supervisor, Method::GET, "/api/net", Some(&self.token)).await?;
        if status != StatusCode::OK {
            bail!(
                "the supervisor answered {status} to /api/net: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        serde_json::from_slice(&body).context("the supervisor's network is unreadable")
    }

    /// Injects or heals one network fault (`POST /api/net`).
    pub(crate) async fn net_fault(&self, fault: &NetFault) -> anyhow::Result<()> {
        let body = serde_json::to_vec(fault).context("cannot encode a network fault")?;
        let (status, answer) = post_json(self.supervisor, "/api/net", &self.token, body).await?;
        if status != StatusCode::OK {
            bail!(
                "{}: the supervisor answered {status}: {}",
                serde_json::to_string(fault).unwrap_or_default(),
                String::from_utf8_lossy(&answer[..answer.len().min(300)])
            );
        }
        Ok(())
    }

    /// The same cluster's endpoints without the ownership of `sticky up`
    /// (for the nemesis task).
    pub(crate) fn view(&self) -> Self {
        Self {
            up: None,
            dir: self.dir.clone(),
            directors: self.directors.clone(),
            net: self.net.clone(),
            supervisor: self.supervisor,
            token: self.token.clone(),
            store_password: self.store_password.clone(),
            replicas: self.replicas,
            mode: self.mode,
        }
    }

    /// Whether the store at `addr` answers and is out of its recovery
    /// window (a restarted store refuses leases, kills and prepares for
    /// a while: it is not whole again before that). A TLS store is not
    /// looked into (chaos clusters run plain stores): true.
    pub(crate) async fn store_whole(&self, addr: SocketAddr) -> bool {
        match sticky_proto::probe::probe_store(
            addr,
            self.store_password.as_deref(),
            METRICS_TIMEOUT,
        )
        .await
        {
            Ok(info) => info.recovering_ms == 0,
            Err(_) => false,
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
        let (status, body) = request_within(
            addr,
            Method::GET,
            "/.sticky/metrics",
            Some(&self.token),
            METRICS_TIMEOUT,
        )
        .await?;
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
