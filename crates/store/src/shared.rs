//! [`Shared`]: the state every connection of one store shares (settings,
//! keyspace, leases, counters), the nap under load that the runtime's
//! park hook takes ([`Shared::before_park`]), and [`Spin`], what the
//! connections tell the busy poller.

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
    /// Batches served since the event loop last went to sleep (counted
    /// only when napping is on; see [`Shared::before_park`]).
    pub(crate) batches_since_park: AtomicU64,
    /// Requests executed since the event loop last went to sleep (counted
    /// only when napping is on).
    pub(crate) requests_since_park: AtomicU64,
    /// When the event loop last woke, in nanoseconds since `started`.
    pub(crate) unparked_at: AtomicU64,
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

/// A round of the event loop (from waking to going to sleep) that served
/// at least this many batches, so several connections had requests, makes
/// it nap before it sleeps.
pub(crate) const NAP_MIN_BATCHES: u64 = 2;
/// A round longer than this makes no nap: the store is then busy enough
/// that a nap would cost it throughput (1 KB SETs and GETs at `-P 16`).
pub(crate) const NAP_MAX_ROUND: Duration = Duration::from_micros(100);
/// A round whose batches carried at least this many requests each, on
/// average, was served to pipelining clients: it makes the
/// [`StoreConfig::pipelined_nap`] nap. `redis-benchmark -P 16` sends 16;
/// a web server's synchronous writes send one.
pub const PIPELINED_DEPTH: u64 = 8;

impl Shared {
    /// Run by the runtime's thread before it sleeps in `epoll`: if the
    /// round since it last woke served several connections, and quickly,
    /// nap first ([`StoreConfig::nap`]; with only
    /// [`StoreConfig::pipelined_nap`], only if those connections were
    /// pipelining). A thread blocked in `epoll` must
    /// be woken by each client that sends, an inter-processor interrupt
    /// paid by the sender (on a virtual machine, a costly exit to the
    /// hypervisor); a napping thread is on no socket's wait queue, so what
    /// arrives meanwhile costs its sender nothing, and the `epoll` after
    /// the nap returns it all at once. Under steady load the loop so
    /// serves a round, naps, serves a round; a lone client (one batch per
    /// round) never waits for a nap.
    pub(crate) fn before_park(&self) {
        let Some(nap) = self.config.nap.or(self.config.pipelined_nap) else {
            return;
        };
        let batches = self.batches_since_park.swap(0, Ordering::Relaxed);
        let requests = self.requests_since_park.swap(0, Ordering::Relaxed);
        if batches < NAP_MIN_BATCHES {
            return;
        }
        if self.config.nap.is_none() && requests < batches.saturating_mul(PIPELINED_DEPTH) {
            // Only the pipelined nap is on, and this round was not.
            return;
        }
        let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let round = now.saturating_sub(self.unparked_at.load(Ordering::Relaxed));
        if u128::from(round) < NAP_MAX_ROUND.as_nanos() {
            Stats::add(&self.stats.naps, 1);
            std::thread::sleep(nap);
        }
    }

    /// Run by the runtime's thread when it wakes: a round starts.
    pub(crate) fn after_unpark(&self) {
        if self.naps() {
            let now = u64::try_from(self.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.unparked_at.store(now, Ordering::Relaxed);
        }
    }

    /// Counts a served batch of `requests` for [`Shared::before_park`].
    pub(crate) fn batch_served(&self, requests: u64) {
        if self.naps() {
            self.batches_since_park.fetch_add(1, Ordering::Relaxed);
            self.requests_since_park
                .fetch_add(requests, Ordering::Relaxed);
        }
    }

    /// Whether either nap is on.
    fn naps(&self) -> bool {
        self.config.nap.is_some() || self.config.pipelined_nap.is_some()
    }

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

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::{Duration, Instant};

    use crate::config::StoreConfig;
    use crate::server::Store;

    const NAP: Duration = Duration::from_millis(2);

    /// One event-loop round that served `batches` batches of `depth`
    /// requests each, then went to sleep: whether it napped (counted, and
    /// slept at least the nap).
    fn round_napped(store: &Store, batches: u64, depth: u64) -> bool {
        let shared = store.shared();
        let naps = store.snapshot().naps;
        shared.after_unpark();
        for _ in 0..batches {
            shared.batch_served(depth);
        }
        let started = Instant::now();
        shared.before_park();
        let napped = store.snapshot().naps - naps;
        assert!(napped <= 1);
        if napped == 1 {
            assert!(started.elapsed() >= NAP, "the nap is counted, not taken");
        }
        napped == 1
    }

    /// A nap needs the round to be short (`NAP_MAX_ROUND`), which a loaded
    /// machine may stretch: whether any of a few such rounds napped.
    fn some_round_napped(store: &Store, batches: u64, depth: u64) -> bool {
        (0..20).any(|_| round_napped(store, batches, depth))
    }

    #[test]
    fn the_pipelined_nap_skips_unpipelined_rounds() {
        let store = Store::new(StoreConfig {
            nap: None,
            pipelined_nap: Some(NAP),
            ..StoreConfig::default()
        });
        // Unpipelined clients (a web server's synchronous writes) never
        // wait for it, however many connections the round served.
        for batches in [2, 10, 100] {
            for depth in [1, 2, super::PIPELINED_DEPTH - 1] {
                assert!(
                    !round_napped(&store, batches, depth),
                    "{batches} batches of {depth}"
                );
            }
        }
        // A lone pipelining client neither.
        assert!(!round_napped(&store, 1, 16));
        // Several pipelining clients: it naps.
        assert!(some_round_napped(&store, 4, super::PIPELINED_DEPTH));
        assert!(some_round_napped(&store, 4, 16));
    }

    #[test]
    fn the_nap_under_load_takes_every_loaded_round() {
        let store = Store::new(StoreConfig {
            nap: Some(NAP),
            pipelined_nap: None,
            ..StoreConfig::default()
        });
        assert!(!round_napped(&store, 1, 1));
        assert!(some_round_napped(&store, 2, 1));
        assert!(some_round_napped(&store, 4, 16));
    }

    #[test]
    fn busy_polling_turns_both_naps_off() {
        let store = Store::new(StoreConfig {
            nap: Some(NAP),
            pipelined_nap: Some(NAP),
            busy_poll: Some(Duration::from_micros(50)),
            ..StoreConfig::default()
        });
        assert!(!round_napped(&store, 4, 16));
        assert!(!round_napped(&store, 4, 1));
    }

    #[test]
    fn the_default_naps_only_after_pipelined_rounds() {
        let config = StoreConfig::default();
        assert!(config.nap.is_none());
        assert!(config.pipelined_nap.is_some());
    }
}
