//! The nemesis: kills (SIGKILL, then a restart), pauses (SIGSTOP, then
//! SIGCONT) and restarts (SIGTERM, then a start) random web servers and
//! stores on a schedule, through the `sticky up` supervisor. With `--net`
//! (a cluster in network namespaces), it also cuts links between them
//! ([`NetKind`]), each held for `--net-hold-min`..`--net-hold-max` and then
//! healed.
//!
//! It stays inside the fault model the invariants are promised for
//! (DESIGN.md, invariant 1: a session survives while its host or one of
//! its store replicas does), because outside it losing a session is not a
//! bug:
//!
//! - at most `--max-faults` processes are faulted at once;
//! - with R >= 2, at most R - 1 stores; with R = 1, a store fault and a
//!   web-server fault never overlap;
//! - at least one non-standby web server keeps running (a web server
//!   isolated or cut from the directors counts as down);
//! - a network fault counts against the process it is about: a store
//!   isolated is a store fault, every other network fault a fault of the
//!   web server it cuts; a process has one fault at a time, except
//!   network faults on different links of it (cut from some stores and
//!   from the directors: [`FaultKind::links`]);
//! - a fault counts as active from its start until the cluster has
//!   *settled* after its healing: every running store is out of its
//!   restart's recovery window, and every web server runs, sees every
//!   running store, and has no session left to re-home (re-copies,
//!   reclaims after a lapse, adoptions of a dead server's sessions), so a
//!   store that came back empty is refilled, and every session is on R
//!   stores again, before the next store fault.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::Rng;
use serde::Serialize;
use sticky_proto::control::ProcessAction;

use super::cluster::{metric, Cluster, Process};
use super::history::HistoryEvent;
use super::shared::Shared;
use crate::up::netns::NetFault;
use crate::up::state::ProcState;

/// A slow link's rate (bits per second) and queue (packets).
const SLOW_RATE: u64 = 500_000;
const SLOW_QUEUE: u32 = 8;
/// A lossy link loses one packet in this many.
const LOSS_ONE_IN: u32 = 8;

/// How often the nemesis looks at the cluster.
const TICK: Duration = Duration::from_millis(100);
/// How often a healed fault's settling is checked.
const SETTLE_POLL: Duration = Duration::from_millis(250);
/// Consecutive settled looks before a fault counts as over (a re-copy
/// starts a moment after a web server sees a store come back).
const SETTLED_LOOKS: u32 = 2;
/// A fault not settled after this is reported and counted as over.
const SETTLE_LIMIT: Duration = Duration::from_secs(60);

/// Which processes a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Target {
    /// Web servers, standby included.
    Web,
    /// Stores `sticky up` started.
    Store,
}

/// A network fault (`sticky chaos --net`), named after what it cuts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub(crate) enum NetKind {
    /// A web server from every other process and from chaos.
    IsolateWeb,
    /// A web server from the director(s) only.
    CutWebDirectors,
    /// A web server from some stores (1 to all but one).
    CutWebStores,
    /// One store from one web server, one direction only.
    CutStoreWebOneWay,
    /// A store from every other process and from chaos.
    IsolateStore,
    /// A slow (500 kbit/s, 8-packet queue) and lossy (1 in 8) link between
    /// a web server and a store or director.
    SlowLink,
    /// One of several directors from one web server.
    CutDirectorWeb,
}

impl NetKind {
    pub(crate) const ALL: [NetKind; 7] = [
        NetKind::IsolateWeb,
        NetKind::CutWebDirectors,
        NetKind::CutWebStores,
        NetKind::CutStoreWebOneWay,
        NetKind::IsolateStore,
        NetKind::SlowLink,
        NetKind::CutDirectorWeb,
    ];

    fn name(self) -> &'static str {
        match self {
            NetKind::IsolateWeb => "isolate-web",
            NetKind::CutWebDirectors => "cut-web-directors",
            NetKind::CutWebStores => "cut-web-stores",
            NetKind::CutStoreWebOneWay => "cut-store-web-one-way",
            NetKind::IsolateStore => "isolate-store",
            NetKind::SlowLink => "slow-link",
            NetKind::CutDirectorWeb => "cut-director-web",
        }
    }
}

/// One kind of fault, as `--faults` names it (`kill-web`...): an action
/// of the supervisor's control API (kill, pause or restart; the healing
/// is [`ProcessAction::heal`]) on a target, or a network fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub(crate) enum FaultKind {
    Proc {
        action: ProcessAction,
        target: Target,
    },
    Net(NetKind),
}

impl FaultKind {
    pub(crate) const ALL: [FaultKind; 6] = [
        FaultKind::new(ProcessAction::Kill, Target::Web),
        FaultKind::new(ProcessAction::Kill, Target::Store),
        FaultKind::new(ProcessAction::Pause, Target::Web),
        FaultKind::new(ProcessAction::Pause, Target::Store),
        FaultKind::new(ProcessAction::Restart, Target::Web),
        FaultKind::new(ProcessAction::Restart, Target::Store),
    ];

    const fn new(action: ProcessAction, target: Target) -> Self {
        Self::Proc { action, target }
    }

    /// Every kind: the process faults, then the network faults.
    fn every() -> Vec<FaultKind> {
        Self::ALL
            .into_iter()
            .chain(NetKind::ALL.map(FaultKind::Net))
            .collect()
    }

    /// Whether it is a network fault.
    pub(crate) fn is_net(self) -> bool {
        matches!(self, FaultKind::Net(_))
    }

    /// Which links of its process it changes, as bits: its isolation (1),
    /// its links to stores (2), to directors (4). Two faults of one
    /// process may overlap only on no common bit, so that healing one
    /// never heals the other (`Net` heals a pair's cuts, slow and lossy
    /// links at once). A process fault changes everything.
    fn links(self) -> u8 {
        const ISOLATION: u8 = 1;
        const STORES: u8 = 2;
        const DIRECTORS: u8 = 4;
        match self {
            FaultKind::Proc { .. } => u8::MAX,
            FaultKind::Net(NetKind::IsolateWeb | NetKind::IsolateStore) => ISOLATION,
            FaultKind::Net(NetKind::CutWebStores | NetKind::CutStoreWebOneWay) => STORES,
            FaultKind::Net(NetKind::CutWebDirectors | NetKind::CutDirectorWeb) => DIRECTORS,
            // Its peer is a store or a director.
            FaultKind::Net(NetKind::SlowLink) => STORES | DIRECTORS,
        }
    }

    /// The kind of process it is counted against.
    fn target(self) -> Target {
        match self {
            FaultKind::Proc { target, .. } => target,
            FaultKind::Net(NetKind::IsolateStore) => Target::Store,
            FaultKind::Net(_) => Target::Web,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        let (action, target) = match self {
            FaultKind::Net(n) => return n.name(),
            FaultKind::Proc { action, target } => (action, target),
        };
        match (action, target) {
            (ProcessAction::Kill, Target::Web) => "kill-web",
            (ProcessAction::Kill, Target::Store) => "kill-store",
            (ProcessAction::Pause, Target::Web) => "pause-web",
            (ProcessAction::Pause, Target::Store) => "pause-store",
            (ProcessAction::Restart, Target::Web) => "restart-web",
            (ProcessAction::Restart, Target::Store) => "restart-store",
            // A resume heals a pause; it is no fault of its own.
            (ProcessAction::Resume, Target::Web) => "resume-web",
            (ProcessAction::Resume, Target::Store) => "resume-store",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        Self::every().into_iter().find(|k| k.name() == s.trim())
    }
}

/// The fault kinds of a run, as `--faults` gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FaultList(pub(crate) Vec<FaultKind>);

/// Parses `--faults`: a comma-separated list of fault kinds, or `all`
/// (every kind; the network faults only apply with `--net`).
pub(crate) fn parse_faults(text: &str) -> Result<FaultList, String> {
    if text.trim() == "all" {
        return Ok(FaultList(FaultKind::every()));
    }
    let mut kinds = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let kind = FaultKind::parse(part).ok_or_else(|| {
            format!(
                "unknown fault {part:?}: use all, or some of {}",
                FaultKind::every()
                    .into_iter()
                    .map(FaultKind::name)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    if kinds.is_empty() {
        return Err("--faults names no fault".into());
    }
    Ok(FaultList(kinds))
}

/// The nemesis's settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) kinds: Vec<FaultKind>,
    /// Mean time between fault starts (each wait is 0.5x to 1.5x this).
    pub(crate) interval: Duration,
    /// How long a killed or paused process stays down (uniform in range).
    pub(crate) down_min: Duration,
    pub(crate) down_max: Duration,
    pub(crate) max_faults: usize,
    pub(crate) replicas: usize,
    /// How long a network fault is held (uniform in range).
    pub(crate) net_hold_min: Duration,
    pub(crate) net_hold_max: Duration,
}

/// A fault from its start until the cluster settled after it.
#[derive(Debug, Clone)]
struct Active {
    kind: FaultKind,
    /// The process it is counted against.
    name: String,
    heal_at: Instant,
    healed: Option<Instant>,
    settled_looks: u32,
    /// A network fault's healing requests.
    net_heal: Vec<NetFault>,
    /// A network fault's links, for the history and the progress line.
    detail: String,
}

/// What the nemesis did, for the summary.
#[derive(Debug, Default, Clone, Serialize)]
pub(crate) struct Tally {
    /// Faults started, by kind name.
    pub(crate) started: std::collections::BTreeMap<&'static str, u64>,
    /// Faults whose action the supervisor refused or failed.
    pub(crate) errors: u64,
    /// Faults after which the cluster did not settle within the limit.
    pub(crate) unsettled: u64,
    /// Longest time from healing to settled, in milliseconds.
    pub(crate) max_settle_ms: u64,
    /// Most faults active at once.
    pub(crate) max_concurrent: usize,
}

impl Tally {
    pub(crate) fn total(&self) -> u64 {
        self.started.values().sum()
    }
}

/// Whether a process of `role` is hit by faults on `target`.
fn role_matches(role: &str, target: Target) -> bool {
    match target {
        Target::Web => role == "web" || role == "standby",
        Target::Store => role == "store",
    }
}

/// The processes a new fault of `kind` may hit now, under the rules in
/// the module doc.
fn candidates<'a>(
    kind: FaultKind,
    procs: &'a [Process],
    active: &[Active],
    settings: &Settings,
) -> Vec<&'a Process> {
    if active.len() >= settings.max_faults {
        return Vec::new();
    }
    let active_of = |t: Target| active.iter().filter(|a| a.kind.target() == t).count();
    let (stores, webs) = (active_of(Target::Store), active_of(Target::Web));
    let allowed = match kind.target() {
        Target::Store if settings.replicas <= 1 => stores == 0 && webs == 0,
        Target::Store => stores + 1 < settings.replicas.max(1),
        Target::Web if settings.replicas <= 1 => stores == 0,
        Target::Web => true,
    };
    if !allowed || !applicable(kind, procs) {
        return Vec::new();
    }
    let faulted = |p: &Process| active.iter().any(|a| a.name == p.name);
    // Network faults on different links of a process may overlap (a web
    // server cut from some stores, then from the directors too); anything
    // else waits for the process's fault to be over.
    let busy = |p: &Process| {
        active
            .iter()
            .any(|a| a.name == p.name && a.kind.links() & kind.links() != 0)
    };
    let running_web = procs
        .iter()
        .filter(|p| p.role == "web" && p.state == ProcState::Running && !faulted(p))
        .count();
    procs
        .iter()
        .filter(|p| role_matches(&p.role, kind.target()))
        .filter(|p| p.state == ProcState::Running && !busy(p))
        // Keep a non-standby web server unfaulted for new clients (one
        // already faulted may get another fault on other links).
        .filter(|p| p.role != "web" || faulted(p) || running_web > 1)
        .collect()
}

/// Whether the cluster has what a fault of `kind` needs besides its
/// victim: a store for a web server's links to stores, two directors to
/// cut one of them.
fn applicable(kind: FaultKind, procs: &[Process]) -> bool {
    let count = |role: &str| procs.iter().filter(|p| p.role == role).count();
    match kind {
        FaultKind::Proc { target, .. } => procs.iter().any(|p| role_matches(&p.role, target)),
        FaultKind::Net(NetKind::CutDirectorWeb) => count("director") >= 2,
        FaultKind::Net(NetKind::CutWebStores | NetKind::CutStoreWebOneWay) => count("store") >= 1,
        FaultKind::Net(NetKind::IsolateStore) => count("store") >= 1,
        FaultKind::Net(_) => count("web") + count("standby") >= 1,
    }
}

/// The requests that start a network fault of `kind` on `victim` and those
/// that heal it, and its links as text.
fn net_plan(
    kind: NetKind,
    victim: &str,
    procs: &[Process],
    rng: &mut impl Rng,
) -> (Vec<NetFault>, Vec<NetFault>, String) {
    let of = |role: &str| -> Vec<String> {
        procs
            .iter()
            .filter(|p| p.role == role)
            .map(|p| p.name.clone())
            .collect()
    };
    fn pick(names: &[String], rng: &mut impl Rng) -> String {
        names
            .get(rng.random_range(0..names.len().max(1)))
            .cloned()
            .unwrap_or_default()
    }
    let v = victim.to_owned();
    let cut = |a: &str, b: &str| NetFault::Cut {
        a: a.to_owned(),
        b: b.to_owned(),
    };
    let heal = |a: &str, b: &str| NetFault::Heal {
        a: a.to_owned(),
        b: b.to_owned(),
    };
    match kind {
        NetKind::IsolateWeb | NetKind::IsolateStore => (
            vec![NetFault::Isolate { host: v.clone() }],
            vec![NetFault::HealIsolation { host: v.clone() }],
            format!("{v} isolated"),
        ),
        NetKind::CutWebDirectors => {
            let ds = of("director");
            (
                ds.iter().map(|d| cut(&v, d)).collect(),
                ds.iter().map(|d| heal(&v, d)).collect(),
                format!("{v} -x- {}", ds.join(",")),
            )
        }
        NetKind::CutWebStores => {
            let mut stores = of("store");
            stores.shuffle(rng);
            // Some stores: one up to all but one (all of them, with one).
            let most = stores.len().saturating_sub(1).max(1);
            stores.truncate(rng.random_range(1..=most));
            (
                stores.iter().map(|s| cut(&v, s)).collect(),
                stores.iter().map(|s| heal(&v, s)).collect(),
                format!("{v} -x- {}", stores.join(",")),
            )
        }
        NetKind::CutStoreWebOneWay => {
            let store = pick(&of("store"), rng);
            let (from, to) = if rng.random::<bool>() {
                (store, v)
            } else {
                (v, store)
            };
            (
                vec![NetFault::CutOneWay {
                    from: from.clone(),
                    to: to.clone(),
                }],
                vec![NetFault::HealOneWay {
                    from: from.clone(),
                    to: to.clone(),
                }],
                format!("{from} -x-> {to}"),
            )
        }
        NetKind::SlowLink => {
            let mut peers = of("store");
            peers.extend(of("director"));
            let peer = pick(&peers, rng);
            (
                vec![
                    NetFault::Slow {
                        a: v.clone(),
                        b: peer.clone(),
                        rate_bits: SLOW_RATE,
                        queue: SLOW_QUEUE,
                    },
                    NetFault::Lossy {
                        a: v.clone(),
                        b: peer.clone(),
                        one_in: LOSS_ONE_IN,
                    },
                ],
                vec![heal(&v, &peer)],
                format!("{v} ~slow,lossy~ {peer}"),
            )
        }
        NetKind::CutDirectorWeb => {
            let d = pick(&of("director"), rng);
            (
                vec![cut(&d, &v)],
                vec![heal(&d, &v)],
                format!("{d} -x- {v}"),
            )
        }
    }
}

/// The nemesis's view of the cluster and its faults.
pub(crate) struct Nemesis {
    settings: Settings,
    active: Vec<Active>,
    /// The kinds not yet used in this round: every kind comes once per
    /// round, in random order, so a short run still has each kind.
    deck: Vec<FaultKind>,
    pub(crate) tally: Tally,
}

impl Nemesis {
    pub(crate) fn new(settings: Settings) -> Self {
        Self {
            settings,
            active: Vec::new(),
            deck: Vec::new(),
            tally: Tally::default(),
        }
    }

    fn down_time(&self, rng: &mut impl Rng) -> Duration {
        let (lo, hi) = (self.settings.down_min, self.settings.down_max);
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo).mul_f64(rng.random::<f64>())
    }

    fn hold_time(&self, rng: &mut impl Rng) -> Duration {
        let (lo, hi) = (self.settings.net_hold_min, self.settings.net_hold_max);
        if hi <= lo {
            return lo;
        }
        lo + (hi - lo).mul_f64(rng.random::<f64>())
    }

    fn next_gap(&self, rng: &mut impl Rng) -> Duration {
        self.settings.interval.mul_f64(0.5 + rng.random::<f64>())
    }

    /// Starts one fault if the rules allow one now; true if it did.
    async fn start_one(
        &mut self,
        cluster: &Cluster,
        shared: &Shared,
        procs: &[Process],
        rng: &mut impl Rng,
    ) -> bool {
        if self.deck.is_empty() {
            // Only kinds with something to hit (a cluster on external
            // stores has no store process), or the round never ends.
            self.deck = self
                .settings
                .kinds
                .iter()
                .copied()
                .filter(|k| applicable(*k, procs))
                .collect();
            if self.deck.is_empty() {
                return false;
            }
            self.deck.shuffle(rng);
        }
        // The first kind of the round that the rules allow now.
        for d in 0..self.deck.len() {
            let kind = self.deck[d];
            let options = candidates(kind, procs, &self.active, &self.settings);
            if options.is_empty() {
                continue;
            }
            self.deck.remove(d);
            let name = options[rng.random_range(0..options.len())].name.clone();
            let at = Instant::now();
            let (result, net_heal, detail, down) = match kind {
                FaultKind::Proc { action, target } => {
                    if action == ProcessAction::Kill && target == Target::Web {
                        // Before the kill: a user answered by the process
                        // after this moment must not count as moved.
                        shared.failover.record_kill(&name, at);
                    }
                    let down = match action {
                        ProcessAction::Restart => Duration::ZERO,
                        _ => self.down_time(rng),
                    };
                    let result = cluster.act(&name, action).await;
                    (result, Vec::new(), String::new(), down)
                }
                FaultKind::Net(net) => {
                    let (start, heal, detail) = net_plan(net, &name, procs, rng);
                    let mut result = Ok(());
                    for f in &start {
                        result = cluster.net_fault(f).await;
                        if result.is_err() {
                            break;
                        }
                    }
                    if result.is_err() {
                        // Undo what was applied; a heal of what is not
                        // there changes nothing.
                        for h in &heal {
                            let _ = cluster.net_fault(h).await;
                        }
                    }
                    let down = self.hold_time(rng);
                    (result, heal, detail, down)
                }
            };
            shared.history.event(HistoryEvent::Fault {
                at: shared.since_start(at),
                fault: kind.name(),
                process: &name,
                phase: "start",
                detail: (!detail.is_empty()).then_some(detail.as_str()),
                error: result.as_ref().err().map(|e| format!("{e:#}")),
            });
            if let Err(e) = result {
                tracing::warn!(fault = kind.name(), process = %name, error = %format!("{e:#}"), "fault not carried out");
                self.tally.errors += 1;
                return false;
            }
            *self.tally.started.entry(kind.name()).or_default() += 1;
            let restart = matches!(
                kind,
                FaultKind::Proc {
                    action: ProcessAction::Restart,
                    ..
                }
            );
            self.active.push(Active {
                kind,
                name: name.clone(),
                heal_at: at + down,
                healed: restart.then(Instant::now),
                settled_looks: 0,
                net_heal,
                detail,
            });
            self.tally.max_concurrent = self.tally.max_concurrent.max(self.active.len());
            shared.set_faults(self.describe());
            return true;
        }
        false
    }

    /// Heals the faults that are due (all of them if `all`).
    async fn heal_due(&mut self, cluster: &Cluster, shared: &Shared, all: bool) {
        let now = Instant::now();
        for i in 0..self.active.len() {
            let a = &self.active[i];
            if a.healed.is_some() || (!all && a.heal_at > now) {
                continue;
            }
            let result = match a.kind {
                FaultKind::Proc { action, .. } => {
                    let Some(action) = action.heal() else {
                        continue;
                    };
                    cluster.act(&a.name, action).await
                }
                FaultKind::Net(_) => {
                    let mut result = Ok(());
                    for h in &a.net_heal {
                        // Each heal on its own: one failing does not keep
                        // the others cut.
                        if let Err(e) = cluster.net_fault(h).await {
                            result = Err(e);
                        }
                    }
                    result
                }
            };
            shared.history.event(HistoryEvent::Fault {
                at: shared.since_start(Instant::now()),
                fault: a.kind.name(),
                process: &a.name,
                phase: "heal",
                detail: (!a.detail.is_empty()).then_some(a.detail.as_str()),
                error: result.as_ref().err().map(|e| format!("{e:#}")),
            });
            if let Err(e) = result {
                tracing::warn!(process = %a.name, error = %format!("{e:#}"), "healing failed; will retry");
                continue;
            }
            self.active[i].healed = Some(Instant::now());
        }
        shared.set_faults(self.describe());
    }

    /// Drops the healed faults after which the cluster has settled.
    async fn check_settled(&mut self, cluster: &Cluster, shared: &Shared, procs: &[Process]) {
        if !self.active.iter().any(|a| a.healed.is_some()) {
            return;
        }
        let settled = cluster_settled(cluster, procs).await;
        let why_not = settled.as_ref().err().cloned();
        let settled = settled.is_ok();
        let now = Instant::now();
        let mut kept = Vec::with_capacity(self.active.len());
        for mut a in std::mem::take(&mut self.active) {
            let Some(healed) = a.healed else {
                kept.push(a);
                continue;
            };
            let running = procs
                .iter()
                .any(|p| p.name == a.name && p.state == ProcState::Running);
            a.settled_looks = if running && settled {
                a.settled_looks + 1
            } else {
                0
            };
            let waited = now.duration_since(healed);
            if a.settled_looks >= SETTLED_LOOKS || waited > SETTLE_LIMIT {
                if waited > SETTLE_LIMIT {
                    self.tally.unsettled += 1;
                    tracing::warn!(
                        process = %a.name,
                        fault = a.kind.name(),
                        why = why_not.as_deref().unwrap_or("the fault's process is not running"),
                        "the cluster did not settle after this fault within {SETTLE_LIMIT:?}"
                    );
                }
                let ms = u64::try_from(waited.as_millis()).unwrap_or(u64::MAX);
                self.tally.max_settle_ms = self.tally.max_settle_ms.max(ms);
                shared.history.event(HistoryEvent::Fault {
                    at: shared.since_start(now),
                    fault: a.kind.name(),
                    process: &a.name,
                    phase: "settled",
                    detail: (!a.detail.is_empty()).then_some(a.detail.as_str()),
                    error: None,
                });
            } else {
                kept.push(a);
            }
        }
        self.active = kept;
        shared.set_faults(self.describe());
    }

    /// The active faults, for the progress line: `kill ws2, pause s1`.
    fn describe(&self) -> String {
        self.active
            .iter()
            .map(|a| {
                let what = match (a.kind, a.healed.is_some()) {
                    (_, true) => "settling",
                    (FaultKind::Net(_), false) => return a.detail.clone(),
                    (FaultKind::Proc { action, .. }, false) => match action {
                        ProcessAction::Kill => "killed",
                        ProcessAction::Pause => "paused",
                        ProcessAction::Restart => "restarting",
                        ProcessAction::Resume => "resumed",
                    },
                };
                format!("{} {what}", a.name)
            })
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Injects faults until `shared.stop_faults` is set, then heals every
    /// fault and waits for the cluster to settle.
    pub(crate) async fn run(mut self, cluster: Arc<Cluster>, shared: Arc<Shared>) -> Tally {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::from_rng(&mut rand::rng());
        let mut next_start = Instant::now() + self.next_gap(&mut rng);
        let mut last_settle_look = Instant::now();
        let mut procs: Vec<Process> = Vec::new();
        loop {
            let stopping = shared
                .stop_faults
                .load(std::sync::atomic::Ordering::Relaxed);
            self.heal_due(&cluster, &shared, stopping).await;
            let now = Instant::now();
            let want_start = !stopping && now >= next_start;
            let want_settle = now.duration_since(last_settle_look) >= SETTLE_POLL
                && self.active.iter().any(|a| a.healed.is_some());
            if want_start || want_settle {
                match cluster.processes().await {
                    Ok(p) => procs = p,
                    Err(e) => {
                        tracing::warn!(error = %format!("{e:#}"), "cannot list the cluster's processes")
                    }
                }
            }
            if want_settle {
                last_settle_look = Instant::now();
                self.check_settled(&cluster, &shared, &procs).await;
            }
            if want_start && self.start_one(&cluster, &shared, &procs, &mut rng).await {
                next_start = Instant::now() + self.next_gap(&mut rng);
            }
            if stopping && self.active.is_empty() {
                if self.settings.kinds.iter().any(|k| k.is_net()) {
                    // Every fault was healed one by one; this makes sure.
                    if let Err(e) = cluster.net_fault(&NetFault::HealAll).await {
                        tracing::warn!(error = %format!("{e:#}"), "healing the network failed");
                        self.tally.errors += 1;
                    }
                }
                break;
            }
            tokio::time::sleep(TICK).await;
        }
        self.tally
    }
}

/// True if every running store is out of its recovery window, and every
/// web server runs, sees as many live stores as run, and has no session
/// left to re-home: none re-copying, reclaiming what a
/// lapse dropped, or adopting a dead server's sessions. A paused or
/// stopped web server holds copies nobody else can re-copy (or has
/// orphaned sessions others have not adopted yet), so no fault settles
/// before it is back and done: else a store fault that settles while
/// a host is paused lets the next one take a session's last replica.
async fn cluster_settled(cluster: &Cluster, procs: &[Process]) -> Result<(), String> {
    let stores_running = procs
        .iter()
        .filter(|p| p.role == "store" && p.state == ProcState::Running)
        .count();
    // A restarted store is not whole before its recovery window ends: it
    // refuses the kills and prepares of takeovers until then, so a second
    // store fault meanwhile would be two at once.
    for p in procs
        .iter()
        .filter(|p| p.role == "store" && p.state == ProcState::Running)
    {
        if !cluster.store_whole(p.addr).await {
            return Err(format!(
                "{} is in its recovery window or does not answer",
                p.name
            ));
        }
    }
    // With external stores (not started by `up`), the count is not known.
    let expect = procs
        .iter()
        .any(|p| p.role == "store")
        .then_some(stores_running as f64);
    for p in procs.iter().filter(|p| role_matches(&p.role, Target::Web)) {
        if p.state != ProcState::Running {
            return Err(format!("{} is {}", p.name, p.state.as_str()));
        }
        let text = cluster
            .web_metrics(p.addr)
            .await
            .map_err(|e| format!("{}'s metrics: {e:#}", p.name))?;
        for m in [
            "sticky_recopy_pending",
            "sticky_reclaim_pending",
            "sticky_adoption_pending",
        ] {
            let pending = metric(&text, m).unwrap_or(0.0);
            if pending != 0.0 {
                return Err(format!("{} has {m} {pending}", p.name));
            }
        }
        if let Some(n) = expect {
            let live = metric(&text, "sticky_stores_live");
            if live != Some(n) {
                return Err(format!(
                    "{} sees {} live stores of {n} running",
                    p.name,
                    live.map_or_else(|| "no count of".to_owned(), |l| l.to_string())
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(name: &str, role: &str) -> Process {
        Process {
            name: name.into(),
            role: role.into(),
            addr: "127.0.0.1:1".parse().unwrap_or_else(|_| unreachable!()),
            pid: 1,
            state: ProcState::Running,
            exit: None,
            restarts: 0,
            log: "x.log".into(),
        }
    }

    fn cluster() -> Vec<Process> {
        vec![
            proc("director", "director"),
            proc("ws1", "web"),
            proc("ws2", "web"),
            proc("ws3", "standby"),
            proc("s1", "store"),
            proc("s2", "store"),
            proc("s3", "store"),
        ]
    }

    fn settings(replicas: usize, max_faults: usize) -> Settings {
        Settings {
            kinds: FaultKind::ALL.to_vec(),
            interval: Duration::from_secs(1),
            down_min: Duration::from_secs(1),
            down_max: Duration::from_secs(2),
            max_faults,
            replicas,
            net_hold_min: Duration::from_secs(3),
            net_hold_max: Duration::from_secs(8),
        }
    }

    fn active(kind: FaultKind, name: &str) -> Active {
        Active {
            kind,
            name: name.into(),
            heal_at: Instant::now(),
            healed: None,
            settled_looks: 0,
            net_heal: Vec::new(),
            detail: String::new(),
        }
    }

    fn names(c: &[&Process]) -> Vec<String> {
        c.iter().map(|p| p.name.clone()).collect()
    }

    const KILL_WEB: FaultKind = FaultKind::new(ProcessAction::Kill, Target::Web);
    const KILL_STORE: FaultKind = FaultKind::new(ProcessAction::Kill, Target::Store);

    #[test]
    fn fault_names_parse() {
        assert_eq!(parse_faults("all").map(|k| k.0.len()), Ok(13));
        assert_eq!(
            parse_faults("isolate-web,cut-director-web"),
            Ok(FaultList(vec![
                FaultKind::Net(NetKind::IsolateWeb),
                FaultKind::Net(NetKind::CutDirectorWeb)
            ]))
        );
        assert_eq!(
            parse_faults("kill-web, pause-store,kill-web"),
            Ok(FaultList(vec![
                KILL_WEB,
                FaultKind::new(ProcessAction::Pause, Target::Store)
            ]))
        );
        assert!(parse_faults("kill-director").is_err());
        assert!(parse_faults(",").is_err());
    }

    #[test]
    fn never_the_director_and_never_the_last_web_server() {
        let procs = cluster();
        let s = settings(2, 3);
        assert_eq!(
            names(&candidates(KILL_WEB, &procs, &[], &s)),
            ["ws1", "ws2", "ws3"]
        );
        let one_down = [active(KILL_WEB, "ws1")];
        // ws2 is the last non-standby web server: only the standby is left.
        assert_eq!(names(&candidates(KILL_WEB, &procs, &one_down, &s)), ["ws3"]);
    }

    #[test]
    fn with_two_replicas_one_store_at_a_time_alongside_web_faults() {
        let procs = cluster();
        let s = settings(2, 3);
        let store_down = [active(KILL_STORE, "s1")];
        assert!(candidates(KILL_STORE, &procs, &store_down, &s).is_empty());
        assert_eq!(
            names(&candidates(KILL_WEB, &procs, &store_down, &s)),
            ["ws1", "ws2", "ws3"]
        );
        let web_down = [active(KILL_WEB, "ws1")];
        assert_eq!(
            names(&candidates(KILL_STORE, &procs, &web_down, &s)),
            ["s1", "s2", "s3"]
        );
    }

    #[test]
    fn with_one_replica_store_and_web_faults_never_overlap() {
        let procs = cluster();
        let s = settings(1, 3);
        assert!(candidates(KILL_WEB, &procs, &[active(KILL_STORE, "s1")], &s).is_empty());
        assert!(candidates(KILL_STORE, &procs, &[active(KILL_WEB, "ws1")], &s).is_empty());
        assert_eq!(candidates(KILL_STORE, &procs, &[], &s).len(), 3);
    }

    fn net_cluster() -> Vec<Process> {
        let mut procs = cluster();
        procs.push(proc("director2", "director"));
        procs
    }

    #[test]
    fn every_network_fault_is_healed_by_its_own_requests() {
        let procs = net_cluster();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(7);
        for kind in NetKind::ALL {
            for _ in 0..20 {
                let victim = if kind == NetKind::IsolateStore {
                    "s2"
                } else {
                    "ws1"
                };
                let (start, heal, detail) = net_plan(kind, victim, &procs, &mut rng);
                assert!(!start.is_empty() && !heal.is_empty(), "{kind:?}");
                assert!(detail.contains(victim), "{kind:?}: {detail}");
                let touched = |f: &NetFault| match f {
                    NetFault::Cut { a, b }
                    | NetFault::Slow { a, b, .. }
                    | NetFault::Lossy { a, b, .. }
                    | NetFault::Heal { a, b } => vec![a.clone(), b.clone()],
                    NetFault::CutOneWay { from, to } | NetFault::HealOneWay { from, to } => {
                        vec![from.clone(), to.clone()]
                    }
                    NetFault::Isolate { host } | NetFault::HealIsolation { host } => {
                        vec![host.clone()]
                    }
                    NetFault::HealAll => vec![],
                };
                for f in &start {
                    assert!(touched(f).iter().any(|h| h == victim), "{f:?}");
                    // Each start is undone by one of the heals.
                    let mut pair = touched(f);
                    pair.sort();
                    assert!(
                        heal.iter().any(|h| {
                            let mut p = touched(h);
                            p.sort();
                            p == pair
                        }),
                        "{f:?} not healed by {heal:?}"
                    );
                }
                match kind {
                    NetKind::CutWebStores => {
                        // Some stores, never all three.
                        assert!((1..=2).contains(&start.len()), "{start:?}");
                    }
                    NetKind::CutWebDirectors => assert_eq!(start.len(), 2, "both directors"),
                    NetKind::CutStoreWebOneWay => {
                        assert!(matches!(start[0], NetFault::CutOneWay { .. }));
                    }
                    NetKind::SlowLink => assert_eq!(start.len(), 2, "slow and lossy"),
                    _ => assert_eq!(start.len(), 1),
                }
            }
        }
    }

    #[test]
    fn one_of_two_directors_is_cut_only_when_there_are_two() {
        let kind = FaultKind::Net(NetKind::CutDirectorWeb);
        assert!(!applicable(kind, &cluster()));
        assert!(applicable(kind, &net_cluster()));
        let s = settings(2, 2);
        assert!(candidates(kind, &cluster(), &[], &s).is_empty());
        assert_eq!(
            names(&candidates(kind, &net_cluster(), &[], &s)),
            ["ws1", "ws2", "ws3"]
        );
        // An isolated store counts as a store fault: with R=2, one at a time.
        let iso = FaultKind::Net(NetKind::IsolateStore);
        assert!(candidates(iso, &net_cluster(), &[active(KILL_STORE, "s1")], &s).is_empty());
        // A web server cut from the directors counts as down.
        let cut = FaultKind::Net(NetKind::CutWebDirectors);
        assert_eq!(
            names(&candidates(
                KILL_WEB,
                &net_cluster(),
                &[active(cut, "ws1")],
                &s
            )),
            ["ws3"]
        );
    }

    #[test]
    fn network_faults_on_other_links_of_a_server_overlap_and_nothing_else_does() {
        let procs = net_cluster();
        let s = settings(2, 3);
        let cut_stores = FaultKind::Net(NetKind::CutWebStores);
        let cut_directors = FaultKind::Net(NetKind::CutWebDirectors);
        let isolate = FaultKind::Net(NetKind::IsolateWeb);
        let slow = FaultKind::Net(NetKind::SlowLink);
        let on_ws1 = [active(cut_stores, "ws1")];
        // ws1 cut from stores may also be cut from the directors, or
        // isolated, but not slowed towards a store, nor killed.
        for (kind, has_ws1) in [
            (cut_directors, true),
            (isolate, true),
            (slow, false),
            (cut_stores, false),
            (KILL_WEB, false),
        ] {
            let c = names(&candidates(kind, &procs, &on_ws1, &s));
            assert_eq!(c.contains(&"ws1".to_owned()), has_ws1, "{kind:?}: {c:?}");
        }
        // A killed server gets no network fault on top.
        let killed = [active(KILL_WEB, "ws2")];
        assert!(!names(&candidates(isolate, &procs, &killed, &s)).contains(&"ws2".to_owned()));
    }

    #[test]
    fn max_faults_caps_the_active_ones() {
        let procs = cluster();
        let s = settings(2, 1);
        assert!(candidates(KILL_WEB, &procs, &[active(KILL_STORE, "s1")], &s).is_empty());
        let mut procs = procs;
        procs[1].state = ProcState::Exited;
        let c = candidates(KILL_WEB, &procs, &[], &settings(2, 2));
        assert_eq!(names(&c), ["ws3"], "an exited process is not hit again");
    }
}
