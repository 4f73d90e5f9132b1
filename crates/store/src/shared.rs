//! [`Shared`]: the state every connection of one store shares (settings,
//! keyspace, leases, counters), and [`Spin`], what the connections tell
//! the busy poller.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::config::StoreConfig;
use crate::keyspace::Keyspace;
use crate::ownership::Leases;
use crate::stats::{rss_bytes, Snapshot, Stats};

/// State shared by every connection of one store.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) config: StoreConfig,
    pub(crate) keyspace: Keyspace,
    /// Server leases and the recovery window (`docs/safety.md`).
    pub(crate) leases: Leases,
    pub(crate) stats: Arc<Stats>,
    pub(crate) started: Instant,
    /// Random per process start (`INFO server`'s `run_id`, as Redis's):
    /// a web server that sees it change knows this store lost its copies.
    pub(crate) run_id: String,
    pub(crate) next_client_id: AtomicU64,
    /// Present when busy polling is on and the runtime is single-threaded.
    pub(crate) spin: Option<Spin>,
}

/// A run id: 40 hex digits, random per process start (not a secret).
pub(crate) fn new_run_id() -> String {
    use std::hash::BuildHasher;
    let state = std::collections::hash_map::RandomState::new();
    let a = state.hash_one((std::process::id(), Instant::now()));
    let b = state.hash_one(a);
    let c = state.hash_one(b);
    format!("{a:016x}{b:016x}{:08x}", c >> 32)
}

impl Shared {
    pub(crate) fn snapshot(&self) -> Snapshot {
        let (keys, volatile) = self.keyspace.counts();
        Snapshot {
            keys: keys as u64,
            keys_with_ttl: volatile as u64,
            used_memory: self.keyspace.used_memory() as u64,
            max_memory: self.keyspace.max_memory() as u64,
            rss: rss_bytes(),
            ..self.stats.snapshot()
        }
    }
}

/// A spin iteration (one zero-timeout poll) longer than this means another
/// thread had the CPU: stop spinning rather than compete for it.
pub(crate) const PREEMPTED: Duration = Duration::from_micros(200);

/// What the connections tell the busy poller.
#[derive(Debug)]
pub(crate) struct Spin {
    /// Batches served; the poller spins while this keeps changing.
    pub(crate) batches: AtomicU64,
    /// False only while the poller sleeps (so true when there is none).
    pub(crate) spinning: AtomicBool,
    /// Wakes the poller when a batch is served while it sleeps.
    pub(crate) wake: Notify,
}

impl Default for Spin {
    fn default() -> Self {
        Self {
            batches: AtomicU64::new(0),
            spinning: AtomicBool::new(true),
            wake: Notify::new(),
        }
    }
}

impl Spin {
    /// Called by a connection after each batch.
    pub(crate) fn served(&self) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        if !self.spinning.load(Ordering::Relaxed) {
            self.wake.notify_one();
        }
    }
}
