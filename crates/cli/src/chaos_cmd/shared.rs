//! What the users, the nemesis and the progress bar share: [`Shared`]
//! and its [`Failover`] record.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::history::History;

/// The last kill -9 of each web server, to time failovers.
#[derive(Default)]
pub(crate) struct Failover {
    kills: Mutex<HashMap<String, Instant>>,
}

impl Failover {
    /// Records a kill -9 of `server` at `at`.
    pub(crate) fn record_kill(&self, server: &str, at: Instant) {
        if let Ok(mut k) = self.kills.lock() {
            k.insert(server.to_owned(), at);
        }
    }

    /// When `server` was last killed, if after `since`.
    pub(crate) fn killed_since(&self, server: &str, since: Instant) -> Option<Instant> {
        let k = self.kills.lock().ok()?;
        k.get(server).copied().filter(|t| *t > since)
    }
}

/// What the users, the nemesis and the progress bar share.
pub(crate) struct Shared {
    pub(super) start: Instant,
    pub(super) timeout: Duration,
    pub(super) think: Duration,
    pub(super) write_ratio: f64,
    pub(crate) stop_users: AtomicBool,
    pub(crate) stop_faults: AtomicBool,
    pub(crate) history: History,
    pub(crate) failover: Failover,
    pub(crate) ops: AtomicU64,
    pub(crate) not_ok: AtomicU64,
    pub(crate) anomalies: AtomicU64,
    pub(super) faults: Mutex<String>,
}

impl Shared {
    /// Milliseconds from the start of the run to `at`.
    pub(crate) fn since_start(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64() * 1e3
    }

    /// What the progress bar shows as the active faults.
    pub(crate) fn set_faults(&self, text: String) {
        if let Ok(mut f) = self.faults.lock() {
            *f = text;
        }
    }

    pub(super) fn faults(&self) -> String {
        self.faults.lock().map(|f| f.clone()).unwrap_or_default()
    }
}
