//! The dashboard's story of the last 15 minutes: [`Recorder`] keeps a
//! bounded ring of [`Sample`]s (one each
//! [`DirectorConfig::history_interval`](crate::DirectorConfig::history_interval),
//! at most [`SAMPLES`]: 15 minutes at the default 5 s) and a bounded
//! ring of [`Event`]s (at most [`EVENTS`]), each with its wall-clock time.
//! `GET /api/history` answers [`History`]. The samples are taken by
//! `sampler.rs`; events are recorded where the director observes them
//! (health, fencing, adoption, admin states, store probes, the
//! supervisor's actions, the sampler's per-server figures).
//!
//! Everything is in memory and bounded: a restarted director starts an
//! empty history.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// Samples kept: 15 minutes at one each 5 s.
pub(crate) const SAMPLES: usize = 180;
/// Events kept (the oldest go first).
pub(crate) const EVENTS: usize = 500;
/// Longest message kept, in characters.
const MAX_MESSAGE: usize = 300;

/// The director's figures over one interval.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// When it was taken: milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// Requests received per second over the interval.
    pub requests_per_sec: f64,
    /// Median response time over the interval, in microseconds (`None`:
    /// no response); at most the histogram's last bound (10 s).
    pub p50_us: Option<u64>,
    /// 99th percentile of the response times, likewise.
    pub p99_us: Option<u64>,
    /// Requests routed away from the server their cookie named.
    pub failovers: u64,
    /// Sessions the web servers took over from the stores (their
    /// `sticky_takeovers_total`: a user's request or an adoption); `None`
    /// when no web server's metrics could be read.
    pub takeovers: Option<u64>,
    /// Session copies the web servers re-copied to replace a failed
    /// store's (`sticky_recopies_total`); `None` likewise.
    pub recopies: Option<u64>,
    /// Re-copies still waiting at the end of the interval
    /// (`sticky_recopy_pending`, summed); `None` likewise.
    pub recopy_pending: Option<u64>,
    /// Keys in the stores that answered their last probe, summed (`None`
    /// without stores, or when none answered).
    pub store_keys: Option<u64>,
    /// Web servers routable.
    pub servers_up: usize,
    /// Stores that answered their last probe.
    pub stores_up: usize,
}

/// What an [`Event`] tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventKind {
    /// The director started serving.
    Started,
    /// A web server became routable or answers its checks again.
    ServerUp,
    /// A web server was marked down (checks or a refused connection).
    ServerDown,
    /// A web server reports it cannot write to enough stores, or can again.
    Ready,
    /// A request could not connect to a web server (it is passed over
    /// where the director chooses), or a health check reached it again.
    Unreachable,
    /// The director asked a web server to fence itself.
    Fencing,
    /// A web server reports a new epoch (fenced: its cache from before is
    /// gone).
    Fenced,
    /// A dead web server's failover servers were asked to adopt its
    /// sessions.
    Adopt,
    /// An operator drained, evacuated or enabled a web server.
    Admin,
    /// A store stopped answering its probes.
    StoreDown,
    /// A store answers again.
    StoreUp,
    /// Clients of a web server were routed to others.
    Failover,
    /// A web server took sessions over from the stores.
    Takeover,
    /// A web server re-copied sessions after a store failed.
    Recopy,
    /// The `sticky up` supervisor acted on a process (kill, pause, resume,
    /// restart) at the admin API's request.
    Process,
    /// The server list was reloaded.
    Reload,
}

/// Something the director saw happen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Grows by one per event since the director started.
    pub seq: u64,
    /// When: milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// What kind of event.
    pub kind: EventKind,
    /// The web server, store or process it concerns (`director` for the
    /// director itself).
    pub subject: String,
    /// What happened, for people.
    pub message: String,
    /// The web server's epoch it concerns, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<u64>,
}

/// What `GET /api/history` answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Milliseconds between two samples.
    pub interval_ms: u64,
    /// The director's clock now: milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// The samples, oldest first (at most 180).
    pub samples: Vec<Sample>,
    /// The events, oldest first (at most 500).
    pub events: Vec<Event>,
}

/// Milliseconds since the Unix epoch by the wall clock (0 before 1970).
pub(crate) fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(crate::status::millis)
        .unwrap_or(0)
}

struct Events {
    ring: VecDeque<Event>,
    next: u64,
}

/// The two rings.
pub(crate) struct Recorder {
    interval: Duration,
    samples: Mutex<VecDeque<Sample>>,
    events: Mutex<Events>,
}

impl Recorder {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            interval,
            samples: Mutex::new(VecDeque::with_capacity(SAMPLES)),
            events: Mutex::new(Events {
                ring: VecDeque::with_capacity(EVENTS),
                next: 1,
            }),
        }
    }

    /// Keeps `sample`, dropping the oldest beyond [`SAMPLES`].
    pub(crate) fn sample(&self, sample: Sample) {
        let mut ring = self.samples.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == SAMPLES {
            ring.pop_front();
        }
        ring.push_back(sample);
    }

    /// Records an event now, dropping the oldest beyond [`EVENTS`].
    pub(crate) fn event(&self, kind: EventKind, subject: &str, message: impl Into<String>) {
        self.event_at(wall_ms(), kind, subject, message.into(), None);
    }

    /// Records an event about a web server's `epoch`.
    pub(crate) fn event_epoch(
        &self,
        kind: EventKind,
        subject: &str,
        message: impl Into<String>,
        epoch: Option<u64>,
    ) {
        self.event_at(wall_ms(), kind, subject, message.into(), epoch);
    }

    fn event_at(
        &self,
        at_ms: u64,
        kind: EventKind,
        subject: &str,
        mut message: String,
        epoch: Option<u64>,
    ) {
        if let Some((cut, _)) = message.char_indices().nth(MAX_MESSAGE) {
            message.truncate(cut);
            message.push('…');
        }
        let mut events = self.events.lock().unwrap_or_else(PoisonError::into_inner);
        let seq = events.next;
        events.next += 1;
        if events.ring.len() == EVENTS {
            events.ring.pop_front();
        }
        events.ring.push_back(Event {
            seq,
            at_ms,
            kind,
            subject: subject.chars().take(64).collect(),
            message,
            epoch,
        });
    }

    /// Both rings, oldest first.
    pub(crate) fn snapshot(&self) -> History {
        let samples = self
            .samples
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned()
            .collect();
        let events = self
            .events
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ring
            .iter()
            .cloned()
            .collect();
        History {
            interval_ms: crate::status::millis(self.interval),
            now_ms: wall_ms(),
            samples,
            events,
        }
    }
}

/// The `q`-quantile (0 to 1) of the responses counted between two
/// snapshots of a cumulative histogram with upper bounds `le_us` (an
/// unbounded bucket follows the last): interpolated linearly inside its
/// bucket, as Prometheus' `histogram_quantile` does (and the dashboard's
/// one-second figures); the last bound for responses beyond it; `None`
/// when no response was counted, or when the snapshots do not match (a
/// counter went back).
pub(crate) fn quantile(q: f64, le_us: &[u64], now: &[u64], before: &[u64]) -> Option<u64> {
    if now.len() != le_us.len() + 1 || before.len() != now.len() {
        return None;
    }
    let mut delta = Vec::with_capacity(now.len());
    for (n, b) in now.iter().zip(before) {
        delta.push(n.checked_sub(*b)?);
    }
    let total = *delta.last()?;
    if total == 0 {
        return None;
    }
    let rank = q.clamp(0.0, 1.0) * total as f64;
    let last = le_us.last().copied().unwrap_or(0);
    for (i, &count) in delta.iter().enumerate() {
        if (count as f64) < rank {
            continue;
        }
        let Some(&hi) = le_us.get(i) else {
            return Some(last);
        };
        let (lo, below) = match i.checked_sub(1) {
            Some(p) => (le_us[p], delta[p]),
            None => (0, 0),
        };
        let inside = count.saturating_sub(below);
        let share = if inside > 0 {
            (rank - below as f64) / inside as f64
        } else {
            1.0
        };
        let us = lo as f64 + (hi.saturating_sub(lo)) as f64 * share.clamp(0.0, 1.0);
        return Some(us.round() as u64);
    }
    Some(last)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_ring_keeps_the_last_fifteen_minutes() {
        let r = Recorder::new(Duration::from_secs(5));
        for i in 0..(SAMPLES as u64 + 20) {
            r.sample(Sample {
                at_ms: i,
                failovers: i,
                ..Sample::default()
            });
        }
        let h = r.snapshot();
        assert_eq!(h.interval_ms, 5_000);
        assert_eq!(h.samples.len(), SAMPLES, "bounded");
        assert_eq!(h.samples[0].at_ms, 20, "the oldest went first");
        assert_eq!(h.samples[SAMPLES - 1].at_ms, SAMPLES as u64 + 19);
        assert!(h.samples.windows(2).all(|w| w[0].at_ms < w[1].at_ms));
    }

    #[test]
    fn the_event_ring_is_bounded_numbered_and_timed() {
        let r = Recorder::new(Duration::from_secs(5));
        let before = wall_ms();
        for i in 0..(EVENTS + 7) {
            r.event(EventKind::ServerDown, "ws1", format!("down {i}"));
        }
        r.event_epoch(
            EventKind::Fenced,
            "ws2",
            "fenced",
            Some(9_223_372_036_854_775_807),
        );
        let h = r.snapshot();
        assert_eq!(h.events.len(), EVENTS, "bounded");
        assert_eq!(h.events[0].seq, 9, "the oldest went first");
        assert_eq!(h.events[0].message, "down 8");
        let last = h.events.last().unwrap();
        assert_eq!(last.seq, EVENTS as u64 + 8);
        assert_eq!(last.kind, EventKind::Fenced);
        assert_eq!(last.epoch, Some(9_223_372_036_854_775_807));
        assert!(h.events.windows(2).all(|w| w[0].seq + 1 == w[1].seq));
        assert!(h
            .events
            .iter()
            .all(|e| e.at_ms >= before && e.at_ms <= h.now_ms));
        assert!(before > 1_600_000_000_000, "wall-clock milliseconds");
    }

    #[test]
    fn long_messages_and_subjects_are_cut() {
        let r = Recorder::new(Duration::from_secs(5));
        r.event(EventKind::StoreDown, &"s".repeat(100), "é".repeat(1000));
        let e = &r.snapshot().events[0];
        assert_eq!(e.subject.chars().count(), 64);
        assert_eq!(e.message.chars().count(), MAX_MESSAGE + 1);
        assert!(e.message.ends_with('…'));
    }

    #[test]
    fn events_serialize_with_snake_case_kinds_and_no_empty_epoch() {
        let r = Recorder::new(Duration::from_secs(5));
        r.event(EventKind::StoreDown, "s1", "connection refused");
        let json = serde_json::to_value(r.snapshot()).unwrap();
        let e = &json["events"][0];
        assert_eq!(e["kind"], "store_down");
        assert_eq!(e["subject"], "s1");
        assert!(e.get("epoch").is_none(), "{e}");
        assert!(json["now_ms"].as_u64().unwrap() >= e["at_ms"].as_u64().unwrap());
    }

    #[test]
    fn quantiles_of_an_interval() {
        let le = [1_000, 10_000, 100_000];
        // 100 responses in the interval: 50 under 1 ms, 49 under 10 ms,
        // 1 beyond 100 ms.
        let before = [10, 10, 10, 10];
        let now = [60, 109, 109, 110];
        assert_eq!(quantile(0.5, &le, &now, &before), Some(1_000));
        // Rank 99 of 100: the end of the second bucket.
        assert_eq!(quantile(0.99, &le, &now, &before), Some(10_000));
        assert_eq!(quantile(1.0, &le, &now, &before), Some(100_000), "capped");
        assert_eq!(quantile(0.25, &le, &now, &before), Some(500));
        assert_eq!(quantile(0.5, &le, &before, &before), None, "no response");
        assert_eq!(quantile(0.5, &le, &before, &now), None, "went back");
        assert_eq!(quantile(0.5, &le, &now[..3], &before[..3]), None);
    }
}
