//! The summary of a chaos run: a table for people, JSON for scripts.

use std::fmt::Write as _;
use std::path::PathBuf;

use hdrhistogram::Histogram;
use serde::Serialize;
use sticky_config::Mode;

use super::nemesis;
use super::user::{OpCounts, Tally};

/// How the run was set up.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Settings {
    pub(crate) users: usize,
    pub(crate) duration_secs: f64,
    pub(crate) write_ratio: f64,
    pub(crate) think_ms: f64,
    pub(crate) faults: Vec<&'static str>,
    pub(crate) interval_ms: f64,
    pub(crate) max_faults: usize,
    pub(crate) replicas: usize,
    pub(crate) mode: Mode,
    pub(crate) cluster_dir: PathBuf,
    pub(crate) history: PathBuf,
    pub(crate) interrupted: bool,
    /// Whether the cluster ran in network namespaces (`--net`).
    pub(crate) net: bool,
    /// Directors side by side.
    pub(crate) directors: usize,
    /// The client faults' rates.
    pub(crate) drop_route: f64,
    pub(crate) replay_route: f64,
}

/// Percentiles of one histogram, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub(crate) struct Latency {
    pub(crate) count: u64,
    pub(crate) p50_ms: f64,
    pub(crate) p99_ms: f64,
    pub(crate) max_ms: f64,
}

/// `a / b`, or 0 when `b` is 0 (nothing measured).
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else {
        0.0
    }
}

impl Latency {
    fn of(h: &Histogram<u64>) -> Self {
        if h.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1e3;
        Self {
            count: h.len(),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            max_ms: ms(h.max()),
        }
    }

    fn cells(&self) -> String {
        if self.count == 0 {
            return format!("{:>8} {:>9} {:>9} {:>9}", 0, "-", "-", "-");
        }
        format!(
            "{:>8} {:>9.2} {:>9.2} {:>9.2}",
            self.count, self.p50_ms, self.p99_ms, self.max_ms
        )
    }
}

/// The run's results.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Summary {
    pub(crate) settings: Settings,
    pub(crate) increments: OpCounts,
    pub(crate) reads: OpCounts,
    pub(crate) failures: std::collections::BTreeMap<&'static str, u64>,
    pub(crate) faults: nemesis::Tally,
    pub(crate) faults_total: u64,
    /// Anomalies by kind.
    pub(crate) anomalies: std::collections::BTreeMap<&'static str, u64>,
    pub(crate) anomalies_per_fault: f64,
    /// Acknowledged increments lost, in all.
    pub(crate) lost_increments: u64,
    /// Sessions whose closing read never succeeded.
    pub(crate) unverified: u64,
    /// Successful operations served from the cache and from the stores.
    pub(crate) cached: Latency,
    pub(crate) loaded: Latency,
    /// From a kill -9 of a session's web server to its first success,
    /// for sessions served until the kill (`user::served_until`).
    pub(crate) failover: Latency,
    /// The same for sessions that were not: failing already, or their
    /// user's operation hung on another fault (their wait is that fault's).
    pub(crate) failover_failing: Latency,
    /// That first success's own latency, when it was a takeover.
    pub(crate) takeover: Latency,
    /// Lost writes dated against their server's kill: how long before the
    /// kill they had been acknowledged.
    pub(crate) loss_window: Latency,
    /// What the users' client faults did.
    pub(crate) client: super::user::ClientTally,
    /// With `--net`: packets dropped on their way to each host, by every
    /// network fault (the evidence that they bit).
    pub(crate) net_dropped: std::collections::BTreeMap<String, u64>,
}

impl Summary {
    pub(crate) fn new(
        settings: Settings,
        t: &Tally,
        faults: nemesis::Tally,
        net_dropped: std::collections::BTreeMap<String, u64>,
    ) -> Self {
        let total = faults.total();
        let anomalies = t.anomaly_count();
        Self {
            settings,
            increments: t.increments,
            reads: t.reads,
            failures: t.failures.clone(),
            faults_total: total,
            faults,
            anomalies: t.anomalies.clone(),
            anomalies_per_fault: if total == 0 {
                0.0
            } else {
                anomalies as f64 / total as f64
            },
            lost_increments: t.lost_increments,
            unverified: t.unverified,
            cached: Latency::of(&t.cached),
            loaded: Latency::of(&t.loaded),
            failover: Latency::of(&t.failover),
            failover_failing: Latency::of(&t.failover_failing),
            takeover: Latency::of(&t.takeover),
            loss_window: Latency::of(&t.loss_window),
            client: t.client.clone(),
            net_dropped,
        }
    }

    pub(crate) fn anomaly_count(&self) -> u64 {
        self.anomalies.values().sum::<u64>() + self.unverified
    }

    pub(crate) fn ok_operations(&self) -> u64 {
        self.increments.ok + self.reads.ok
    }

    pub(crate) fn table(&self) -> String {
        let s = &self.settings;
        let mut t = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            t,
            "\nchaos: {:.1} s, {} users, {} mode, R={}, faults every ~{:.1} s ({}), at most {} at once{}",
            s.duration_secs,
            s.users,
            s.mode,
            s.replicas,
            s.interval_ms / 1e3,
            s.faults.join(","),
            s.max_faults,
            if s.interrupted { " (interrupted)" } else { "" }
        );
        let _ = writeln!(
            t,
            "\n{:<12} {:>9} {:>9} {:>9}",
            "operations", "ok", "failed", "unknown"
        );
        for (name, c) in [("increments", &self.increments), ("reads", &self.reads)] {
            let _ = writeln!(t, "{name:<12} {:>9} {:>9} {:>9}", c.ok, c.failed, c.unknown);
        }
        if !self.failures.is_empty() {
            let list: Vec<String> = self
                .failures
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(t, "not ok by kind: {}", list.join(", "));
        }
        let f = &self.faults;
        let list: Vec<String> = f.started.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            t,
            "\nfaults: {} ({}); at most {} at once; longest settle {:.1} s; {} not settled; {} refused",
            self.faults_total,
            if list.is_empty() { "none".into() } else { list.join(", ") },
            f.max_concurrent,
            f.max_settle_ms as f64 / 1e3,
            f.unsettled,
            f.errors
        );
        if s.net {
            let list: Vec<String> = self
                .net_dropped
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            let _ = writeln!(
                t,
                "network: every process in its own namespace; packets dropped on their way to: {}",
                list.join(", ")
            );
        }
        let c = &self.client;
        let _ = writeln!(
            t,
            "clients: {} requests without the route cookie, {} with an old one naming another host; {} director(s), {} switches between them (operations per director: {})",
            c.dropped_route,
            c.replayed_route,
            s.directors,
            c.director_switches,
            c.by_director
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            t,
            "\n{:<34} {:>8} {:>9} {:>9} {:>9}",
            "latency of successes (ms)", "count", "p50", "p99", "max"
        );
        let _ = writeln!(
            t,
            "{:<34} {}",
            "session in the server's cache",
            self.cached.cells()
        );
        let _ = writeln!(
            t,
            "{:<34} {}",
            "session loaded from the stores",
            self.loaded.cells()
        );
        let _ = writeln!(
            t,
            "{:<34} {}",
            "kill -9 to a moved session's 1st ok",
            self.failover.cells()
        );
        if self.failover_failing.count > 0 {
            let _ = writeln!(
                t,
                "{:<34} {}",
                "the same, not served before the kill",
                self.failover_failing.cells()
            );
        }
        let _ = writeln!(
            t,
            "{:<34} {}",
            "that 1st ok, a takeover",
            self.takeover.cells()
        );
        if self.cached.count > 0 && self.takeover.count > 0 {
            let _ = writeln!(
                t,
                "a takeover after a kill costs {:+.2} ms at p50 and {:+.2} ms at p99 over a cached request ({:.2}x and {:.2}x its latency)",
                self.takeover.p50_ms - self.cached.p50_ms,
                self.takeover.p99_ms - self.cached.p99_ms,
                ratio(self.takeover.p50_ms, self.cached.p50_ms),
                ratio(self.takeover.p99_ms, self.cached.p99_ms)
            );
        }
        if self.faults_total == 0 {
            let _ = writeln!(
                t,
                "WARNING: no fault was injected (no process to hit, or the rules never allowed one): this run proves nothing about failures"
            );
        }
        let _ = writeln!(t, "\nanomalies:");
        for (k, v) in &self.anomalies {
            let _ = writeln!(t, "  {k:<18} {v}");
        }
        let _ = writeln!(t, "  {:<18} {}", "unverified", self.unverified);
        if self.lost_increments > 0 || !s.mode.waits_for_replicas() {
            let _ = writeln!(
                t,
                "loss: {} acknowledged increments lost, {:.3} anomalies per fault",
                self.lost_increments, self.anomalies_per_fault
            );
            if self.loss_window.count > 0 {
                let _ = writeln!(
                    t,
                    "loss window (ack to kill of a lost write): p50 {:.1} ms, max {:.1} ms over {} lost writes",
                    self.loss_window.p50_ms, self.loss_window.max_ms, self.loss_window.count
                );
            }
        }
        let _ = writeln!(
            t,
            "\nresult: {}\nhistory: {}\ncluster logs: {}/logs",
            if self.anomaly_count() == 0 {
                "no anomaly".to_owned()
            } else {
                format!("{} ANOMALIES", self.anomaly_count())
            },
            s.history.display(),
            s.cluster_dir.display()
        );
        t
    }
}
