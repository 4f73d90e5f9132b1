//! What a bench run measured: per-user tallies, merged into a summary that
//! is printed as a table and written as JSON.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use hdrhistogram::Histogram;
use serde::Serialize;

/// Highest latency the histograms track, in microseconds (one hour); longer
/// ones are recorded as this.
const MAX_TRACKABLE_US: u64 = 3_600_000_000;

/// A new latency histogram (microseconds, 3 significant digits).
#[allow(clippy::expect_used)] // constant bounds that `new_with_bounds` accepts
pub(super) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKABLE_US, 3).expect("valid histogram bounds")
}

/// Why a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum ErrorKind {
    /// The server answered with a status outside 2xx and 3xx.
    Status(u16),
    /// The TCP connection (or HTTP handshake) could not be made.
    Connect,
    /// No complete answer within `--timeout`.
    Timeout,
    /// The connection closed before the answer was complete.
    Closed,
    /// Any other HTTP-level failure.
    Http,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Status(code) => write!(f, "status {code}"),
            ErrorKind::Connect => f.write_str("connect"),
            ErrorKind::Timeout => f.write_str("timeout"),
            ErrorKind::Closed => f.write_str("closed"),
            ErrorKind::Http => f.write_str("http"),
        }
    }
}

/// One user's (or, merged, the whole run's) measurements. Only requests
/// started after the warm-up count.
#[derive(Debug)]
pub(super) struct Tally {
    /// Latency of successful reads, microseconds.
    pub(super) reads: Histogram<u64>,
    /// Latency of successful writes, microseconds.
    pub(super) writes: Histogram<u64>,
    /// Failed requests by kind.
    pub(super) errors: BTreeMap<ErrorKind, u64>,
    /// Response body bytes received.
    pub(super) body_bytes: u64,
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            reads: histogram(),
            writes: histogram(),
            errors: BTreeMap::new(),
            body_bytes: 0,
        }
    }
}

impl Tally {
    /// Adds `other` into `self`.
    pub(super) fn merge(&mut self, other: &Tally) {
        // Same bounds on both sides, so `add` cannot fail; saturate anyway.
        let _ = self.reads.add(&other.reads);
        let _ = self.writes.add(&other.writes);
        for (kind, n) in &other.errors {
            *self.errors.entry(*kind).or_default() += n;
        }
        self.body_bytes += other.body_bytes;
    }

    /// Counts a failure.
    pub(super) fn error(&mut self, kind: ErrorKind) {
        *self.errors.entry(kind).or_default() += 1;
    }

    fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// Latency percentiles of one kind of request, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(super) struct Latency {
    /// Successful requests measured.
    pub(super) count: u64,
    /// Mean.
    pub(super) mean_ms: f64,
    /// Median.
    pub(super) p50_ms: f64,
    /// 90th percentile.
    pub(super) p90_ms: f64,
    /// 99th percentile.
    pub(super) p99_ms: f64,
    /// 99.9th percentile.
    pub(super) p99_9_ms: f64,
    /// Slowest.
    pub(super) max_ms: f64,
}

impl Latency {
    /// Percentiles of `h` (microseconds); all zero when it is empty.
    pub(super) fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self {
                count: 0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p90_ms: 0.0,
                p99_ms: 0.0,
                p99_9_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Self {
            count: h.len(),
            mean_ms: h.mean() / 1000.0,
            p50_ms: ms(h.value_at_quantile(0.50)),
            p90_ms: ms(h.value_at_quantile(0.90)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p99_9_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }
}

/// The settings a run used, echoed in its report.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Settings {
    /// Target base URL.
    pub(super) url: String,
    /// Virtual users (one connection and cookie jar each).
    pub(super) users: usize,
    /// Fraction of requests that are writes.
    pub(super) write_ratio: f64,
    /// `GET` path of reads.
    pub(super) read_path: String,
    /// `POST` path of writes.
    pub(super) write_path: String,
    /// Session payload each user put in before measuring.
    pub(super) session_bytes: usize,
    /// Requests per user spent on that.
    pub(super) fill_requests_per_user: usize,
    /// Every request sent without cookies: each write a new session.
    pub(super) fresh_sessions: bool,
    /// Target total rate, requests per second (none: as fast as possible).
    pub(super) rate: Option<f64>,
    /// Load generator worker threads.
    pub(super) threads: usize,
    /// Warm-up, seconds (not measured).
    pub(super) warmup_secs: f64,
    /// Requested duration, seconds, if the run was time-bound.
    pub(super) duration_secs: Option<f64>,
    /// Requested measured requests, if the run was count-bound.
    pub(super) requests: Option<u64>,
}

/// The whole run's result, as written by `--json`.
#[derive(Debug, Clone, Serialize)]
pub(super) struct Report {
    /// What was asked.
    pub(super) settings: Settings,
    /// Measured wall time, seconds.
    pub(super) elapsed_secs: f64,
    /// Measured requests, successful or not.
    pub(super) requests: u64,
    /// Failed requests.
    pub(super) errors: u64,
    /// Failed requests by kind (`status 500`, `connect`, `timeout`, `closed`, `http`).
    pub(super) errors_by_kind: BTreeMap<String, u64>,
    /// Successful requests per second.
    pub(super) rps: f64,
    /// Response body bytes per second.
    pub(super) body_bytes_per_sec: f64,
    /// Latency of all successful requests.
    pub(super) all: Latency,
    /// Latency of successful reads.
    pub(super) read: Latency,
    /// Latency of successful writes.
    pub(super) write: Latency,
}

impl Report {
    /// Summarizes a merged tally measured over `elapsed_secs`.
    pub(super) fn new(settings: Settings, tally: &Tally, elapsed_secs: f64) -> Self {
        let mut all = tally.reads.clone();
        let _ = all.add(&tally.writes);
        let errors = tally.error_count();
        let ok = all.len();
        let per_sec = |n: f64| {
            if elapsed_secs > 0.0 {
                n / elapsed_secs
            } else {
                0.0
            }
        };
        Self {
            settings,
            elapsed_secs,
            requests: ok + errors,
            errors,
            errors_by_kind: tally
                .errors
                .iter()
                .map(|(k, n)| (k.to_string(), *n))
                .collect(),
            rps: per_sec(ok as f64),
            body_bytes_per_sec: per_sec(tally.body_bytes as f64),
            all: Latency::of(&all),
            read: Latency::of(&tally.reads),
            write: Latency::of(&tally.writes),
        }
    }

    /// The human-readable summary table.
    pub(super) fn table(&self) -> String {
        let s = &self.settings;
        let mut out = String::new();
        let rate = s.rate.map_or_else(
            || "closed loop".to_owned(),
            |r| format!("{r} req/s open loop"),
        );
        let sessions = if s.fresh_sessions {
            "no cookies (a new session per write)".to_owned()
        } else {
            format!("{} session bytes", s.session_bytes)
        };
        let _ = writeln!(
            out,
            "sticky bench  {}  {} users, {:.1}% writes, {sessions}, {}, {} threads",
            s.url,
            s.users,
            s.write_ratio * 100.0,
            rate,
            s.threads
        );
        let _ = writeln!(
            out,
            "measured {:.2} s after {:.2} s of warm-up: {} requests, {:.1} ok/s, {} errors, {:.1} KiB/s of bodies",
            self.elapsed_secs,
            s.warmup_secs,
            self.requests,
            self.rps,
            self.errors,
            self.body_bytes_per_sec / 1024.0
        );
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "| requests | count | rps | mean ms | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|");
        for (name, l) in [
            ("all", &self.all),
            ("read", &self.read),
            ("write", &self.write),
        ] {
            let rps = if self.elapsed_secs > 0.0 {
                l.count as f64 / self.elapsed_secs
            } else {
                0.0
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {rps:.1} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} | {:.3} |",
                l.count, l.mean_ms, l.p50_ms, l.p90_ms, l.p99_ms, l.p99_9_ms, l.max_ms
            );
        }
        let _ = writeln!(out);
        if self.errors_by_kind.is_empty() {
            let _ = writeln!(out, "errors: none");
        } else {
            let list: Vec<String> = self
                .errors_by_kind
                .iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect();
            let _ = writeln!(out, "errors: {}", list.join(", "));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> Settings {
        Settings {
            url: "http://127.0.0.1:1".into(),
            users: 2,
            write_ratio: 0.1,
            read_path: "/r".into(),
            write_path: "/w".into(),
            session_bytes: 0,
            fill_requests_per_user: 0,
            fresh_sessions: false,
            rate: None,
            threads: 1,
            warmup_secs: 0.0,
            duration_secs: Some(1.0),
            requests: None,
        }
    }

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut h = histogram();
        // 1..=1000 ms, one each.
        for ms in 1..=1000u64 {
            h.saturating_record(ms * 1000);
        }
        let l = Latency::of(&h);
        let close = |a: f64, b: f64| (a - b).abs() <= b * 0.001 + 1e-9;
        assert_eq!(l.count, 1000);
        assert!(close(l.p50_ms, 500.0), "{l:?}");
        assert!(close(l.p90_ms, 900.0), "{l:?}");
        assert!(close(l.p99_ms, 990.0), "{l:?}");
        assert!(close(l.p99_9_ms, 999.0), "{l:?}");
        assert!(close(l.max_ms, 1000.0), "{l:?}");
        assert!(close(l.mean_ms, 500.5), "{l:?}");
        assert_eq!(Latency::of(&histogram()).count, 0);
    }

    #[test]
    fn merged_tallies_make_one_report() {
        let mut a = Tally::default();
        let mut b = Tally::default();
        for _ in 0..90 {
            a.reads.saturating_record(100);
        }
        for _ in 0..10 {
            b.writes.saturating_record(2000);
        }
        b.error(ErrorKind::Status(503));
        b.error(ErrorKind::Status(503));
        b.error(ErrorKind::Timeout);
        // An absurd latency saturates instead of failing.
        b.writes.saturating_record(u64::MAX);
        let mut total = Tally::default();
        total.merge(&a);
        total.merge(&b);
        let r = Report::new(settings(), &total, 2.0);
        assert_eq!(r.requests, 90 + 11 + 3);
        assert_eq!(r.errors, 3);
        assert_eq!(r.errors_by_kind.get("status 503"), Some(&2));
        assert_eq!(r.errors_by_kind.get("timeout"), Some(&1));
        assert!((r.rps - 50.5).abs() < 1e-9);
        assert_eq!(r.read.count, 90);
        assert_eq!(r.write.count, 11);
        assert!((r.all.p50_ms - 0.1).abs() < 1e-3);
        let table = r.table();
        assert!(table.contains("| read | 90 |"), "{table}");
        assert!(table.contains("status 503: 2, timeout: 1"), "{table}");
        let json = serde_json::to_value(&r).map_err(|e| e.to_string());
        assert_eq!(
            json.map(|j| j["all"]["count"].clone()),
            Ok(serde_json::json!(101))
        );
    }
}
