//! Counters reported by `INFO` and the Prometheus endpoint.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use sticky_proto::command::SessionCommand;

/// Counters of one store, updated lock-free.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub(crate) connections_received: AtomicU64,
    pub(crate) connected_clients: AtomicI64,
    pub(crate) rejected_connections: AtomicU64,
    pub(crate) commands_processed: AtomicU64,
    pub(crate) expired_keys: AtomicU64,
    pub(crate) stale_refused: AtomicU64,
    pub(crate) oom_refused: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    /// Naps under load the event loop took (`StoreConfig::nap`,
    /// `StoreConfig::pipelined_nap`).
    pub(crate) naps: AtomicU64,
    /// Calls of each session command, indexed like [`SESSION_COMMANDS`].
    pub(crate) session_calls: [AtomicU64; SESSIONS],
}

/// The session commands counted in [`Snapshot::session_calls`], named as
/// `INFO` and the metrics show them (`sess.put`, ...).
pub const SESSION_COMMANDS: [&str; SESSIONS] = {
    let mut names = [""; SESSIONS];
    let mut i = 0;
    while i < SESSIONS {
        names[i] = SessionCommand::ALL[i].lowercase();
        i += 1;
    }
    names
};

/// How many session commands there are.
const SESSIONS: usize = SessionCommand::ALL.len();

/// A point-in-time copy of [`Stats`] plus the keyspace figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Snapshot {
    /// Connections accepted since start.
    pub connections_received: u64,
    /// Connections open now.
    pub connected_clients: u64,
    /// Connections refused by `--max-clients`.
    pub rejected_connections: u64,
    /// Commands executed since start.
    pub commands_processed: u64,
    /// Keys removed because their TTL ran out.
    pub expired_keys: u64,
    /// Session writes refused because the stored stamp was not lower.
    pub stale_refused: u64,
    /// Writes refused by `--max-memory`.
    pub oom_refused: u64,
    /// Connections closed for a malformed or oversized frame.
    pub protocol_errors: u64,
    /// Naps under load the event loop took before sleeping
    /// ([`StoreConfig::nap`](crate::StoreConfig::nap),
    /// [`StoreConfig::pipelined_nap`](crate::StoreConfig::pipelined_nap)).
    pub naps: u64,
    /// Calls of each session command, indexed like [`SESSION_COMMANDS`].
    pub session_calls: [u64; SESSIONS],
    /// Keys stored (copies, tombstones and plain values).
    pub keys: u64,
    /// Keys with a TTL.
    pub keys_with_ttl: u64,
    /// Bytes accounted to keys and values.
    pub used_memory: u64,
    /// `--max-memory`, 0 = none.
    pub max_memory: u64,
    /// Resident set size of the process, from `/proc/self/statm` (0 if unknown).
    pub rss: u64,
}

impl Stats {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        let r = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            connections_received: r(&self.connections_received),
            connected_clients: self.connected_clients.load(Ordering::Relaxed).max(0) as u64,
            rejected_connections: r(&self.rejected_connections),
            commands_processed: r(&self.commands_processed),
            expired_keys: r(&self.expired_keys),
            stale_refused: r(&self.stale_refused),
            oom_refused: r(&self.oom_refused),
            protocol_errors: r(&self.protocol_errors),
            naps: r(&self.naps),
            session_calls: std::array::from_fn(|i| r(&self.session_calls[i])),
            ..Snapshot::default()
        }
    }
}

/// Resident memory of this process in bytes, 0 where unknown.
pub(crate) fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * 4096)
}
