//! Spawns the cluster's processes, waits until each is healthy, watches
//! them (reporting any that dies), carries out the control API's kill,
//! pause, resume and restart, keeps the state file current, and stops
//! them all on Ctrl-C or SIGTERM.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use nix::sys::signal::Signal;
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

use http::Method;
use sticky_proto::control::{self as proto_control, ProcessAction};

use super::control::{self, ControlError};
use super::netns::{self, SharedNet};
use super::plan::{Member, Plan, Role};
use super::state::{self, DirectorInfo, ProcState, ProcessInfo, UpState};

/// How long each group of processes may take to become healthy.
const START_DEADLINE: Duration = Duration::from_secs(60);
/// How long a process may take to exit after SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long a killed process may take to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// Interval of the watch loop.
const TICK: Duration = Duration::from_millis(200);
/// Health checks during start-up may take this long each.
const CHECK_LIMIT: Duration = Duration::from_secs(2);
/// Health checks of restarted processes, made from the watch loop, may
/// take this long each (the loop also serves the control API).
const WATCH_CHECK_LIMIT: Duration = Duration::from_millis(500);
/// Largest health answer read (a web server's report, the director's
/// `/api/cluster`).
const MAX_ANSWER: usize = 4 << 20;

/// What the control API is answered on.
type Reply = oneshot::Sender<Result<ProcessInfo, ControlError>>;

/// The end of a restart's stop, waited for off the supervisor's loop (a
/// web server's stop may take a store timeout and a drain, and the loop
/// meanwhile serves the control API, the watch and the stop signals).
struct Stopped {
    /// Index of the process in `Supervisor::procs`.
    i: usize,
    /// How the old process ended.
    how: String,
    reply: Reply,
}

/// One process of the cluster and its current incarnation.
struct Proc {
    member: Member,
    /// `None` once reaped.
    child: Option<Child>,
    pid: u32,
    log: PathBuf,
    state: ProcState,
    exit: Option<String>,
    restarts: u32,
}

impl Proc {
    fn info(&self) -> ProcessInfo {
        ProcessInfo {
            name: self.member.name.clone(),
            role: self.member.role.as_str().into(),
            addr: self.member.addr,
            pid: self.pid,
            state: self.state,
            exit: self.exit.clone(),
            restarts: self.restarts,
            log: self.log.clone(),
        }
    }

    fn alive(&self) -> bool {
        matches!(
            self.state,
            ProcState::Starting | ProcState::Running | ProcState::Paused
        )
    }

    /// Records the end of the process: `status` if it was reaped.
    fn exited(&mut self, how: String) {
        self.child = None;
        self.state = ProcState::Exited;
        self.exit = Some(how);
    }
}

/// The command that starts `member`: `sticky <role> --config FILE --name
/// NAME` (a sidecar web server with `--app`), or the app itself.
fn command(
    exe: &Path,
    config: &Path,
    run_dir: &Path,
    plan: &Plan,
    member: &Member,
    netns: Option<&str>,
) -> anyhow::Result<Command> {
    let role = match member.role {
        Role::Director => "director",
        Role::Web | Role::Standby => "web",
        Role::Store => "store",
        Role::App => {
            let app = plan.app.as_ref().context("an app process without --app")?;
            return Ok(app.command(member.addr.port(), &run_dir.join(SHOP_HTML)));
        }
    };
    let mut cmd = match netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns]).arg(exe);
            c
        }
        None => Command::new(exe),
    };
    cmd.arg(role)
        .arg("--config")
        .arg(config)
        .arg("--parent-pid")
        .arg(std::process::id().to_string());
    // A director's name picks its listeners among the cluster file's
    // directors (`[director]` is `director`).
    cmd.arg("--name").arg(&member.name);
    if member.role == Role::Store {
        // The run file tells the store a restart (by the dashboard or
        // chaos) from its first start (docs/safety.md, §3).
        let dir = config
            .parent()
            .unwrap_or_else(|| Path::new("."))
            .join("state")
            .join(&member.name);
        cmd.arg("--state-dir").arg(dir);
    }
    if let (Some(app), Some(spec)) = (plan.app_of(&member.name), plan.app.as_ref()) {
        cmd.arg("--app").arg(format!("http://{}", app.addr));
        if let Some(prefix) = spec.session_prefix {
            cmd.arg("--session-prefix").arg(prefix);
        }
    }
    Ok(cmd)
}

/// The shop page the example apps serve, written into the run dir.
const SHOP_HTML: &str = "shop.html";

/// Starts `member` (see [`command`]), its output going to `log` (appended
/// to, so a restart keeps the old log). With `netns`, it runs in that
/// network namespace (`ip netns exec NS`, which execs it in place: the
/// child's PID is the process's own).
fn spawn(
    exe: &Path,
    config: &Path,
    run_dir: &Path,
    plan: &Plan,
    member: &Member,
    log: &Path,
    netns: Option<&str>,
) -> anyhow::Result<Child> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("cannot open {}", log.display()))?;
    let err = out
        .try_clone()
        .context("cannot duplicate the log file handle")?;
    let mut cmd = command(exe, config, run_dir, plan, member, netns)?;
    // Settings come from the cluster file alone: a STICKY_* variable in our
    // environment (say STICKY_STORE_LISTEN) would apply to every child.
    for (k, _) in std::env::vars_os() {
        if k.to_str()
            .is_some_and(|k| k.starts_with("STICKY_") && k != "STICKY_LOG")
        {
            cmd.env_remove(k);
        }
    }
    if member.role == Role::App {
        // Its web server's name, for an app that wants it outside a
        // request (each request carries it in `sticky-session-server`).
        if let Some(web) = member.name.strip_suffix("-app") {
            cmd.env("STICKY_SERVER", web);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true);
    // Its own process group: a Ctrl-C in the terminal (or its hangup)
    // reaches `sticky up` alone, which then stops the cluster in order,
    // the director first and the stores last.
    cmd.process_group(0);
    cmd.spawn()
        .with_context(|| format!("cannot start {}", member.name))
}

/// One HTTP/1.1 GET over a fresh connection; the status code.
async fn http_status(
    addr: SocketAddr,
    path: &str,
    token: Option<&str>,
    limit: Duration,
) -> Option<u16> {
    let auth = token.map(proto_control::bearer).transpose().ok()?;
    let resp = proto_control::request(addr, Method::GET, path, auth.as_ref(), limit, MAX_ANSWER)
        .await
        .ok()?;
    Some(resp.status().as_u16())
}

/// Whether the store at `addr` answers `PING` (after `AUTH` with
/// `password`, when it has one) within `limit`.
async fn store_ready(addr: SocketAddr, password: Option<&str>, limit: Duration) -> bool {
    sticky_proto::probe::probe_store(addr, password, limit)
        .await
        .is_ok()
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn signal(pid: u32, sig: Signal) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
    }
}

/// SIGTERM to `p`, and SIGCONT if it is paused, so that it can act on it.
fn terminate(p: &Proc) {
    signal(p.pid, Signal::SIGTERM);
    if p.state == ProcState::Paused {
        signal(p.pid, Signal::SIGCONT);
    }
}

/// Waits up to [`STOP_GRACE`] for `child` (told to stop) to exit, then
/// kills it; says how it ended.
async fn stop_child(mut child: Child, name: &str) -> String {
    match tokio::time::timeout(STOP_GRACE, child.wait()).await {
        Ok(Ok(status)) => status.to_string(),
        _ => {
            event!("{name} did not stop within {STOP_GRACE:?}; killing it");
            let _ = child.kill().await;
            "killed (SIGKILL) after SIGTERM".into()
        }
    }
}

struct Supervisor {
    plan: Plan,
    exe: PathBuf,
    config: PathBuf,
    dir: PathBuf,
    token: String,
    procs: Vec<Proc>,
    /// The cluster's network (`--netns`): each process in its own host.
    net: SharedNet,
    /// Where restarts' stops report their end ([`Stopped`]).
    stopped: mpsc::UnboundedSender<Stopped>,
    /// Restarts whose old process is still stopping.
    stopping: usize,
}

impl Supervisor {
    fn start(&mut self, member: &Member) -> anyhow::Result<()> {
        let log = self.dir.join("logs").join(format!("{}.log", member.name));
        // A fresh log for a fresh cluster.
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
        let netns = netns::netns_of(self.net.as_deref(), &member.name);
        let child = spawn(
            &self.exe,
            &self.config,
            &self.dir,
            &self.plan,
            member,
            &log,
            netns.as_deref(),
        )?;
        let pid = child.id().context("child exited at once")?;
        self.procs.push(Proc {
            member: member.clone(),
            child: Some(child),
            pid,
            log,
            state: ProcState::Starting,
            exit: None,
            restarts: 0,
        });
        Ok(())
    }

    async fn healthy(&self, p: &Proc, limit: Duration) -> bool {
        match p.member.role {
            Role::Store => {
                store_ready(p.member.addr, self.plan.store_password.as_deref(), limit).await
            }
            Role::Web | Role::Standby => {
                http_status(
                    p.member.addr,
                    sticky_proto::control::HEALTH_PATH,
                    Some(&self.token),
                    limit,
                )
                .await
                    == Some(200)
            }
            Role::Director => {
                let admin = p.member.admin.unwrap_or(self.plan.admin);
                http_status(admin, "/api/cluster", None, limit).await == Some(200)
            }
            // Any HTTP answer: the app is up (its page may need a session).
            Role::App => http_status(p.member.addr, "/", None, limit).await.is_some(),
        }
    }

    /// Waits until every process from index `first` on answers its health
    /// check.
    async fn wait_healthy(&mut self, first: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        for i in first..self.procs.len() {
            loop {
                let p = &mut self.procs[i];
                let exited = match p.child.as_mut() {
                    Some(c) => c.try_wait().context("cannot poll a child")?,
                    None => None,
                };
                if let Some(status) = exited {
                    p.exited(status.to_string());
                    bail!(
                        "{} exited during start-up ({status}); its log {}:\n{}",
                        p.member.name,
                        p.log.display(),
                        tail(&p.log)
                    );
                }
                if self.healthy(&self.procs[i], CHECK_LIMIT).await {
                    self.procs[i].state = ProcState::Running;
                    break;
                }
                if Instant::now() > deadline {
                    let p = &self.procs[i];
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

    fn state(&self, running: bool) -> UpState {
        let shop = self.plan.member("director").map_or_else(String::new, |d| {
            format!("{}://{}/", self.plan.scheme(), d.addr)
        });
        UpState {
            version: 1,
            pid: std::process::id(),
            running,
            dir: self.dir.clone(),
            config: self.config.clone(),
            shop,
            dashboard: format!("http://{}/", self.plan.admin),
            admin: self.plan.admin,
            supervisor: self.plan.supervisor,
            directors: self
                .plan
                .members
                .iter()
                .filter(|m| m.role == Role::Director)
                .map(|m| DirectorInfo {
                    name: m.name.clone(),
                    shop: format!("{}://{}/", self.plan.scheme(), m.addr),
                    admin: m.admin.unwrap_or(self.plan.admin),
                })
                .collect(),
            processes: self.procs.iter().map(Proc::info).collect(),
        }
    }

    /// Rewrites the state file.
    fn save(&self, running: bool) {
        if let Err(e) = self.state(running).write() {
            tracing::warn!(error = %e, "cannot update the state file");
        }
    }

    /// Reaps processes that exited (reporting them) and promotes restarted
    /// ones that became healthy.
    async fn watch(&mut self) {
        let mut changed = false;
        for i in 0..self.procs.len() {
            let p = &mut self.procs[i];
            if !p.alive() {
                continue;
            }
            if let Some(Ok(Some(status))) = p.child.as_mut().map(Child::try_wait) {
                p.exited(status.to_string());
                changed = true;
                event!(
                    "!! {} ({}, pid {}) exited: {status}; log {}",
                    p.member.name,
                    p.member.role.as_str(),
                    p.pid,
                    p.log.display()
                );
                continue;
            }
            if p.state == ProcState::Starting
                && self.healthy(&self.procs[i], WATCH_CHECK_LIMIT).await
            {
                let p = &mut self.procs[i];
                // It may have been paused while it was checked.
                if p.state == ProcState::Starting {
                    p.state = ProcState::Running;
                    changed = true;
                    event!(
                        "{} ({}) is running again, pid {}",
                        p.member.name,
                        p.member.role.as_str(),
                        p.pid
                    );
                }
            }
        }
        if changed {
            self.save(true);
        }
    }

    fn find(&self, name: &str) -> Result<usize, ControlError> {
        self.procs
            .iter()
            .position(|p| p.member.name == name)
            .ok_or_else(|| ControlError::Unknown(name.chars().take(64).collect()))
    }

    /// SIGKILL and reap.
    async fn kill(&mut self, i: usize) {
        let p = &mut self.procs[i];
        signal(p.pid, Signal::SIGKILL);
        let how = match p.child.as_mut() {
            Some(c) => match tokio::time::timeout(KILL_WAIT, c.wait()).await {
                Ok(Ok(status)) => status.to_string(),
                _ => "killed (SIGKILL)".into(),
            },
            None => "killed (SIGKILL)".into(),
        };
        p.exited(how);
    }

    /// SIGTERM (continuing it if paused), then SIGKILL after the grace
    /// period; reaps it.
    async fn stop(&mut self, i: usize) {
        let p = &mut self.procs[i];
        terminate(p);
        let how = match p.child.take() {
            Some(child) => stop_child(child, &p.member.name).await,
            None => "stopped".into(),
        };
        p.exited(how);
        p.state = ProcState::Stopped;
    }

    /// A restart's first half: SIGTERM to a live process, whose exit a task
    /// waits for; [`finish_restart`](Self::finish_restart) starts it again
    /// once it reports. A process already gone starts again at once.
    fn restart(&mut self, i: usize, reply: Reply) {
        let p = &mut self.procs[i];
        let running = if p.alive() { p.child.take() } else { None };
        let Some(child) = running else {
            let result = self.respawn(i);
            let _ = reply.send(result);
            return;
        };
        terminate(p);
        p.state = ProcState::Stopping;
        let name = p.member.name.clone();
        event!(
            "restart: {name} ({}, pid {}) is stopping",
            p.member.role.as_str(),
            p.pid
        );
        self.save(true);
        self.stopping += 1;
        let tx = self.stopped.clone();
        tokio::spawn(async move {
            let how = stop_child(child, &name).await;
            let _ = tx.send(Stopped { i, how, reply });
        });
    }

    /// A restart's second half: the old process ended; the new one starts.
    fn finish_restart(&mut self, done: Stopped) {
        self.stopping = self.stopping.saturating_sub(1);
        self.procs[done.i].exited(done.how);
        let result = self.respawn(done.i);
        let _ = done.reply.send(result);
    }

    /// Starts process `i` (not running) again, appending to its log.
    fn respawn(&mut self, i: usize) -> Result<ProcessInfo, ControlError> {
        let name = self.procs[i].member.name.clone();
        let netns = netns::netns_of(self.net.as_deref(), &name);
        let p = &mut self.procs[i];
        if let Ok(mut f) = OpenOptions::new().append(true).open(&p.log) {
            let _ = writeln!(f, "--- restarted by sticky up (was pid {}) ---", p.pid);
        }
        let child = spawn(
            &self.exe,
            &self.config,
            &self.dir,
            &self.plan,
            &p.member,
            &p.log,
            netns.as_deref(),
        )
        .map_err(|e| ControlError::Failed(crate::values::error_text(&e)))?;
        p.pid = child
            .id()
            .ok_or_else(|| ControlError::Failed(format!("{name} exited at once")))?;
        p.child = Some(child);
        p.state = ProcState::Starting;
        p.exit = None;
        p.restarts += 1;
        Ok(self.acted(i, ProcessAction::Restart))
    }

    /// Reports and records what an action did to process `i`.
    fn acted(&self, i: usize, action: ProcessAction) -> ProcessInfo {
        let p = &self.procs[i];
        event!(
            "{}: {} ({}, pid {}) is {}",
            action.as_str(),
            p.member.name,
            p.member.role.as_str(),
            p.pid,
            p.state.as_str()
        );
        self.save(true);
        p.info()
    }

    /// Carries out `action` on process `name` and answers on `reply`: at
    /// once, or for a restart of a live process once the old one ended.
    async fn act(&mut self, name: &str, action: ProcessAction, reply: Reply) {
        let i = match self.find(name) {
            Ok(i) => i,
            Err(e) => {
                let _ = reply.send(Err(e));
                return;
            }
        };
        let state = self.procs[i].state;
        let not = |what: &str| {
            Err(ControlError::Conflict(format!(
                "{name} is {}: cannot {what} it",
                state.as_str()
            )))
        };
        let result = match action {
            ProcessAction::Kill if !self.procs[i].alive() => not("kill"),
            ProcessAction::Kill => {
                self.kill(i).await;
                Ok(self.acted(i, action))
            }
            ProcessAction::Pause if !matches!(state, ProcState::Running | ProcState::Starting) => {
                not("pause")
            }
            ProcessAction::Pause => {
                signal(self.procs[i].pid, Signal::SIGSTOP);
                self.procs[i].state = ProcState::Paused;
                Ok(self.acted(i, action))
            }
            ProcessAction::Resume if state != ProcState::Paused => not("resume"),
            ProcessAction::Resume => {
                signal(self.procs[i].pid, Signal::SIGCONT);
                self.procs[i].state = ProcState::Running;
                Ok(self.acted(i, action))
            }
            ProcessAction::Restart if state == ProcState::Stopping => not("restart"),
            ProcessAction::Restart => return self.restart(i, reply),
        };
        let _ = reply.send(result);
    }

    async fn handle(&mut self, cmd: control::Command) {
        match cmd {
            control::Command::List(reply) => {
                let _ = reply.send(self.procs.iter().map(Proc::info).collect());
            }
            control::Command::Act {
                name,
                action,
                reply,
            } => self.act(&name, action, reply).await,
        }
    }

    /// SIGTERM to every live process (director first, stores last), then
    /// SIGKILL to any still running after the grace period. Restarts under
    /// way end first (their old processes are already stopping; the new
    /// ones are not started).
    async fn stop_all(&mut self, stopped: &mut mpsc::UnboundedReceiver<Stopped>) {
        while self.stopping > 0 {
            let Ok(Some(done)) = tokio::time::timeout(STOP_GRACE + KILL_WAIT, stopped.recv()).await
            else {
                break;
            };
            self.stopping -= 1;
            self.procs[done.i].exited(done.how);
            let _ = done.reply.send(Err(ControlError::Conflict(
                "the cluster is stopping: not started again".into(),
            )));
        }
        for role in [
            Role::Director,
            Role::Web,
            Role::Standby,
            Role::App,
            Role::Store,
        ] {
            let group: Vec<usize> = (0..self.procs.len())
                .filter(|&i| self.procs[i].member.role == role && self.procs[i].alive())
                .collect();
            for &i in &group {
                terminate(&self.procs[i]);
            }
            for &i in &group {
                self.stop(i).await;
            }
        }
        for p in &mut self.procs {
            p.state = ProcState::Stopped;
        }
    }

    fn print_table(&self) {
        println!(
            "{:<10} {:<9} {:<22} {:>8}",
            "NAME", "ROLE", "ADDRESS", "PID"
        );
        for p in &self.procs {
            println!(
                "{:<10} {:<9} {:<22} {:>8}",
                p.member.name,
                p.member.role.as_str(),
                p.member.addr.to_string(),
                p.pid
            );
        }
        println!();
        for d in self
            .plan
            .members
            .iter()
            .filter(|m| m.role == Role::Director)
        {
            let admin = d.admin.unwrap_or(self.plan.admin);
            if d.name == sticky_config::FIRST_DIRECTOR {
                println!("shop:       {}://{}/", self.plan.scheme(), d.addr);
                println!("dashboard:  http://{admin}/");
            } else {
                println!(
                    "{:<11} shop {}://{}/, dashboard http://{admin}/",
                    format!("{}:", d.name),
                    self.plan.scheme(),
                    d.addr
                );
            }
        }
        if let Some(app) = &self.plan.app {
            println!(
                "apps:       {} behind each web server (wsN-app); docs/sidecar.md",
                app.label
            );
        }
        println!("cluster:    {}", self.config.display());
        println!("logs:       {}", self.dir.join("logs").display());
        println!("status:     sticky status --dir {}", self.dir.display());
        println!("Ctrl-C stops everything.");
    }
}

/// SIGINT, SIGTERM and SIGHUP, listened to from the start: the children
/// have their own process group, so every one of these signals reaches
/// `sticky up` alone, which must then stop them (even during start-up).
struct StopSignals {
    int: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn new() -> anyhow::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        let listen = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot listen for {name}"))
        };
        Ok(Self {
            int: listen(SignalKind::interrupt(), "SIGINT")?,
            term: listen(SignalKind::terminate(), "SIGTERM")?,
            hup: listen(SignalKind::hangup(), "SIGHUP")?,
        })
    }

    /// The next stop signal's name.
    async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.int.recv() => "SIGINT",
            _ = self.term.recv() => "SIGTERM",
            _ = self.hup.recv() => "SIGHUP",
        }
    }
}

/// Runs the cluster of `plan` until a stop signal. With `net` (`--netns`),
/// each process runs in its host of it, and the control API serves its
/// faults; it is removed (dropped) once the processes are stopped.
pub(crate) async fn supervise(
    plan: Plan,
    config: PathBuf,
    dir: PathBuf,
    net: Option<sticky_netfault::Net>,
) -> anyhow::Result<()> {
    let net: SharedNet = net.map(std::sync::Arc::new);
    let mut signals = StopSignals::new()?;
    let exe = std::env::current_exe().context("cannot find my own executable")?;
    let token = sticky_proto::control::admin_token(plan.secret.as_bytes());
    let listener = tokio::net::TcpListener::bind(plan.supervisor)
        .await
        .with_context(|| format!("cannot listen on {} (control API)", plan.supervisor))?;
    let (tx, mut commands) = mpsc::channel(16);
    let api = tokio::spawn(control::serve(listener, token.clone(), tx, net.clone()));
    if plan.app.is_some() {
        let page = dir.join(SHOP_HTML);
        std::fs::write(&page, include_str!("../demo/shop.html"))
            .with_context(|| format!("cannot write {}", page.display()))?;
    }
    let (stopped_tx, mut stopped) = mpsc::unbounded_channel();
    let mut sup = Supervisor {
        plan,
        exe,
        config,
        dir,
        token,
        procs: Vec::new(),
        net,
        stopped: stopped_tx,
        stopping: 0,
    };
    let started = Instant::now();
    let start_up = async {
        // Each app before its sidecar, which forwards to it.
        for role in [Role::Store, Role::App, Role::Web, Role::Director] {
            let first = sup.procs.len();
            let members: Vec<Member> = sup
                .plan
                .members
                .iter()
                .filter(|m| m.role == role || (role == Role::Web && m.role == Role::Standby))
                .cloned()
                .collect();
            for m in &members {
                sup.start(m)?;
            }
            sup.save(true);
            if role == Role::Store {
                state::register(&sup.dir);
            }
            sup.wait_healthy(first).await?;
        }
        anyhow::Ok(())
    };
    let result = tokio::select! {
        r = start_up => r,
        name = signals.recv() => Err(anyhow::anyhow!("{name} during start-up")),
    };
    if let Err(e) = result {
        api.abort();
        sup.stop_all(&mut stopped).await;
        sup.save(false);
        state::unregister();
        return Err(e);
    }
    sup.save(true);
    tracing::info!(
        elapsed_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        "cluster up"
    );
    sup.print_table();
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            name = signals.recv() => {
                tracing::info!(signal = name, "stopping the cluster");
                break;
            }
            _ = tick.tick() => sup.watch().await,
            Some(cmd) = commands.recv() => sup.handle(cmd).await,
            Some(done) = stopped.recv() => sup.finish_restart(done),
        }
    }
    event!("stopping the cluster…");
    api.abort();
    sup.stop_all(&mut stopped).await;
    sup.save(false);
    state::unregister();
    event!("stopped.");
    Ok(())
}
