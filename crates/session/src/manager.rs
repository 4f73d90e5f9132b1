//! [`SessionManager`]: the cache, the stores and the background tasks of
//! one web server, and the two operations every request makes: open a
//! session (from the cache, or by takeover from the stores) and commit it
//! (copy a change to its replicas).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use sticky_client::{ClientError, ClientOptions};
use sticky_proto::control::HealthReport;
use sticky_proto::Stamp;
use tokio::sync::{mpsc, OwnedMutexGuard};

use crate::cache::{mono_ms, unix_ms, Cache, Entry, SessionState, Slot, Stored};
use crate::config::{Config, Mode};
use crate::id::{CookieSigner, SessionId};
use crate::stores::{Stores, PING_INTERVAL};
use crate::takeover;

/// Why a session could not be opened or committed. Each maps to one HTTP
/// status (see [`SessionError::status`]).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The serialized session is larger than [`Config::max_size`].
    #[error("session too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// Serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Another server took the session over; this server's copy was dropped.
    #[error("the session moved to another server (stored stamp {stored})")]
    Moved {
        /// The stamp the stores hold.
        stored: Stamp,
    },
    /// No store could be reached to load or save the session.
    #[error("session stores unavailable: {0}")]
    Unavailable(String),
    /// The session data could not be (de)serialized.
    #[error("session data error: {0}")]
    Data(String),
    /// Invalid settings.
    #[error("invalid session configuration: {0}")]
    Config(String),
    /// The request was routed for an epoch this server has left (it
    /// fenced itself since): refused before touching any session.
    #[error("this server fenced itself (now epoch {epoch}); the request was routed before that")]
    Fenced {
        /// The server's current epoch.
        epoch: u64,
    },
}

impl SessionError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            SessionError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            SessionError::Moved { .. } => S::CONFLICT,
            SessionError::Unavailable(_) | SessionError::Fenced { .. } => S::SERVICE_UNAVAILABLE,
            SessionError::Data(_) | SessionError::Config(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Where a request found its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The local cache: no network I/O.
    Cache,
    /// The stores (a takeover).
    Store,
    /// Nowhere: a new session.
    New,
}

impl Source {
    /// `cache`, `store` or `new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Store => "store",
            Source::New => "new",
        }
    }
}

/// A session opened for one request: holds its lock until committed.
pub(crate) struct Opened {
    pub(crate) id: SessionId,
    pub(crate) source: Source,
    /// The cache entry; `None` for a new session not yet in the cache.
    pub(crate) entry: Option<Arc<Entry>>,
    pub(crate) held: Held,
}

/// The session state a request works on.
pub(crate) enum Held {
    /// Locked in the cache.
    Cached(OwnedMutexGuard<Slot>),
    /// New, private to the request until committed.
    Fresh(SessionState),
}

impl Held {
    pub(crate) fn state(&self) -> Option<&SessionState> {
        match self {
            Held::Cached(g) => g.as_ref(),
            Held::Fresh(s) => Some(s),
        }
    }

    pub(crate) fn state_mut(&mut self) -> Option<&mut SessionState> {
        match self {
            Held::Cached(g) => g.as_mut(),
            Held::Fresh(s) => Some(s),
        }
    }
}

/// What the request did to its session.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Changes {
    pub(crate) modified: bool,
    pub(crate) destroyed: bool,
    pub(crate) cycle_id: bool,
}

/// What commit tells the response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieAction {
    None,
    Set(String),
    Remove,
}

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

pub(crate) struct Inner {
    pub(crate) config: Config,
    pub(crate) signer: CookieSigner,
    pub(crate) admin_token: String,
    pub(crate) cache: Cache,
    pub(crate) stores: Stores,
    epoch: AtomicU64,
    /// [`mono_ms`] of the last authenticated health check; 0 = lease not armed.
    last_health_ms: AtomicU64,
    queue: Option<mpsc::Sender<(SessionId, Arc<Entry>, Instant)>>,
    lag_exceeded: AtomicBool,
}

/// Attempts of a write before giving up (each after re-placing around
/// stores that failed).
const WRITE_ROUNDS: usize = 3;

impl SessionManager {
    /// Checks `config`, connects lazily to the stores, pings them once, and
    /// starts the background tasks (pinger, sweeper, lease check, re-copy,
    /// async replication). Must be called inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`SessionError::Config`] for invalid settings (no stores, more than
    /// 64, R not 1 or 2, a secret shorter than 32 bytes, a bad address).
    pub async fn start(config: Config) -> Result<Self, SessionError> {
        let bad = |m: &str| Err(SessionError::Config(m.to_owned()));
        if config.stores.is_empty() || config.stores.len() > 64 {
            return bad("between 1 and 64 stores are needed");
        }
        if !(1..=2).contains(&config.replicas) {
            return bad("replicas must be 1 or 2");
        }
        if config.secret.len() < 32 {
            return bad("the cluster secret must be at least 32 bytes");
        }
        let options = ClientOptions {
            password: config.store_password.clone(),
            request_timeout: config.store_timeout,
            connect_timeout: config.store_timeout,
            ..ClientOptions::default()
        };
        let stores = Stores::new(&config.stores, &options)
            .map_err(|e| SessionError::Config(e.to_string()))?;
        let signer =
            CookieSigner::new(&config.secret).map_err(|e| SessionError::Config(e.to_string()))?;
        let (queue, rx) = match config.mode {
            Mode::Async => {
                let (tx, rx) = mpsc::channel(config.async_queue.max(1));
                (Some(tx), Some(rx))
            }
            Mode::Sync => (None, None),
        };
        let inner = Arc::new(Inner {
            admin_token: sticky_proto::control::admin_token(&config.secret),
            signer,
            cache: Cache::new(),
            stores,
            epoch: AtomicU64::new(random_epoch()),
            last_health_ms: AtomicU64::new(0),
            queue,
            lag_exceeded: AtomicBool::new(false),
            config,
        });
        inner.stores.ping_all().await;
        let weak = Arc::downgrade(&inner);
        tokio::spawn(background(weak.clone()));
        tokio::spawn(recopy_loop(weak.clone(), inner.stores.subscribe()));
        if let Some(rx) = rx {
            tokio::spawn(async_replicator(weak, rx));
        }
        tracing::info!(
            server = %inner.config.server_name,
            stores = inner.stores.len(),
            live = inner.stores.live().count_ones(),
            replicas = inner.config.replicas,
            mode = ?inner.config.mode,
            "session manager started"
        );
        Ok(Self { inner })
    }

    /// The settings.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Sessions in the local cache.
    pub fn sessions(&self) -> usize {
        self.inner.cache.len()
    }

    /// The current epoch (changes at every fence).
    pub fn epoch(&self) -> u64 {
        self.inner.epoch.load(Ordering::Acquire)
    }

    /// Drops the whole local cache and takes a new epoch. Sessions are
    /// re-loaded from the stores on demand, with a new generation.
    pub fn fence(&self, why: &str) -> u64 {
        let dropped = self.inner.cache.len();
        self.inner.cache.clear();
        let epoch = self.inner.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::counter!("sticky_fences_total").increment(1);
        tracing::warn!(epoch, dropped, reason = why, "fenced: local cache dropped");
        epoch
    }

    /// The health report; `renew_lease` records an authenticated check.
    pub fn health(&self, renew_lease: bool) -> HealthReport {
        if renew_lease {
            self.check_lease();
            self.inner
                .last_health_ms
                .store(mono_ms(), Ordering::Release);
        }
        HealthReport {
            name: self.inner.config.server_name.clone(),
            epoch: self.epoch(),
            sessions: self.sessions() as u64,
            ready: self.inner.stores.live() != 0,
            standby: self.inner.config.standby,
        }
    }

    /// Fences if the lease is armed and has run out. One clock read.
    pub(crate) fn check_lease(&self) {
        let last = self.inner.last_health_ms.load(Ordering::Acquire);
        if last != 0 && mono_ms().saturating_sub(last) > self.inner.config.lease.as_millis() as u64
        {
            // Disarm first so that concurrent requests fence only once.
            if self
                .inner
                .last_health_ms
                .compare_exchange(last, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                self.fence("lease expired: no health check heard");
            }
        }
    }

    /// Is `header` (an `Authorization` value) the admin token?
    pub(crate) fn authorized(&self, header: Option<&[u8]>) -> bool {
        sticky_proto::control::authorized(header, &self.inner.admin_token)
    }

    /// Opens the session a request's cookie names: from the cache, by
    /// takeover from the stores, or new.
    pub(crate) async fn open(&self, cookie: Option<&str>) -> Result<Opened, SessionError> {
        let inner = &self.inner;
        let Some(id) = cookie.and_then(|v| inner.signer.verify(v)) else {
            if cookie.is_some() {
                metrics::counter!("sticky_invalid_cookies_total").increment(1);
            }
            return self.fresh();
        };
        match self.open_id(id).await? {
            Some(opened) => self.check_absolute(opened),
            None => self.fresh(),
        }
    }

    /// Opens session `id` from the cache or by takeover from the stores;
    /// `None` when no store has a live copy (expired, destroyed, never
    /// saved). Does not check the absolute timeout.
    pub(crate) async fn open_id(&self, id: SessionId) -> Result<Option<Opened>, SessionError> {
        let inner = &self.inner;
        if let Some(entry) = inner.cache.get(&id) {
            let guard = entry.slot.clone().lock_owned().await;
            if guard.is_some() {
                entry.touch();
                metrics::counter!("sticky_cache_hits_total").increment(1);
                return Ok(Some(Opened {
                    id,
                    source: Source::Cache,
                    entry: Some(entry),
                    held: Held::Cached(guard),
                }));
            }
            // A load that found nothing, or one that failed: load again below.
        }
        let (entry, _) = inner.cache.get_or_insert(id);
        let mut guard = entry.slot.clone().lock_owned().await;
        if guard.is_some() {
            // Someone else loaded it while we waited.
            entry.touch();
            return Ok(Some(Opened {
                id,
                source: Source::Cache,
                entry: Some(entry),
                held: Held::Cached(guard),
            }));
        }
        let started = Instant::now();
        match takeover::load(inner, &id).await {
            Ok(Some(state)) => {
                metrics::counter!("sticky_takeovers_total").increment(1);
                metrics::histogram!("sticky_takeover_seconds")
                    .record(started.elapsed().as_secs_f64());
                tracing::info!(session = ?id, stamp = %state.stamp, "session taken over from the stores");
                *guard = Some(state);
                entry.touch();
                Ok(Some(Opened {
                    id,
                    source: Source::Store,
                    entry: Some(entry),
                    held: Held::Cached(guard),
                }))
            }
            Ok(None) => {
                // Expired, destroyed, or never saved.
                drop(guard);
                inner.cache.remove_if(&id, &entry);
                metrics::counter!("sticky_sessions_not_found_total").increment(1);
                Ok(None)
            }
            Err(e) => {
                drop(guard);
                inner.cache.remove_if(&id, &entry);
                Err(e)
            }
        }
    }

    pub(crate) fn fresh(&self) -> Result<Opened, SessionError> {
        let id = SessionId::generate()
            .map_err(|e| SessionError::Unavailable(format!("no randomness: {e}")))?;
        Ok(Opened {
            id,
            source: Source::New,
            entry: None,
            held: Held::Fresh(SessionState::new()),
        })
    }

    /// Replaces a session past its absolute timeout by a new one.
    fn check_absolute(&self, opened: Opened) -> Result<Opened, SessionError> {
        match self.unless_too_old(opened) {
            Some(opened) => Ok(opened),
            None => self.fresh(),
        }
    }

    /// `opened`, or `None` (and this server's copy dropped) if it is past
    /// its absolute timeout.
    pub(crate) fn unless_too_old(&self, mut opened: Opened) -> Option<Opened> {
        let limit = self.inner.config.absolute_timeout.as_millis() as u64;
        let expired = opened
            .held
            .state()
            .is_some_and(|s| unix_ms().saturating_sub(s.created_ms) > limit);
        if !expired {
            return Some(opened);
        }
        if let (Some(entry), Held::Cached(g)) = (&opened.entry, &mut opened.held) {
            **g = None;
            self.inner.cache.remove_if(&opened.id, entry);
        }
        None
    }

    /// Copies the request's changes to the stores (sync: waits for every
    /// replica; async: queues) and releases the session.
    pub(crate) async fn commit(
        &self,
        mut opened: Opened,
        changes: Changes,
    ) -> Result<CookieAction, SessionError> {
        let inner = &self.inner;
        let Some(state) = opened.held.state_mut() else {
            return Ok(CookieAction::None);
        };
        if changes.destroyed {
            let destroyed = self.destroy(&opened.id, state).await;
            // Destroyed, or moved elsewhere: either way this copy is done.
            if let Some(entry) = &opened.entry {
                if let Held::Cached(g) = &mut opened.held {
                    **g = None;
                }
                inner.cache.remove_if(&opened.id, entry);
            }
            destroyed?;
            return Ok(if opened.source == Source::New {
                CookieAction::None
            } else {
                CookieAction::Remove
            });
        }
        if changes.cycle_id && !state.is_unsaved() {
            // Login: the session continues under a new id; the old id is destroyed.
            let old_id = opened.id;
            let mut moved = state.clone();
            let destroyed = self.destroy(&old_id, state).await;
            if let (Some(entry), Held::Cached(g)) = (&opened.entry, &mut opened.held) {
                **g = None;
                inner.cache.remove_if(&old_id, entry);
            }
            destroyed?;
            moved.stamp = Stamp::default();
            moved.stored_on = 0;
            let fresh = self.fresh()?;
            opened = Opened {
                id: fresh.id,
                source: Source::New,
                entry: None,
                held: Held::Fresh(moved),
            };
            return Box::pin(self.commit(
                opened,
                Changes {
                    modified: true,
                    ..Changes::default()
                },
            ))
            .await;
        }
        if !changes.modified && !changes.cycle_id {
            self.lazy_touch(&opened.id, state);
            return Ok(CookieAction::None);
        }
        let new_id = if changes.cycle_id {
            Some(self.fresh()?.id)
        } else {
            None
        };
        if let Some(id) = new_id {
            // A never-saved session: just take the new id.
            opened.id = id;
        }
        let payload = serde_json::to_vec(&Stored {
            c: state.created_ms,
            d: state.data.clone(),
        })
        .map_err(|e| SessionError::Data(e.to_string()))?;
        let next = if state.is_unsaved() {
            Stamp::new(1, 1)
        } else {
            state
                .stamp
                .next_seq()
                .ok_or_else(|| SessionError::Data("stamp overflow".into()))?
        };
        if payload.len() > inner.config.max_size {
            metrics::counter!("sticky_too_large_total").increment(1);
            self.drop_local(&mut opened);
            return Err(SessionError::TooLarge {
                size: payload.len(),
                limit: inner.config.max_size,
            });
        }
        // Exactly its length: `to_vec` grows by doubling, and this copy is
        // kept for the session's life (for re-copies), so the slack would
        // cost up to its size again per session (measured: 4.2 KB -> 3.2 KB
        // per 1 KB session on a web server).
        let payload = Bytes::from(payload.into_boxed_slice());
        metrics::histogram!("sticky_session_bytes").record(payload.len() as f64);
        let use_sync =
            inner.config.mode == Mode::Sync || inner.lag_exceeded.load(Ordering::Relaxed);
        // Sync: the stores that acknowledged; async: none yet (the queue
        // records them once copied).
        let stored_on = if use_sync {
            let started = Instant::now();
            match self.write(&opened.id, next, &payload).await {
                Ok(stored_on) => {
                    metrics::histogram!("sticky_replication_seconds")
                        .record(started.elapsed().as_secs_f64());
                    stored_on
                }
                Err(e) => {
                    self.drop_local(&mut opened);
                    return Err(e);
                }
            }
        } else {
            0
        };
        let state = opened
            .held
            .state_mut()
            .ok_or_else(|| SessionError::Data("state vanished".into()))?;
        state.stamp = next;
        state.payload = payload;
        state.stored_on = stored_on;
        state.store_deadline_ms = mono_ms() + inner.config.idle_timeout.as_millis() as u64;
        // A new session (or one under a new id) enters the cache now.
        let entry = match opened.held {
            Held::Fresh(state) => {
                let entry = Entry::new(Some(state));
                inner.cache.insert(opened.id, entry.clone());
                entry
            }
            Held::Cached(guard) => {
                drop(guard);
                match opened.entry {
                    Some(e) => e,
                    None => return Err(SessionError::Data("cached session without entry".into())),
                }
            }
        };
        if !use_sync {
            self.enqueue(opened.id, entry).await;
        }
        let set = opened.source == Source::New || new_id.is_some();
        Ok(if set {
            CookieAction::Set(inner.signer.sign(&opened.id))
        } else {
            CookieAction::None
        })
    }

    /// Drops this server's copy after a failed write, so that the next
    /// request re-loads the last acknowledged version from the stores.
    pub(crate) fn drop_local(&self, opened: &mut Opened) {
        if let (Some(entry), Held::Cached(g)) = (&opened.entry, &mut opened.held) {
            **g = None;
            self.inner.cache.remove_if(&opened.id, entry);
        }
    }

    /// Writes one version to the session's replicas, re-placing around
    /// stores that fail. Returns the stores that acknowledged it.
    pub(crate) async fn write(
        &self,
        id: &SessionId,
        stamp: Stamp,
        payload: &Bytes,
    ) -> Result<u64, SessionError> {
        let inner = &self.inner;
        let key = id.key();
        let ttl = Some(inner.config.idle_timeout);
        let owner = inner.config.server_name.as_str();
        let mut acked = 0u64;
        let mut last_err = String::from("no live store");
        for _ in 0..WRITE_ROUNDS {
            let targets = inner.stores.replicas(id, inner.config.replicas) & !acked;
            if targets == 0 {
                break;
            }
            let puts = Stores::members(targets).map(|i| {
                let c = &inner.stores.clients[i];
                let key = key.as_bytes();
                async move { (i, c.put(key, stamp, owner, ttl, payload).await) }
            });
            for (i, r) in futures_util::future::join_all(puts).await {
                inner.stores.observe(i, &r);
                match r {
                    Ok(()) => acked |= 1 << i,
                    // The store holds this very version or a later one of
                    // the same host tenure (same generation): a retried or
                    // reordered copy of our own, e.g. an async copy that
                    // timed out on a paused store, was applied when it
                    // resumed, and is overtaken by the next change. Not a
                    // move: that store has this change.
                    Err(ClientError::Stale { stored }) if own_version(stamp, stored) => {
                        acked |= 1 << i;
                    }
                    Err(ClientError::Stale { stored }) => {
                        metrics::counter!("sticky_stale_refusals_total").increment(1);
                        tracing::warn!(session = ?id, %stamp, %stored, "write refused as stale: the session moved");
                        return Err(SessionError::Moved { stored });
                    }
                    Err(e) => last_err = format!("{}: {e}", inner.stores.names[i]),
                }
            }
            // Done once every current replica has it.
            if inner.stores.replicas(id, inner.config.replicas) & !acked == 0 && acked != 0 {
                return Ok(acked);
            }
        }
        if acked != 0 && inner.stores.replicas(id, inner.config.replicas) & !acked == 0 {
            return Ok(acked);
        }
        Err(SessionError::Unavailable(last_err))
    }

    /// Replaces the session's copies by tombstones. A refusal as stale
    /// means another server owns the session now: [`SessionError::Moved`],
    /// like any other refused write, never a silent success.
    async fn destroy(&self, id: &SessionId, state: &SessionState) -> Result<(), SessionError> {
        if state.is_unsaved() {
            return Ok(());
        }
        let Some(stamp) = state.stamp.next_seq() else {
            return Ok(());
        };
        let inner = &self.inner;
        let targets = inner.stores.replicas(id, inner.config.replicas) | state.stored_on;
        let key = id.key();
        let dels = Stores::members(targets & inner.stores.live()).map(|i| {
            let c = &inner.stores.clients[i];
            let key = key.as_bytes();
            async move { (i, c.delete(key, stamp, None).await) }
        });
        let mut moved = None;
        for (i, r) in futures_util::future::join_all(dels).await {
            inner.stores.observe(i, &r);
            match r {
                Ok(()) => {}
                Err(ClientError::Stale { stored }) => moved = Some(stored),
                Err(e) => {
                    tracing::debug!(session = ?id, store = %inner.stores.names[i], error = %e, "delete not stored")
                }
            }
        }
        match moved {
            Some(stored) => {
                metrics::counter!("sticky_stale_refusals_total").increment(1);
                tracing::warn!(session = ?id, %stamp, %stored, "destroy refused as stale: the session moved");
                Err(SessionError::Moved { stored })
            }
            None => Ok(()),
        }
    }

    /// Idle-expiry extension, propagated lazily: only once less than half
    /// the idle time is left at the stores, and in the background.
    fn lazy_touch(&self, id: &SessionId, state: &mut SessionState) {
        let idle = self.inner.config.idle_timeout.as_millis() as u64;
        let now = mono_ms();
        if state.is_unsaved() || state.store_deadline_ms.saturating_sub(now) > idle / 2 {
            return;
        }
        state.store_deadline_ms = now + idle;
        let targets = state.stored_on;
        let me = self.clone();
        let key = id.key();
        tokio::spawn(async move {
            for i in Stores::members(targets) {
                let r = me.inner.stores.clients[i]
                    .touch(key.as_bytes(), Some(me.inner.config.idle_timeout))
                    .await;
                me.inner.stores.observe(i, &r);
            }
        });
    }

    async fn enqueue(&self, id: SessionId, entry: Arc<Entry>) {
        let Some(queue) = &self.inner.queue else {
            return;
        };
        if entry.queued.swap(true, Ordering::AcqRel) {
            return; // coalesced: the queued copy will send the newest version
        }
        metrics::gauge!("sticky_replication_queue").increment(1.0);
        if queue.send((id, entry, Instant::now())).await.is_err() {
            tracing::error!("replication queue closed");
        }
    }
}

fn random_epoch() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return unix_ms();
    }
    u64::from_le_bytes(b) >> 1
}

/// Sweeper, lease check and store pinger, until the manager is dropped.
async fn background(weak: std::sync::Weak<Inner>) {
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let m = SessionManager { inner };
        m.check_lease();
        m.inner.stores.ping_all().await;
        n += 1;
        if n % 2 == 0 {
            let idle = m.inner.config.idle_timeout.as_millis() as u64;
            let removed = m.inner.cache.sweep_idle(mono_ms().saturating_sub(idle));
            if removed > 0 {
                metrics::counter!("sticky_sessions_expired_total").increment(removed as u64);
                tracing::debug!(removed, "idle sessions expired");
            }
            metrics::gauge!("sticky_sessions_hosted").set(m.inner.cache.len() as f64);
        }
    }
}

/// True if a store that refused `ours` as stale holds `stored`, a version
/// written by the same host tenure (same generation) at least as new: the
/// store has our change. A higher generation means another server claimed
/// the session (it moved).
fn own_version(ours: Stamp, stored: Stamp) -> bool {
    stored.generation == ours.generation && stored.seq >= ours.seq
}

/// Sessions re-copied at once by [`recopy_loop`].
const RECOPY_PARALLEL: usize = 32;

/// Re-copies one session onto the replicas that lack its newest version;
/// true if it had to copy. `lost`: stores that may have lost their copies.
async fn recopy_one(m: &SessionManager, id: SessionId, entry: Arc<Entry>, lost: u64) -> bool {
    let mut guard = entry.slot.clone().lock_owned().await;
    let Some(state) = guard.as_mut() else {
        return false;
    };
    if state.is_unsaved() || state.stored_on == 0 {
        return false; // async mode: the queue will place it
    }
    state.stored_on &= !lost;
    let want = m.inner.stores.replicas(&id, m.inner.config.replicas);
    let missing = want & !state.stored_on;
    if missing == 0 {
        state.stored_on &= m.inner.stores.live();
        return false;
    }
    let key = id.key();
    let ttl = Some(m.inner.config.idle_timeout);
    for i in Stores::members(missing) {
        let r = m.inner.stores.clients[i]
            .put(
                key.as_bytes(),
                state.stamp,
                &m.inner.config.server_name,
                ttl,
                &state.payload,
            )
            .await;
        m.inner.stores.observe(i, &r);
        match r {
            Ok(()) => state.stored_on |= 1 << i,
            Err(ClientError::Stale { stored }) if own_version(state.stamp, stored) => {
                state.stored_on |= 1 << i;
            }
            Err(ClientError::Stale { stored }) => {
                tracing::warn!(session = ?id, %stored, "re-copy refused: the session moved; dropping it");
                *guard = None;
                m.inner.cache.remove_if(&id, &entry);
                break;
            }
            Err(_) => {}
        }
    }
    true
}

/// Claim 9: when the live set of stores changes, re-copies every hosted
/// session whose replica set gained a store that lacks its newest version.
///
/// A store that was marked down may have lost its copies (it may come back
/// restarted and empty), so until a scan completes, sessions do not count
/// such a store among those holding their newest version.
async fn recopy_loop(weak: std::sync::Weak<Inner>, mut changes: tokio::sync::watch::Receiver<u64>) {
    let mut lost = 0u64;
    loop {
        if changes.changed().await.is_err() {
            return;
        }
        let Some(inner) = weak.upgrade() else { return };
        let m = SessionManager { inner };
        let live = *changes.borrow_and_update();
        lost |= m.inner.stores.take_went_down();
        let started = Instant::now();
        let all = m.inner.cache.snapshot();
        tracing::info!(
            live = live.count_ones(),
            sessions = all.len(),
            "store set changed: re-copying sessions whose replicas changed"
        );
        let rate = u64::from(m.inner.config.recopy_rate.max(1));
        let (mut copied, mut scanned) = (0u64, 0u64);
        metrics::gauge!("sticky_recopy_pending").set(all.len() as f64);
        let mut complete = true;
        // Up to RECOPY_PARALLEL sessions at once: each waits for its
        // stores' acknowledgments, so one at a time would leave the stores
        // and this server mostly idle (measured: 6,000/s per server).
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut sessions = all.into_iter();
        loop {
            while in_flight.len() < RECOPY_PARALLEL {
                if changes.has_changed().unwrap_or(false) {
                    complete = false;
                    break; // a newer change restarts the scan
                }
                let Some((id, entry)) = sessions.next() else {
                    break;
                };
                scanned += 1;
                in_flight.push(recopy_one(&m, id, entry, lost));
            }
            let Some(did_copy) = futures_util::StreamExt::next(&mut in_flight).await else {
                break;
            };
            metrics::gauge!("sticky_recopy_pending").decrement(1.0);
            if did_copy {
                copied += 1;
                metrics::counter!("sticky_recopies_total").increment(1);
                if copied % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(100_000 / rate)).await;
                }
            }
        }
        if complete {
            lost = 0;
        }
        metrics::gauge!("sticky_recopy_pending").set(0.0);
        tracing::info!(
            copied,
            scanned,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "re-copy done"
        );
    }
}

/// Most async copies in flight per web server.
const ASYNC_COPIES_IN_FLIGHT: usize = 4096;

/// Async mode: copies queued sessions, newest version only, up to
/// [`ASYNC_COPIES_IN_FLIGHT`] at once.
async fn async_replicator(
    weak: std::sync::Weak<Inner>,
    mut rx: mpsc::Receiver<(SessionId, Arc<Entry>, Instant)>,
) {
    // Copies in flight. Each session has at most one queued or in flight
    // (changes coalesce), so this bounds how many sessions a slow store can
    // hold back: with 64, a paused store held every copy for its 1 s
    // timeout and a web server's kill then lost ~0.9 s of acknowledged
    // changes (measured with `sticky chaos --mode async`).
    let limit = Arc::new(tokio::sync::Semaphore::new(ASYNC_COPIES_IN_FLIGHT));
    while let Some((id, entry, queued_at)) = rx.recv().await {
        let Some(inner) = weak.upgrade() else { return };
        let m = SessionManager { inner };
        metrics::gauge!("sticky_replication_queue").decrement(1.0);
        let lag = queued_at.elapsed();
        metrics::gauge!("sticky_replication_lag_seconds").set(lag.as_secs_f64());
        m.inner
            .lag_exceeded
            .store(lag > m.inner.config.async_max_lag, Ordering::Relaxed);
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(async move {
            entry.queued.store(false, Ordering::Release);
            let snapshot = {
                let g = entry.slot.lock().await;
                g.as_ref().map(|s| (s.stamp, s.payload.clone()))
            };
            if let Some((stamp, payload)) = snapshot {
                let r = m.write(&id, stamp, &payload).await;
                let mut g = entry.slot.lock().await;
                match r {
                    Ok(on) => {
                        if let Some(s) = g.as_mut().filter(|s| s.stamp == stamp) {
                            s.stored_on = on;
                        }
                    }
                    Err(SessionError::Moved { .. }) => {
                        *g = None;
                        m.inner.cache.remove_if(&id, &entry);
                    }
                    Err(e) => {
                        tracing::warn!(session = ?id, error = %e, "async copy failed; will retry on the next change");
                        metrics::counter!("sticky_async_copy_failures_total").increment(1);
                    }
                }
            }
            drop(permit);
        });
    }
}
