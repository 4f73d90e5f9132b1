//! [`SessionManager`], the handle of one web server's sessions, and
//! [`Inner`], the state its clones share — settings, cookie signer, local
//! cache, stores, clock, fencing and the async queue — built from a
//! checked [`Config`]. Spawns nothing: `manager` starts the background
//! tasks. Every other module adds the operations of its concept to
//! [`SessionManager`] (`open`, `commit`, `replicator`, `expiry`, ...).

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use sticky_client::ClientOptions;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::admission::Admission;
use crate::cache::{Cache, Entry};
use crate::clock::Clock;
use crate::config::{Config, Mode};
use crate::error::SessionError;
use crate::fencing::Fencing;
use crate::id::{CookieSigner, SessionId};
use crate::stores::Stores;

/// One web server's sessions. Cheap to clone; background tasks stop when
/// the last clone is dropped.
#[derive(Clone)]
pub struct SessionManager {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for SessionManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionManager")
            .field("server", &self.inner.config.server_name)
            .finish_non_exhaustive()
    }
}

/// A session waiting in the async queue, with when it was queued.
pub(crate) type Queued = (SessionId, Arc<Entry>, Instant);

/// The receiving end of the async queue, for the replicator task.
pub(crate) type QueueReceiver = mpsc::Receiver<Queued>;

/// Async mode: the sending end of the replication queue, and whether the
/// replicator lags more than [`Config::async_max_lag`]. The replicator
/// (`replicator`) gives them their meaning.
pub(crate) struct AsyncQueue {
    pub(crate) tx: mpsc::Sender<Queued>,
    pub(crate) lag_exceeded: AtomicBool,
}

impl AsyncQueue {
    /// The queue `mode` needs: one, holding at most `capacity` sessions,
    /// unless commits wait for the replicas themselves.
    fn for_mode(mode: Mode, capacity: usize) -> (Option<Self>, Option<QueueReceiver>) {
        if mode.waits_for_replicas() {
            return (None, None);
        }
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let queue = Self {
            tx,
            lag_exceeded: AtomicBool::new(false),
        };
        (Some(queue), Some(rx))
    }
}

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) signer: CookieSigner,
    pub(crate) admin_token: String,
    pub(crate) clock: Clock,
    pub(crate) cache: Cache,
    pub(crate) stores: Stores,
    pub(crate) fencing: Fencing,
    /// Async mode: the replication queue; `None` in sync mode.
    pub(crate) queue: Option<AsyncQueue>,
    /// Caps and per-address limit of new sessions.
    pub(crate) admission: Admission,
    /// Set by [`SessionManager::stop`]: no session is served any more.
    pub(crate) stopping: AtomicBool,
    /// Dead leases whose sessions are being adopted (`adopt`).
    pub(crate) adopting: std::sync::Mutex<std::collections::HashSet<String>>,
    /// The copies a lapse or a failed write dropped, until each session
    /// has a host again.
    pub(crate) dropped: crate::dropped::Dropped,
    /// A claim-back of [`dropped`](Self::dropped) after failed writes
    /// runs ([`SessionManager::reclaim_dropped`]).
    pub(crate) reclaiming: AtomicBool,
    /// When a director's health check last reached this server
    /// ([`Clock::now_ms`](crate::clock::Clock::now_ms); 0: never).
    pub(crate) director_checked_ms: std::sync::atomic::AtomicU64,
    /// This server let its sessions go because no director reached it
    /// (`unreached`); the claim-back of what nobody took waits for a
    /// director's check.
    pub(crate) released_unreached: AtomicBool,
    /// The metrics every request records, registered once.
    pub(crate) hot: HotMetrics,
}

/// Handles of the metrics recorded on every request (a cache hit) or every
/// write: `metrics::counter!` and `histogram!` look their name up in the
/// recorder's registry at each call (hashing the name, a read lock);
/// these are looked up once, at their first use. The first use comes
/// after the recorder is installed: a server installs it before it
/// starts the manager, and nothing records before a request.
#[derive(Default)]
pub(crate) struct HotMetrics {
    cache_hits: std::sync::OnceLock<metrics::Counter>,
    session_bytes: std::sync::OnceLock<metrics::Histogram>,
    replication_seconds: std::sync::OnceLock<metrics::Histogram>,
}

impl HotMetrics {
    /// `sticky_cache_hits_total`.
    pub(crate) fn cache_hits(&self) -> &metrics::Counter {
        self.cache_hits
            .get_or_init(|| metrics::counter!("sticky_cache_hits_total"))
    }

    /// `sticky_session_bytes`.
    pub(crate) fn session_bytes(&self) -> &metrics::Histogram {
        self.session_bytes
            .get_or_init(|| metrics::histogram!("sticky_session_bytes"))
    }

    /// `sticky_replication_seconds`.
    pub(crate) fn replication_seconds(&self) -> &metrics::Histogram {
        self.replication_seconds
            .get_or_init(|| metrics::histogram!("sticky_replication_seconds"))
    }
}

impl Inner {
    /// Checks `config` and builds the state; the stores are connected to
    /// lazily. Also returns the receiving end of the async queue, for the
    /// replicator task. Must be called inside a Tokio runtime (the clock).
    ///
    /// # Errors
    ///
    /// [`SessionError::Config`] for invalid settings (no stores, more than
    /// 64, R not 1 or 2, a secret shorter than 32 bytes, a bad address).
    pub(crate) fn new(config: Config) -> Result<(Self, Option<QueueReceiver>), SessionError> {
        let bad = |m: &str| Err(SessionError::Config(m.to_owned()));
        if config.stores.is_empty() || config.stores.len() > 64 {
            return bad("between 1 and 64 stores are needed");
        }
        if !(1..=2).contains(&config.replicas) {
            return bad("replicas must be 1 or 2");
        }
        if config.lease < std::time::Duration::from_millis(30) {
            return bad("the lease must be at least 30 ms");
        }
        if config.secret.len() < 32 {
            return bad("the cluster secret must be at least 32 bytes");
        }
        let options = ClientOptions {
            password: config.store_password.clone(),
            request_timeout: config.store_timeout,
            connect_timeout: config.store_timeout,
            claim_window: config.claim_timeout * 2,
            tls_ca: config.store_tls_ca.clone(),
            connection_per_thread: config.store_connection_per_thread,
            ..ClientOptions::default()
        };
        let stores = Stores::new(&config.stores, &options)
            .map_err(|e| SessionError::Config(e.to_string()))?;
        let signer =
            CookieSigner::new(&config.secret).map_err(|e| SessionError::Config(e.to_string()))?;
        let (queue, rx) = AsyncQueue::for_mode(config.mode, config.async_queue);
        let clock = Clock::new();
        let inner = Self {
            admin_token: sticky_proto::control::admin_token(&config.secret),
            signer,
            clock,
            cache: Cache::new(clock),
            stores,
            fencing: Fencing::new(),
            queue,
            admission: Admission::new(&config),
            adopting: std::sync::Mutex::default(),
            dropped: crate::dropped::Dropped::default(),
            reclaiming: AtomicBool::new(false),
            director_checked_ms: std::sync::atomic::AtomicU64::new(0),
            released_unreached: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            hot: HotMetrics::default(),
            config,
        };
        Ok((inner, rx))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    //! Building blocks for the unit tests of the modules that use [`Inner`].

    use super::*;
    use crate::config::StoreSpec;

    /// Settings with `stores` stores at addresses nothing listens on
    /// (never connected to unless a test sends a request).
    pub(crate) fn config(stores: usize) -> Config {
        let specs = (1..=stores)
            .map(|i| StoreSpec {
                name: format!("s{i}"),
                addr: format!("127.0.0.1:{i}"),
            })
            .collect();
        Config::new("ws1", vec![7u8; 32], specs)
    }

    /// A manager over `config` without background tasks and without
    /// pinging the stores: for tests of local state on paused time. It
    /// believes it holds its lease for an hour (no store is asked).
    pub(crate) fn manager(config: Config) -> SessionManager {
        match Inner::new(config) {
            Ok((inner, _)) => {
                let now = inner.clock.now_ms();
                let epoch = inner.fencing.epoch();
                inner
                    .fencing
                    .extend(epoch, now, now, std::time::Duration::from_secs(3600));
                SessionManager {
                    inner: Arc::new(inner),
                }
            }
            Err(e) => panic!("test config refused: {e}"),
        }
    }

    #[tokio::test]
    async fn invalid_settings_are_refused() {
        type Change = fn(&mut Config);
        let cases: [(&str, Change); 4] = [
            ("between 1 and 64 stores", |c| c.stores.clear()),
            ("between 1 and 64 stores", |c| {
                let one = c.stores[0].clone();
                c.stores = vec![one; 65];
            }),
            ("replicas must be 1 or 2", |c| c.replicas = 3),
            ("at least 32 bytes", |c| c.secret = vec![1; 31]),
        ];
        for (want, change) in cases {
            let mut c = config(3);
            change(&mut c);
            match Inner::new(c) {
                Err(SessionError::Config(m)) => assert!(m.contains(want), "{m}"),
                Err(e) => panic!("{want}: wrong error {e}"),
                Ok(_) => panic!("{want}: accepted"),
            }
        }
        assert!(Inner::new(config(64)).is_ok());
    }

    #[tokio::test]
    async fn only_async_mode_has_a_queue() {
        let mut c = config(2);
        let (sync, rx) = Inner::new(c.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert!(sync.queue.is_none() && rx.is_none());
        c.mode = Mode::Async;
        let (a, rx) = Inner::new(c).unwrap_or_else(|e| panic!("{e}"));
        assert!(a.queue.is_some() && rx.is_some());
    }
}
