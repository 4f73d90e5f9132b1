//! `sticky status`: the state of a running cluster, as a table or as JSON.
//!
//! It combines what is known about the cluster from three places:
//!
//! - the processes: the `sticky up` supervisor's control API (names,
//!   roles, addresses, current PIDs, paused or exited), found through the
//!   run dir's state file `up.json` (`--dir`, or the latest started
//!   `sticky up` that runs, saying so when several do: `state::find`),
//!   or through the director's proxy of that API (`--admin`);
//! - the director's `/api/cluster`: the web servers' routing states,
//!   epochs and sessions, and the director's request counts;
//! - each store, asked directly (`PING`, `INFO`: keys, memory) when its
//!   address is known from the run dir, else as the director reports it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use http::{Method, StatusCode};
use serde::Serialize;
use serde_json::Value;
use sticky_config::ClusterFile;
use sticky_proto::control::{self, RequestError};

use crate::up::state::{self, ProcState, ProcessInfo, UpState};

/// Time one HTTP request or store probe may take.
const LIMIT: Duration = Duration::from_secs(3);
/// Largest JSON answer read.
const MAX_ANSWER: usize = 4 << 20;

/// `sticky status` options.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print JSON (for scripts) instead of a table.
    #[arg(long)]
    json: bool,
    /// The run dir of a `sticky up` (where its `up.json` is) [default:
    /// the latest one started by this user that runs; when several run,
    /// the report says so and names the others].
    #[arg(long, conflicts_with = "admin")]
    dir: Option<PathBuf>,
    /// Ask a director's admin listener instead (any cluster, `sticky up`
    /// or not).
    #[arg(long, value_parser = crate::values::addr)]
    admin: Option<SocketAddr>,
}

/// One process (or one server the director knows of) in the report.
#[derive(Debug, Clone, Serialize)]
struct Row {
    name: String,
    /// `director`, `web`, `standby` or `store`.
    role: String,
    addr: Option<SocketAddr>,
    pid: Option<u32>,
    /// The supervisor's view: `starting`, `running`, `paused`, `exited`,
    /// `stopped`; null when no supervisor is known.
    process: Option<ProcState>,
    /// Health: the director's routing state for web servers (`up`,
    /// `down`, `fencing`, `draining`, `evacuating`), `up` or `down` for the
    /// director and stores; null when unknown.
    health: Option<String>,
    /// What the table shows: the process state when it is not running,
    /// else the health.
    state: String,
    epoch: Option<u64>,
    sessions: Option<u64>,
    requests: Option<u64>,
    failovers: Option<u64>,
    keys: Option<u64>,
    used_memory: Option<u64>,
    error: Option<String>,
    log: Option<PathBuf>,
}

impl Row {
    fn new(name: &str, role: &str, addr: Option<SocketAddr>) -> Self {
        Self {
            name: name.into(),
            role: role.into(),
            addr,
            pid: None,
            process: None,
            health: None,
            state: String::new(),
            epoch: None,
            sessions: None,
            requests: None,
            failovers: None,
            keys: None,
            used_memory: None,
            error: None,
            log: None,
        }
    }

    fn from_process(p: &ProcessInfo) -> Self {
        let mut r = Self::new(&p.name, &p.role, Some(p.addr));
        r.pid = Some(p.pid);
        r.process = Some(p.state);
        r.error.clone_from(&p.exit);
        r.log = Some(p.log.clone());
        r
    }
}

/// What `sticky status --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    /// The run dir, when the cluster is a `sticky up`.
    dir: Option<PathBuf>,
    /// The `sticky up` process, when known.
    up_pid: Option<u32>,
    /// False when `sticky up` stopped the cluster, or is gone.
    running: bool,
    shop: Option<String>,
    dashboard: String,
    /// The director's totals (`/api/cluster`'s `director`), if it answered.
    director: Option<Value>,
    /// The cluster's other directors (`sticky up --directors N`), each
    /// with its totals if it answered.
    directors: Vec<DirectorReport>,
    processes: Vec<Row>,
    /// Problems met while gathering the report.
    warnings: Vec<String>,
    /// The other clusters running now (`sticky up`s of this user), when
    /// no `--dir` or `--admin` chose this one.
    other_clusters: Vec<OtherCluster>,
    /// When several clusters run: which one this is, and how to pick
    /// another.
    note: Option<String>,
}

/// Another running `sticky up`, in the report.
#[derive(Debug, Serialize)]
struct OtherCluster {
    dir: PathBuf,
    up_pid: u32,
    shop: String,
}

/// Another director of the cluster, in the report.
#[derive(Debug, Serialize)]
struct DirectorReport {
    name: String,
    admin: SocketAddr,
    dashboard: String,
    /// Its `/api/cluster`'s `director`; null when it did not answer.
    totals: Option<Value>,
}

/// One HTTP/1.1 request; the status and the JSON body (null if not JSON).
async fn http_json(
    addr: SocketAddr,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(StatusCode, Value)> {
    let auth = token
        .map(control::bearer)
        .transpose()
        .context("cannot build the request")?;
    let resp = control::request(addr, method, path, auth.as_ref(), LIMIT, MAX_ANSWER)
        .await
        .map_err(|e| match e {
            RequestError::Connect(e) => {
                anyhow::Error::new(e).context(format!("cannot connect to {addr}"))
            }
            RequestError::Handshake(e) => anyhow::Error::new(e).context("HTTP handshake failed"),
            RequestError::Path(e) => anyhow::Error::new(e).context("cannot build the request"),
            RequestError::Send(e) => {
                anyhow::Error::new(e).context(format!("no answer from {addr}"))
            }
            RequestError::Body(e) => anyhow::anyhow!("cannot read the answer of {addr}: {e}"),
            RequestError::Timeout(_) => anyhow::anyhow!("{addr} did not answer within {LIMIT:?}"),
        })?;
    let value = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    Ok((resp.status(), value))
}

/// The processes as the supervisor lists them (`GET /api/processes`).
async fn processes(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
) -> anyhow::Result<(Option<u32>, Vec<ProcessInfo>)> {
    let (status, body) = http_json(addr, Method::GET, path, token).await?;
    if status != StatusCode::OK {
        bail!(
            "{addr}{path} answered {status}: {}",
            body["error"].as_str().unwrap_or("")
        );
    }
    let pid = body["supervisor_pid"]
        .as_u64()
        .and_then(|p| u32::try_from(p).ok());
    let list = serde_json::from_value(body["processes"].clone())
        .context("the process list is unreadable")?;
    Ok((pid, list))
}

use state::pid_alive;

async fn gather(args: &StatusArgs) -> anyhow::Result<Report> {
    let mut warnings = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut report = Report {
        dir: None,
        up_pid: None,
        running: true,
        shop: None,
        dashboard: String::new(),
        director: None,
        directors: Vec::new(),
        processes: Vec::new(),
        warnings: Vec::new(),
        other_clusters: Vec::new(),
        note: None,
    };
    // Store passwords, when the cluster file is at hand.
    let mut store_password: Option<String> = None;
    // Stores web servers reach over TLS (`sticky+tls://`, `rediss://`):
    // reported as the director sees them (it speaks TLS to them), not
    // probed in plain RESP here.
    let mut tls_stores: Vec<String> = Vec::new();
    // Every director, from the state file (empty: ask the director).
    let mut listed_directors = Vec::new();
    let admin = if let Some(admin) = args.admin {
        match processes(admin, "/api/processes", None).await {
            Ok((pid, list)) => {
                report.up_pid = pid;
                rows = list.iter().map(Row::from_process).collect();
            }
            Err(e) => tracing::debug!(error = %e, "no supervisor behind the director"),
        }
        admin
    } else {
        let found = state::find(args.dir.as_deref(), "pass --dir or --admin")?;
        report.note = found.note("pick another with `sticky status --dir DIR` (or `--admin ADDR`)");
        report.other_clusters = found
            .others
            .iter()
            .map(|o| OtherCluster {
                dir: o.dir.clone(),
                up_pid: o.pid,
                shop: o.shop.clone(),
            })
            .collect();
        let up: UpState = found.state;
        listed_directors.clone_from(&up.directors);
        report.dir = Some(up.dir.clone());
        report.up_pid = Some(up.pid);
        report.shop = Some(up.shop.clone());
        let file = ClusterFile::load(&up.config);
        let token = match &file {
            Ok(f) => f
                .secret(&up.config)
                .ok()
                .map(|s| sticky_proto::control::admin_token(s.as_bytes())),
            Err(_) => None,
        };
        if let Ok(f) = &file {
            store_password.clone_from(&f.session.store_password);
            tls_stores = f
                .store
                .iter()
                .filter(|s| {
                    s.url.as_deref().is_some_and(|u| {
                        u.starts_with("sticky+tls://") || u.starts_with("rediss://")
                    })
                })
                .map(|s| s.name.clone())
                .collect();
        }
        if !up.running {
            // Stopped by `sticky up` itself: nothing to ask.
            report.running = false;
            report.dashboard = format!("http://{}/", up.admin);
            report.processes = up.processes.iter().map(Row::from_process).collect();
            for r in &mut report.processes {
                r.process = Some(ProcState::Stopped);
                r.state = ProcState::Stopped.as_str().into();
            }
            return Ok(report);
        }
        match processes(up.supervisor, "/api/processes", token.as_deref()).await {
            Ok((_, list)) => rows = list.iter().map(Row::from_process).collect(),
            Err(e) => {
                warnings.push(format!(
                    "the supervisor (sticky up, pid {}) does not answer: {}",
                    up.pid,
                    crate::values::error_text(&e)
                ));
                report.running = pid_alive(up.pid);
                rows = up.processes.iter().map(Row::from_process).collect();
                for r in &mut rows {
                    // Without the supervisor, all we know is whether the PID lives.
                    let alive = r.pid.is_some_and(pid_alive);
                    r.process = Some(if alive {
                        ProcState::Running
                    } else {
                        ProcState::Exited
                    });
                }
            }
        }
        up.admin
    };
    report.dashboard = format!("http://{admin}/");

    // The director's view.
    let cluster = match http_json(admin, Method::GET, "/api/cluster", None).await {
        Ok((StatusCode::OK, v)) if v.is_object() => Some(v),
        Ok((status, _)) => {
            warnings.push(format!("the director's /api/cluster answered {status}"));
            None
        }
        Err(e) => {
            if args.admin.is_some() {
                return Err(e.context("the director's admin listener does not answer"));
            }
            warnings.push(format!(
                "the director does not answer: {}",
                crate::values::error_text(&e)
            ));
            None
        }
    };
    if let Some(c) = &cluster {
        report.director = Some(c["director"].clone());
        if report.shop.is_none() {
            report.shop = c["director"]["listen"]
                .as_str()
                .map(|a| format!("http://{a}/"));
        }
    }
    merge_director(&mut rows, cluster.as_ref());

    // The other directors, each asked for its own view.
    let peers = peer_directors(&listed_directors, cluster.as_ref());
    let asks = peers.into_iter().map(|(name, admin)| async move {
        let result = http_json(admin, Method::GET, "/api/cluster", None).await;
        (name, admin, result)
    });
    for (name, admin, result) in futures_join(asks).await {
        match result {
            Ok((StatusCode::OK, v)) if v.is_object() => {
                merge_director_totals(&mut rows, &v);
                report.directors.push(DirectorReport {
                    name,
                    admin,
                    dashboard: format!("http://{admin}/"),
                    totals: Some(v["director"].clone()),
                });
            }
            other => {
                let error = match other {
                    Ok((status, _)) => format!("/api/cluster answered {status}"),
                    Err(e) => crate::values::error_text(&e),
                };
                warnings.push(format!("director {name} does not answer: {error}"));
                let i = match rows
                    .iter()
                    .position(|r| r.role == "director" && r.name == name)
                {
                    Some(i) => i,
                    None => {
                        rows.push(Row::new(&name, "director", None));
                        rows.len() - 1
                    }
                };
                rows[i].health = Some("down".into());
                if rows[i].error.is_none() {
                    rows[i].error = Some(error);
                }
                report.directors.push(DirectorReport {
                    name,
                    admin,
                    dashboard: format!("http://{admin}/"),
                    totals: None,
                });
            }
        }
    }

    // The stores: asked directly if we know them from the run dir, else as
    // the director reports them.
    let probes = rows
        .iter()
        .filter(|r| r.role == "store" && args.admin.is_none() && !tls_stores.contains(&r.name))
        .filter_map(|r| Some((r.name.clone(), r.addr?)))
        .map(|(name, addr)| {
            let password = store_password.clone();
            async move {
                let result =
                    sticky_proto::probe::probe_store(addr, password.as_deref(), LIMIT).await;
                (name, result)
            }
        });
    let results = futures_join(probes).await;
    for (name, result) in results {
        if let Some(r) = rows.iter_mut().find(|r| r.name == name) {
            match result {
                Ok(info) => {
                    r.health = Some("up".into());
                    r.keys = Some(info.keys);
                    r.used_memory = Some(info.used_memory);
                }
                Err(e) => {
                    r.health = Some("down".into());
                    if r.error.is_none() {
                        r.error = Some(e.to_string());
                    }
                }
            }
        }
    }
    for r in &mut rows {
        r.state = match (r.process, &r.health) {
            (
                Some(
                    p @ (ProcState::Starting
                    | ProcState::Paused
                    | ProcState::Stopping
                    | ProcState::Exited
                    | ProcState::Stopped),
                ),
                _,
            ) => p.as_str().into(),
            (_, Some(h)) => h.clone(),
            (Some(p), None) => p.as_str().into(),
            (None, None) => "unknown".into(),
        };
    }
    report.processes = rows;
    report.warnings = warnings;
    Ok(report)
}

/// Runs the futures concurrently and collects their outputs in order.
async fn futures_join<F: std::future::Future + Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        if let Ok(v) = h.await {
            out.push(v);
        }
    }
    out
}

/// Adds the director's view to the rows: its own health and counts, every
/// web server's routing state, and the stores it reports.
fn merge_director(rows: &mut Vec<Row>, cluster: Option<&Value>) {
    let Some(c) = cluster else {
        if let Some(i) = rows
            .iter()
            .position(|r| r.role == "director" && r.name == sticky_config::FIRST_DIRECTOR)
        {
            rows[i].health = Some("down".into());
        }
        return;
    };
    merge_director_totals(rows, c);
    for s in c["servers"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default();
        let i = match rows.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                let role = s["role"].as_str().unwrap_or("web");
                let addr = s["addr"].as_str().and_then(|a| a.parse().ok());
                rows.push(Row::new(name, role, addr));
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.health = s["state"].as_str().map(|state| {
            if s["unreachable"] == true {
                // Marked by a failed connect or check: passed over for
                // moved and new clients until a check passes.
                format!("{state}, unreachable")
            } else {
                state.to_owned()
            }
        });
        r.epoch = s["epoch"].as_u64();
        r.sessions = s["sessions"].as_u64();
        r.requests = s["requests"].as_u64();
        r.failovers = s["failovers"].as_u64();
        if r.error.is_none() {
            r.error = s["last_error"].as_str().map(str::to_owned);
        }
    }
    for s in c["stores"].as_array().into_iter().flatten() {
        let name = s["name"].as_str().unwrap_or_default();
        let i = match rows.iter().position(|r| r.name == name) {
            Some(i) => i,
            None => {
                let addr = s["addr"].as_str().and_then(|a| a.parse().ok());
                rows.push(Row::new(name, "store", addr));
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.health = s["state"].as_str().map(str::to_owned);
        r.keys = s["keys"].as_u64();
        r.used_memory = s["used_memory"].as_u64();
        if r.error.is_none() {
            r.error = s["error"].as_str().map(str::to_owned);
        }
    }
}

/// The name of the director whose `/api/cluster` this is (`director`
/// for a director without the `directors` list).
fn answering_director(c: &Value) -> String {
    c["directors"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|d| d["this"].as_bool() == Some(true))
        .and_then(|d| d["name"].as_str())
        .unwrap_or(sticky_config::FIRST_DIRECTOR)
        .to_owned()
}

/// Sets the row of the director that answered `c` (added if missing):
/// up, with its request counts.
fn merge_director_totals(rows: &mut Vec<Row>, c: &Value) {
    let d = &c["director"];
    let name = answering_director(c);
    let i = match rows
        .iter()
        .position(|r| r.role == "director" && r.name == name)
    {
        Some(i) => i,
        None => {
            let addr = d["listen"].as_str().and_then(|a| a.parse().ok());
            let at = rows.iter().take_while(|r| r.role == "director").count();
            rows.insert(at, Row::new(&name, "director", addr));
            at
        }
    };
    rows[i].health = Some("up".into());
    rows[i].requests = d["requests"].as_u64();
    rows[i].failovers = d["failovers"].as_u64();
}

/// The cluster's other directors (name, admin listener): from the state
/// file when it lists them, else from the answering director's list.
fn peer_directors(
    listed: &[crate::up::state::DirectorInfo],
    cluster: Option<&Value>,
) -> Vec<(String, SocketAddr)> {
    let answered = cluster.map(answering_director);
    let from_file = listed.iter().map(|d| (d.name.clone(), d.admin));
    let from_director = cluster
        .and_then(|c| c["directors"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|d| {
            Some((
                d["name"].as_str()?.to_owned(),
                d["admin"].as_str()?.parse().ok()?,
            ))
        });
    let all: Vec<(String, SocketAddr)> = if listed.is_empty() {
        from_director.collect()
    } else {
        from_file.collect()
    };
    all.into_iter()
        .filter(|(name, _)| {
            Some(name.as_str()) != answered.as_deref()
                && (answered.is_some() || name != sticky_config::FIRST_DIRECTOR)
        })
        .collect()
}

/// `1.5 KiB`.
fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn details(r: &Row) -> String {
    if r.state == "exited" || r.state == "stopped" {
        return r.error.clone().unwrap_or_default();
    }
    let mut parts = Vec::new();
    match r.role.as_str() {
        "director" => {
            if let Some(n) = r.requests {
                parts.push(plural(n, "request", "requests"));
            }
            if let Some(n) = r.failovers {
                parts.push(plural(n, "failover", "failovers"));
            }
        }
        "store" => {
            if let Some(n) = r.keys {
                parts.push(plural(n, "key", "keys"));
            }
            if let Some(n) = r.used_memory {
                parts.push(human_bytes(n));
            }
        }
        _ => {
            if let Some(n) = r.sessions {
                parts.push(plural(n, "session", "sessions"));
            }
            if let Some(n) = r.requests {
                parts.push(plural(n, "request", "requests"));
            }
            if let Some(e) = r.epoch {
                parts.push(format!("epoch {e}"));
            }
        }
    }
    if r.state != "up" && r.state != "running" {
        if let Some(e) = &r.error {
            parts.push(e.chars().take(60).collect());
        }
    }
    parts.join(", ")
}

fn print_table(report: &Report) {
    println!(
        "{:<10} {:<9} {:<22} {:>8}  {:<10} DETAILS",
        "NAME", "ROLE", "ADDRESS", "PID", "STATE"
    );
    for r in &report.processes {
        println!(
            "{:<10} {:<9} {:<22} {:>8}  {:<10} {}",
            r.name,
            r.role,
            r.addr.map_or_else(|| "-".into(), |a| a.to_string()),
            r.pid.map_or_else(|| "-".into(), |p| p.to_string()),
            r.state,
            details(r)
        );
    }
    println!();
    if let Some(shop) = &report.shop {
        println!("shop:       {shop}");
    }
    println!("dashboard:  {}", report.dashboard);
    for d in &report.directors {
        println!("{:<11} dashboard {}", format!("{}:", d.name), d.dashboard);
    }
    if let Some(dir) = &report.dir {
        println!("run dir:    {}", dir.display());
    }
    if !report.running {
        match report.up_pid {
            Some(pid) => println!("sticky up (pid {pid}) is not running"),
            None => println!("sticky up is not running"),
        }
    }
    for w in &report.warnings {
        println!("warning:    {w}");
    }
    if let Some(note) = &report.note {
        println!();
        for line in note.lines() {
            println!("note:       {line}");
        }
    }
}

/// Prints the cluster's state; true if the cluster runs and every process
/// of it is up (the exit status is 3 otherwise, as `systemctl status` does,
/// so that scripts can check it).
pub(crate) fn run(args: StatusArgs) -> anyhow::Result<bool> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt.block_on(gather(&args))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).context("cannot encode the report")?
        );
    } else {
        print_table(&report);
    }
    Ok(report.running && report.processes.iter().all(|r| r.state == "up"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
    }

    #[test]
    fn director_view_fills_rows() {
        let cluster = serde_json::json!({
            "director": {"listen": "127.0.0.1:8080", "requests": 5, "failovers": 1},
            "servers": [{"name": "ws1", "addr": "127.0.0.1:8091", "role": "web", "state": "down",
                         "epoch": 9, "sessions": 2, "requests": 4, "failovers": 0, "last_error": "refused"}],
            "stores": [{"name": "s1", "addr": "127.0.0.1:8121", "state": "up", "keys": 3, "used_memory": 100}]
        });
        let mut rows = Vec::new();
        merge_director(&mut rows, Some(&cluster));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].name, "director");
        assert_eq!(rows[0].requests, Some(5));
        assert_eq!(rows[1].health.as_deref(), Some("down"));
        assert_eq!(rows[1].error.as_deref(), Some("refused"));
        assert_eq!(rows[2].keys, Some(3));

        // A server the director passes over is shown so.
        let cluster = serde_json::json!({
            "servers": [{"name": "ws2", "addr": "127.0.0.1:8092", "role": "standby",
                         "state": "up", "unreachable": true}]
        });
        let mut rows = Vec::new();
        merge_director(&mut rows, Some(&cluster));
        let ws2 = rows.iter().find(|r| r.name == "ws2");
        assert_eq!(
            ws2.and_then(|r| r.health.as_deref()),
            Some("up, unreachable")
        );
    }
}
