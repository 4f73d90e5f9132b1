//! `sticky chaos`: proof under faults. Virtual users increment and read a
//! per-session counter through the director(s) while a nemesis kills,
//! pauses and restarts web servers and stores and, with `--net`, cuts the
//! network between them; the users themselves drop and replay route
//! cookies (`--drop-route`, `--replay-route`) and switch between
//! directors; a checker reports every lost write, stale read and vanished
//! session (docs/reliability.md).
//!
//! - `cluster`: the cluster under test (a `sticky up` started here, or a
//!   running one) and the supervisor's control API.
//! - `nemesis`: the fault schedule and its safety rules.
//! - `user`: a virtual user and what it measures.
//! - `checker`: the per-session model that names anomalies.
//! - `history`: the JSON-lines history file.
//! - `report`: the summary table and JSON.
//! - `shared`: what the users, the nemesis and the progress bar share.

mod checker;
mod cluster;
mod history;
mod nemesis;
mod report;
mod shared;
mod user;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use sticky_config::Mode;

use crate::bench_cmd::parse_duration;
use crate::up::mode_parser;
use cluster::{Cluster, Source};
use history::{History, HistoryEvent};
use nemesis::{FaultList, Nemesis};
use shared::{Failover, Shared};
use user::{ClientFaults, Tally, User};

/// `sticky chaos` options.
#[derive(Debug, Args)]
pub(crate) struct ChaosArgs {
    /// How long users work and the nemesis injects faults, e.g. 2m.
    #[arg(long, value_parser = parse_duration, default_value = "60s")]
    duration: Duration,
    /// Virtual users: each has its own cookie jar, so its own session.
    #[arg(long, allow_negative_numbers = true, default_value_t = 100, value_parser = crate::values::whole::<usize>(1, u64::MAX))]
    users: usize,
    /// Fraction of operations that increment (the rest read).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.5, value_parser = crate::values::fraction)]
    write_ratio: f64,
    /// Each user's pause between operations (0.5x to 1.5x, random).
    #[arg(long, value_parser = parse_duration, default_value = "20ms")]
    think: Duration,
    /// An operation without a complete answer after this has an unknown
    /// outcome.
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Fault kinds, comma-separated, or `all`: kill-web, kill-store,
    /// pause-web, pause-store, restart-web, restart-store; with --net also
    /// isolate-web, cut-web-directors, cut-web-stores,
    /// cut-store-web-one-way, isolate-store, slow-link, cut-director-web.
    #[arg(long, default_value = "all", value_parser = nemesis::parse_faults)]
    faults: FaultList,
    /// Network faults too (root only): the cluster chaos starts runs every
    /// process in its own network namespace (`sticky up --netns`), and
    /// the nemesis cuts, isolates and slows links between them.
    #[arg(long)]
    net: bool,
    /// Shortest time a network fault is held before it is healed.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    net_hold_min: Duration,
    /// Longest time a network fault is held.
    #[arg(long, value_parser = parse_duration, default_value = "8s")]
    net_hold_max: Duration,
    /// Fraction of requests that leave out the route cookie (send only
    /// `sticky.sid`), as clients that drop cookies do.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0, value_parser = crate::values::fraction)]
    drop_route: f64,
    /// Fraction of requests that replay a route cookie the user was given
    /// earlier, naming another host.
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.0, value_parser = crate::values::fraction)]
    replay_route: f64,
    /// Mean time between the starts of two faults (each wait is 0.5x to
    /// 1.5x this).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    interval: Duration,
    /// Shortest time a killed or paused process stays down.
    #[arg(long, value_parser = parse_duration, default_value = "500ms")]
    down_min: Duration,
    /// Longest time a killed or paused process stays down.
    #[arg(long, value_parser = parse_duration, default_value = "3s")]
    down_max: Duration,
    /// Most processes faulted at once (a fault lasts until the cluster has
    /// settled after it; see docs/reliability.md for the other rules).
    #[arg(long, allow_negative_numbers = true, default_value_t = 2, value_parser = crate::values::whole::<usize>(1, u64::MAX))]
    max_faults: usize,
    /// Run against a running `sticky up` instead of starting a cluster:
    /// the one whose run dir (`--dir`) is DIR, or without DIR the one
    /// `sticky status` shows (the latest started). Chaos prints what it
    /// attached to.
    #[arg(long, value_name = "DIR", conflicts_with = "config")]
    #[allow(clippy::option_option)]
    attach: Option<Option<PathBuf>>,
    /// Start the cluster of this cluster file (`sticky up --config FILE`)
    /// instead of the embedded default.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Web servers of the cluster chaos starts (1 to 32).
    #[arg(long, allow_negative_numbers = true, default_value_t = 3, value_parser = crate::values::whole::<u16>(1, 32))]
    web: u16,
    /// An app behind each web server of the cluster chaos starts, which
    /// then run as sidecars (`sticky up --app`: python, node or a
    /// command; docs/sidecar.md). Faults hit the sidecars, not the apps.
    #[arg(long, value_name = "python|node|CMD", conflicts_with_all = ["attach", "net"])]
    app: Option<String>,
    /// Standby web servers of the cluster chaos starts (0 to 8).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = crate::values::whole::<u16>(0, 8))]
    standby: u16,
    /// Stores of the cluster chaos starts (1 to 16).
    #[arg(long, allow_negative_numbers = true, default_value_t = 3, value_parser = crate::values::whole::<u16>(1, 16))]
    stores: u16,
    /// Directors side by side in the cluster chaos starts (passed to
    /// `sticky up --directors` when above 1); users switch between them (1 to 4).
    #[arg(long, allow_negative_numbers = true, default_value_t = 1, value_parser = crate::values::whole::<u16>(1, 4))]
    directors: u16,
    /// Stores per session in the cluster chaos starts.
    #[arg(long, allow_negative_numbers = true, default_value_t = 2, value_parser = crate::values::whole::<u16>(1, 2))]
    replicas: u16,
    /// Replication mode of the cluster chaos starts.
    #[arg(long, default_value_t = Mode::Sync, value_parser = mode_parser())]
    mode: Mode,
    /// Base port of the cluster chaos starts (as `sticky up --port`).
    #[arg(long, allow_negative_numbers = true, default_value_t = 9080, value_parser = crate::values::whole::<u16>(1, 65_535))]
    port: u16,
    /// Directory for the cluster chaos starts and the history [default: a
    /// new directory under the system's temp dir].
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The history file (JSON lines) [default: chaos-history.jsonl in the
    /// run directory].
    #[arg(long)]
    history: Option<PathBuf>,
    /// Also write the summary as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    no_progress: bool,
}

impl ChaosArgs {
    fn check(&self) -> anyhow::Result<()> {
        if self.users == 0 {
            bail!("--users must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.write_ratio) {
            bail!("--write-ratio must be between 0 and 1");
        }
        if self.down_max < self.down_min {
            bail!("--down-max must not be shorter than --down-min");
        }
        if self.interval.is_zero() {
            bail!("--interval must be positive");
        }
        if self.net_hold_max < self.net_hold_min {
            bail!("--net-hold-max must not be shorter than --net-hold-min");
        }
        for (name, p) in [
            ("--drop-route", self.drop_route),
            ("--replay-route", self.replay_route),
        ] {
            if !(0.0..=1.0).contains(&p) {
                bail!("{name} must be between 0 and 1");
            }
        }
        if self.net && !crate::up::netns::is_root() {
            bail!("--net needs root (network namespaces and tc); run as root or without --net");
        }
        if !self.net && self.faults.0.iter().all(|k| k.is_net()) {
            bail!("--faults names only network faults: they need --net");
        }
        Ok(())
    }

    /// The fault kinds of this run: the network ones only with `--net`.
    fn kinds(&self) -> Vec<nemesis::FaultKind> {
        self.faults
            .0
            .iter()
            .copied()
            .filter(|k| self.net || !k.is_net())
            .collect()
    }

    fn source(&self, dir: PathBuf) -> anyhow::Result<Source> {
        if let Some(d) = &self.attach {
            if let Some(d) = d {
                return Ok(Source::Attach { dir: d.clone() });
            }
            // `--attach` alone: the cluster `sticky status` shows.
            let found = crate::up::state::find(None, "pass --attach DIR")?;
            if let Some(note) = found.note("pick another with `sticky chaos --attach DIR`") {
                for line in note.lines() {
                    eprintln!("chaos: {line}");
                }
            }
            return Ok(Source::Attach {
                dir: found.state.dir,
            });
        }
        let mut args = match &self.config {
            Some(file) => vec!["--config".into(), file.display().to_string()],
            None => vec![
                "--web".into(),
                self.web.to_string(),
                "--standby".into(),
                self.standby.to_string(),
                "--stores".into(),
                self.stores.to_string(),
                "--replicas".into(),
                self.replicas.to_string(),
                "--mode".into(),
                self.mode.to_string(),
                "--port".into(),
                self.port.to_string(),
            ],
        };
        if self.directors > 1 {
            args.extend(["--directors".into(), self.directors.to_string()]);
        }
        if self.net {
            args.push("--netns".into());
        }
        if let Some(app) = &self.app {
            args.extend(["--app".into(), app.clone()]);
        }
        Ok(Source::Start { args, dir })
    }
}

/// Shows progress until `done` is set: a bar on a terminal, a line every
/// 10 s otherwise.
async fn progress(shared: Arc<Shared>, duration: Duration, done: Arc<AtomicBool>, hidden: bool) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal() && !hidden;
    let bar = tty.then(|| {
        let bar = indicatif::ProgressBar::new(duration.as_secs().max(1));
        let style = indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:24.cyan/blue}] {pos}/{len}s {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .progress_chars("=> ");
        bar.set_style(style);
        bar
    });
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(10)
    };
    let (mut last_ops, mut last_at) = (0u64, Instant::now());
    while !done.load(Ordering::Relaxed) {
        tokio::time::sleep(every).await;
        let now = Instant::now();
        let ops = shared.ops.load(Ordering::Relaxed);
        let rate = (ops - last_ops) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-3);
        (last_ops, last_at) = (ops, now);
        let faults = shared.faults();
        let msg = format!(
            "{ops} ops ({rate:.0}/s), {} not ok, {} anomalies{}{}",
            shared.not_ok.load(Ordering::Relaxed),
            shared.anomalies.load(Ordering::Relaxed),
            if faults.is_empty() { "" } else { " | " },
            faults
        );
        let elapsed = now.duration_since(shared.start);
        match &bar {
            Some(bar) => {
                bar.set_position(elapsed.as_secs().min(duration.as_secs()));
                bar.set_message(msg);
            }
            None if !hidden => eprintln!("chaos: {:6.1} s  {msg}", elapsed.as_secs_f64()),
            None => {}
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

/// Runs the schedule and prints the summary; fails if the checker found
/// any anomaly.
pub(crate) fn run(args: ChaosArgs) -> anyhow::Result<()> {
    args.check()?;
    let dir = match &args.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("sticky-chaos-{}", std::process::id())),
    };
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let dir =
        std::path::absolute(&dir).with_context(|| format!("cannot resolve {}", dir.display()))?;
    let history_path = args
        .history
        .clone()
        .unwrap_or_else(|| dir.join("chaos-history.jsonl"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = rt.block_on(async {
        let source = args.source(dir.join("cluster"))?;
        if !args.no_progress && matches!(source, Source::Start { .. }) {
            eprintln!("chaos: starting the cluster (logs in {})", dir.display());
        }
        let mut cluster = Cluster::open(source, args.net).await?;
        let outcome = drive(&args, &cluster, &history_path).await;
        if let Err(e) = cluster.close().await {
            tracing::warn!(error = %format!("{e:#}"), "stopping the cluster");
        }
        outcome
    })?;
    rt.shutdown_timeout(Duration::from_secs(1));
    print!("{}", summary.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&summary).context("cannot encode the summary")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    let n = summary.anomaly_count();
    if n > 0 {
        bail!("{n} anomalies; history in {}", history_path.display());
    }
    if summary.ok_operations() == 0 {
        bail!("no operation succeeded; is the cluster serving?");
    }
    Ok(())
}

/// Users and nemesis on an open cluster.
async fn drive(
    args: &ChaosArgs,
    cluster: &Cluster,
    history_path: &std::path::Path,
) -> anyhow::Result<report::Summary> {
    let history = History::create(history_path)
        .with_context(|| format!("cannot create {}", history_path.display()))?;
    let shared = Arc::new(Shared {
        start: Instant::now(),
        timeout: args.timeout,
        think: args.think,
        write_ratio: args.write_ratio,
        stop_users: AtomicBool::new(false),
        stop_faults: AtomicBool::new(false),
        history,
        failover: Failover::default(),
        ops: AtomicU64::new(0),
        not_ok: AtomicU64::new(0),
        anomalies: AtomicU64::new(0),
        faults: Mutex::new(String::new()),
    });
    let interrupted = Arc::new(AtomicBool::new(false));
    {
        let interrupted = Arc::clone(&interrupted);
        tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\nchaos: interrupted; healing faults and checking what was done");
                interrupted.store(true, Ordering::Relaxed);
            }
        });
    }
    let done = Arc::new(AtomicBool::new(false));
    let bar = tokio::spawn(progress(
        Arc::clone(&shared),
        args.duration,
        Arc::clone(&done),
        args.no_progress,
    ));
    let client_faults = ClientFaults {
        drop_route: args.drop_route,
        replay_route: args.replay_route,
    };
    let users: Vec<_> = (0..args.users)
        .map(|i| {
            let user = User::new(i, &cluster.directors, client_faults);
            tokio::spawn(user.run(Arc::clone(&shared)))
        })
        .collect();
    // The cluster as a shared handle for the nemesis task; `cluster` stays
    // borrowed here, so the nemesis gets a view with the same endpoints.
    let nemesis = Nemesis::new(nemesis::Settings {
        kinds: args.kinds(),
        interval: args.interval,
        down_min: args.down_min,
        down_max: args.down_max,
        max_faults: args.max_faults.max(1),
        replicas: cluster.replicas,
        net_hold_min: args.net_hold_min,
        net_hold_max: args.net_hold_max,
    });
    let nemesis_cluster = Arc::new(cluster.view());
    let faults = tokio::spawn(nemesis.run(nemesis_cluster, Arc::clone(&shared)));
    let deadline = Instant::now() + args.duration;
    while Instant::now() < deadline && !interrupted.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ran_for = shared.start.elapsed();
    shared.stop_faults.store(true, Ordering::Relaxed);
    let faults = faults.await.context("the nemesis panicked")?;
    shared.stop_users.store(true, Ordering::Relaxed);
    let mut finished = Vec::with_capacity(users.len());
    for u in users {
        finished.push(u.await.context("a virtual user panicked")?);
    }
    // Every session once more, after the cluster settled.
    let verify: Vec<_> = finished
        .into_iter()
        .map(|u| tokio::spawn(u.verify(Arc::clone(&shared), Duration::from_secs(30))))
        .collect();
    let mut tally = Tally::default();
    for v in verify {
        tally.merge(&v.await.context("a virtual user panicked")?.tally);
    }
    done.store(true, Ordering::Relaxed);
    let _ = bar.await;
    shared.history.event(HistoryEvent::Fault {
        at: shared.since_start(Instant::now()),
        fault: "none",
        process: "",
        phase: "end",
        detail: None,
        error: None,
    });
    if let Err(e) = shared.history.flush() {
        tracing::error!(error = %e, "cannot write the history file");
    }
    // Evidence that the network faults bit: packets dropped per host.
    let net_dropped = match &cluster.net {
        Some(_) => match cluster.net_info().await {
            Ok(info) => info
                .hosts
                .into_iter()
                .map(|h| (h.name, h.dropped))
                .collect(),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot read the network's drop counts");
                Default::default()
            }
        },
        None => Default::default(),
    };
    Ok(report::Summary::new(
        report::Settings {
            users: args.users,
            duration_secs: ran_for.as_secs_f64(),
            write_ratio: args.write_ratio,
            think_ms: args.think.as_secs_f64() * 1e3,
            faults: args.kinds().iter().map(|k| k.name()).collect(),
            interval_ms: args.interval.as_secs_f64() * 1e3,
            max_faults: args.max_faults,
            replicas: cluster.replicas,
            mode: cluster.mode,
            cluster_dir: cluster.dir.clone(),
            history: history_path.to_owned(),
            interrupted: interrupted.load(Ordering::Relaxed),
            net: cluster.net.is_some(),
            directors: cluster.directors.len(),
            drop_route: args.drop_route,
            replay_route: args.replay_route,
        },
        &tally,
        faults,
        net_dropped,
    ))
}
