//! Spawns the cluster's processes, waits until each is healthy, watches
//! them, and stops them all on Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

use super::plan::{Member, Plan, Role};

/// How long each group of processes may take to become healthy.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);

pub(crate) struct Proc {
    pub(crate) member: Member,
    child: Child,
    pid: u32,
    log: PathBuf,
    exited: bool,
}

fn spawn(exe: &Path, config: &Path, member: &Member, logs: &Path) -> anyhow::Result<Proc> {
    let log = logs.join(format!("{}.log", member.name));
    let out =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out
        .try_clone()
        .context("cannot duplicate the log file handle")?;
    let mut cmd = Command::new(exe);
    cmd.arg(member.role_command()).arg("--config").arg(config);
    if member.role != Role::Director {
        cmd.arg("--name").arg(&member.name);
    }
    // Settings come from the cluster file alone: a STICKY_* variable in our
    // environment (say STICKY_STORE_LISTEN) would apply to every child.
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k.starts_with("STICKY_") && k != "STICKY_LOG")
        {
            cmd.env_remove(k);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {}", member.name))?;
    let pid = child.id().context("child exited at once")?;
    Ok(Proc {
        member: member.clone(),
        child,
        pid,
        log,
        exited: false,
    })
}

impl Member {
    fn role_command(&self) -> &'static str {
        match self.role {
            Role::Director => "director",
            Role::Web | Role::Standby => "web",
            Role::Store => "store",
        }
    }
}

/// One HTTP/1.1 GET over a fresh connection; the status code.
async fn http_status(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<u16> {
    let io = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{auth}Connection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.ok()?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await.ok()?;
        std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .ok()
        .flatten()
}

async fn store_ready(addr: SocketAddr) -> bool {
    let io = async {
        let mut s = TcpStream::connect(addr).await.ok()?;
        s.write_all(b"PING\r\n").await.ok()?;
        let mut b = [0u8; 7];
        s.read_exact(&mut b).await.ok()?;
        Some(&b == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(2), io)
        .await
        .ok()
        .flatten()
        == Some(true)
}

async fn healthy(p: &Proc, plan: &Plan, token: &str) -> bool {
    match p.member.role {
        Role::Store => store_ready(p.member.addr).await,
        Role::Web | Role::Standby => {
            http_status(
                p.member.addr,
                sticky_proto::control::HEALTH_PATH,
                Some(token),
            )
            .await
                == Some(200)
        }
        Role::Director => http_status(plan.admin, "/api/cluster", None).await == Some(200),
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

/// Waits until every process in `group` answers its health check.
async fn wait_healthy(group: &mut [Proc], plan: &Plan, token: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + START_DEADLINE;
    for p in group.iter_mut() {
        loop {
            if let Some(status) = p.child.try_wait().context("cannot poll a child")? {
                bail!(
                    "{} exited during start-up ({status}); its log {}:\n{}",
                    p.member.name,
                    p.log.display(),
                    tail(&p.log)
                );
            }
            if healthy(p, plan, token).await {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "{} is not healthy after {:?}; see {}",
                    p.member.name,
                    START_DEADLINE,
                    p.log.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

fn signal(pid: u32, sig: nix::sys::signal::Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// SIGTERM to every live process (director first, stores last), then
/// SIGKILL to any still running after the grace period.
async fn stop_all(procs: &mut [Proc]) {
    for role in [Role::Director, Role::Web, Role::Standby, Role::Store] {
        for p in procs
            .iter_mut()
            .filter(|p| p.member.role == role && !p.exited)
        {
            signal(p.pid, nix::sys::signal::Signal::SIGTERM);
        }
        for p in procs
            .iter_mut()
            .filter(|p| p.member.role == role && !p.exited)
        {
            match tokio::time::timeout(STOP_GRACE, p.child.wait()).await {
                Ok(_) => {}
                Err(_) => {
                    eprintln!(
                        "{} did not stop within {STOP_GRACE:?}; killing it",
                        p.member.name
                    );
                    let _ = p.child.kill().await;
                }
            }
            p.exited = true;
        }
    }
}

fn print_table(procs: &[Proc], plan: &Plan, dir: &Path, config: &Path) {
    println!(
        "{:<10} {:<9} {:<22} {:>8}",
        "NAME", "ROLE", "ADDRESS", "PID"
    );
    for p in procs {
        println!(
            "{:<10} {:<9} {:<22} {:>8}",
            p.member.name,
            p.member.role.as_str(),
            p.member.addr.to_string(),
            p.pid
        );
    }
    let shop = plan
        .member("director")
        .map_or_else(String::new, |d| d.addr.to_string());
    println!();
    println!("shop:       http://{shop}/");
    println!("dashboard:  http://{}/", plan.admin);
    println!("cluster:    {}", config.display());
    println!("logs:       {}", dir.join("logs").display());
    println!("Ctrl-C stops everything.");
}

pub(crate) async fn supervise(plan: Plan, config: PathBuf, dir: PathBuf) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let token = sticky_proto::control::admin_token(plan.secret.as_bytes());
    let logs = dir.join("logs");
    let mut procs: Vec<Proc> = Vec::new();
    let started = Instant::now();
    let result = async {
        for role in [Role::Store, Role::Web, Role::Director] {
            let first = procs.len();
            for m in plan
                .members
                .iter()
                .filter(|m| m.role == role || (role == Role::Web && m.role == Role::Standby))
            {
                procs.push(spawn(&exe, &config, m, &logs)?);
            }
            wait_healthy(&mut procs[first..], &plan, &token).await?;
        }
        anyhow::Ok(())
    }
    .await;
    if let Err(e) = result {
        stop_all(&mut procs).await;
        return Err(e);
    }
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "cluster up"
    );
    print_table(&procs, &plan, &dir, &config);
    let stop = crate::shutdown_signal();
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = tick.tick() => {}
        }
        for p in procs.iter_mut().filter(|p| !p.exited) {
            if let Ok(Some(status)) = p.child.try_wait() {
                p.exited = true;
                eprintln!(
                    "!! {} ({}, pid {}) exited: {status}; log {}",
                    p.member.name,
                    p.member.role.as_str(),
                    p.pid,
                    p.log.display()
                );
            }
        }
    }
    eprintln!("stopping the cluster…");
    stop_all(&mut procs).await;
    eprintln!("stopped.");
    Ok(())
}
