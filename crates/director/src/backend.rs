//! [`Backend`]: one web server as the director sees it: its address, its
//! route cookie, its connection pools, its health and admin state, and its
//! counters; and [`ActiveGuard`], which counts a request in flight on it.
//!
//! Health and admin state change rarely and under a mutex (or an atomic);
//! the request path never takes that mutex: it reads the routing table,
//! which is rebuilt from these states whenever one changes.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::HeaderValue;
use tokio::sync::Notify;

use crate::config::{DirectorConfig, ServerSpec};
use crate::pool::{Pool, RawPool};
use crate::route_cookie::RouteSigner;
use crate::status::{millis, AdminState, Role, ServerState, ServerStatus};
use crate::worker;

/// Health as the checks and the request path have established it.
#[derive(Debug)]
pub(crate) struct Health {
    /// Checks pass (after `rise` in a row, or the first one at start).
    pub(crate) up: bool,
    /// Never checked successfully nor marked down yet: one good check is
    /// enough to bring it up.
    pub(crate) initial: bool,
    pub(crate) successes: u32,
    pub(crate) failures: u32,
    /// Last epoch reported.
    pub(crate) epoch: Option<u64>,
    /// Set when the server stopped being routable (marked down or
    /// evacuated): the epoch it had then. It is routed to again only once
    /// it reports another epoch (invariant 4).
    pub(crate) fence_from: Option<u64>,
    /// A fence request is being made (log it once).
    pub(crate) fencing: bool,
    pub(crate) sessions: u64,
    pub(crate) ready: bool,
    pub(crate) last_error: Option<String>,
    pub(crate) changed_at: Instant,
}

impl Health {
    fn new() -> Self {
        Self {
            up: false,
            initial: true,
            successes: 0,
            failures: 0,
            epoch: None,
            fence_from: None,
            fencing: false,
            sessions: 0,
            ready: false,
            last_error: None,
            changed_at: Instant::now(),
        }
    }

    /// Up and fenced: may receive requests (if the admin state allows).
    pub(crate) fn routable(&self) -> bool {
        self.up && self.fence_from.is_none()
    }

    /// Marks the server down now; returns false if it already was.
    pub(crate) fn mark_down(&mut self, fall: u32) -> bool {
        self.successes = 0;
        self.failures = self.failures.max(fall);
        self.initial = false;
        if !self.up {
            return false;
        }
        self.up = false;
        self.fencing = false;
        // No fence when it comes back: its lease at the stores says whether
        // it may still serve its cache (a server whose lease lapsed fenced
        // itself and reports a new epoch), and fencing a server that only
        // missed health checks (a pause, a cut from this director) would
        // drop the only live copy of sessions whose stores fail next
        // (docs/safety.md §2). Evacuation still fences (`State::set_admin`).
        self.changed_at = Instant::now();
        true
    }
}

/// One web server.
pub(crate) struct Backend {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    /// A peer director's relay or public listener, which requests are
    /// relayed to (`forward::Attempts::relay`), not a web server: never
    /// health checked, marked down or routed to by the table.
    peer: bool,
    /// When (ms since the director started, plus one; 0: never) a `421`
    /// last named this server as a session's live owner while it could
    /// not be reached from here: its clients' requests are relayed to a
    /// peer director straight away for a while
    /// ([`forward::Attempts`](crate::forward::Attempts)), not first sent
    /// to a failover server whose claim would find the lease live again.
    owner_seen_at: AtomicU64,
    standby: AtomicBool,
    weight: AtomicU32,
    admin: AtomicU8,
    /// `NAME.MAC`, what a valid route cookie naming this server holds.
    pub(crate) cookie_value: String,
    /// The whole `Set-Cookie` header that routes a client here.
    pub(crate) set_cookie: HeaderValue,
    /// Connections for proxied requests, one pool per worker thread so a
    /// connection is only ever used by the event loop that drives it.
    pools: Box<[Pool]>,
    /// The fast path's connections, likewise one pool per worker thread.
    raw_pools: Box<[RawPool]>,
    /// The health checker's own connection, so checks never queue behind
    /// client traffic.
    pub(crate) health_pool: Pool,
    health: Mutex<Health>,
    /// Wakes the health checker for an immediate check (after `enable`).
    pub(crate) wake: Notify,
    /// Removed from the configuration: its health checker stops.
    pub(crate) retired: AtomicBool,
    /// The epoch it last reported (0: none yet), sent with every request
    /// as `sticky-epoch` so that the server refuses requests routed before
    /// it fenced itself.
    pub(crate) epoch_hint: AtomicU64,
    /// The last epoch whose sessions the director asked the failover
    /// candidates to adopt (0: none), so each death is announced once.
    pub(crate) adopt_asked: AtomicU64,
    /// Requests in flight (until their response body is sent) and tunnels.
    pub(crate) active: AtomicU64,
    /// Requests sent to it.
    pub(crate) requests: AtomicU64,
    /// Clients whose cookie named it and that were routed elsewhere.
    pub(crate) failovers: AtomicU64,
    /// Requests that failed on it (connect, send or timeout).
    pub(crate) errors: AtomicU64,
    /// A request could not connect to it (a timeout or an error other than
    /// a refusal) since its last successful health check: where the
    /// director chooses, every request passes it over until a check
    /// reaches it again ([`Self::mark_unreachable`]).
    unreachable: AtomicBool,
    /// Times the health checks marked it down with requests to end
    /// ([`Self::end_requests`]); a request reads it when its server is
    /// chosen, so a mark while it connects is not missed.
    downs: AtomicU64,
    /// Wakes the requests waiting for its answer when it is marked down,
    /// one per worker thread so that registering a waiter (twice per
    /// request) never contends across threads.
    down_signals: Box<[Notify]>,
    /// The director's count of requests ended by a mark-down (shared with
    /// its `Stats`): a streamed response body ended that way counts there.
    ended_on_down: Arc<AtomicU64>,
}

/// Wakes a streamed response body when its server is marked down
/// ([`ActiveGuard::poll_marked_down`]).
pub(crate) type DownWatch = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Why a request has no answer from its web server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unanswered {
    /// `response_timeout` passed.
    TimedOut,
    /// The health checks marked the server down meanwhile.
    MarkedDown,
}

impl Backend {
    /// `ended_on_down`: the director's count of requests ended by a
    /// mark-down.
    pub(crate) fn new(
        spec: &ServerSpec,
        config: &DirectorConfig,
        signer: &RouteSigner,
        ended_on_down: Arc<AtomicU64>,
    ) -> Self {
        let cookie_value = signer.value(&spec.name);
        let mut set_cookie = format!(
            "{}={cookie_value}; Path=/; HttpOnly; SameSite=Lax",
            config.route_cookie
        );
        if config.cookie_secure {
            set_cookie.push_str("; Secure");
        }
        // Names and cookie names are checked to be visible ASCII.
        let set_cookie =
            HeaderValue::from_str(&set_cookie).unwrap_or(HeaderValue::from_static("invalid=1"));
        Self {
            name: spec.name.clone(),
            addr: spec.addr,
            peer: false,
            owner_seen_at: AtomicU64::new(0),
            standby: AtomicBool::new(spec.standby),
            weight: AtomicU32::new(spec.weight),
            admin: AtomicU8::new(AdminState::Enabled.to_u8()),
            cookie_value,
            set_cookie,
            pools: (0..config.threads.max(1))
                .map(|_| {
                    Pool::new(
                        spec.addr,
                        config.connect_timeout,
                        config.max_idle_per_server,
                    )
                })
                .collect(),
            raw_pools: (0..config.threads.max(1))
                .map(|_| {
                    RawPool::new(
                        spec.addr,
                        config.connect_timeout,
                        config.max_idle_per_server,
                    )
                })
                .collect(),
            health_pool: Pool::new(spec.addr, config.health.timeout, 1),
            health: Mutex::new(Health::new()),
            wake: Notify::new(),
            retired: AtomicBool::new(false),
            epoch_hint: AtomicU64::new(0),
            adopt_asked: AtomicU64::new(0),
            active: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            unreachable: AtomicBool::new(false),
            downs: AtomicU64::new(0),
            down_signals: (0..config.threads.max(1)).map(|_| Notify::new()).collect(),
            ended_on_down,
        }
    }

    /// A peer director taking relayed requests at `listen`.
    pub(crate) fn peer(
        name: &str,
        listen: SocketAddr,
        config: &DirectorConfig,
        signer: &RouteSigner,
        ended_on_down: Arc<AtomicU64>,
    ) -> Self {
        let spec = ServerSpec::new(name, listen);
        Self {
            peer: true,
            ..Self::new(&spec, config, signer, ended_on_down)
        }
    }

    /// Whether this is a peer director, not a web server.
    pub(crate) fn is_peer(&self) -> bool {
        self.peer
    }

    /// A `421` named this server as a session's live owner, `now_ms` after
    /// the director started, while it could not be reached from here.
    pub(crate) fn seen_as_owner(&self, now_ms: u64) {
        self.owner_seen_at
            .store(now_ms.saturating_add(1), Ordering::Relaxed);
    }

    /// Whether that happened less than `within_ms` before `now_ms`.
    pub(crate) fn seen_as_owner_within(&self, now_ms: u64, within_ms: u64) -> bool {
        let at = self.owner_seen_at.load(Ordering::Relaxed);
        at != 0 && now_ms.saturating_add(1).saturating_sub(at) < within_ms
    }

    /// What [`Self::answer`] compares against: read when a request's
    /// server is chosen.
    pub(crate) fn downs(&self) -> u64 {
        self.downs.load(Ordering::Acquire)
    }

    /// Ends every request waiting for this server's answer (its health
    /// checks marked it down): each gets [`Unanswered::MarkedDown`].
    pub(crate) fn end_requests(&self) {
        self.downs.fetch_add(1, Ordering::AcqRel);
        for signal in self.down_signals.iter() {
            signal.notify_waiters();
        }
    }

    /// Waits for `exchange` (a request sent to this server and its
    /// response head) up to `limit`, or until the server is marked down
    /// with its requests ended, whichever comes first. `downs` is
    /// [`Self::downs`] as read when the server was chosen.
    pub(crate) async fn answer<F: Future>(
        &self,
        downs: u64,
        limit: Duration,
        exchange: F,
    ) -> Result<F::Output, Unanswered> {
        // Already marked: the exchange is not even started.
        if self.downs() != downs {
            return Err(Unanswered::MarkedDown);
        }
        tokio::select! {
            biased;
            answered = tokio::time::timeout(limit, exchange) => {
                answered.map_err(|_elapsed| Unanswered::TimedOut)
            }
            () = self.marked_down_since(downs) => Err(Unanswered::MarkedDown),
        }
    }

    /// Returns once the server has been marked down with its requests
    /// ended since [`Self::downs`] read `downs`.
    async fn marked_down_since(&self, downs: u64) {
        let signal = &self.down_signals[worker::current() % self.down_signals.len()];
        // Created (so counted as waiting by `notify_waiters`) before the
        // check below: a mark after the check wakes it.
        let marked = signal.notified();
        if self.downs() != downs {
            return;
        }
        marked.await;
    }

    /// Counts a request (its wait for a head, its body or its tunnel)
    /// ended because the health checks marked this server down.
    pub(crate) fn count_ended_on_down(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.ended_on_down.fetch_add(1, Ordering::Relaxed);
    }

    /// Whether a request could not connect to it since its last
    /// successful health check.
    pub(crate) fn unreachable(&self) -> bool {
        self.unreachable.load(Ordering::Acquire)
    }

    /// A request could not connect to it; true if it was not marked yet
    /// (the routing table must be republished).
    pub(crate) fn mark_unreachable(&self) -> bool {
        !self.unreachable.swap(true, Ordering::AcqRel)
    }

    /// A health check reached it; true if it was marked unreachable.
    pub(crate) fn clear_unreachable(&self) -> bool {
        self.unreachable.swap(false, Ordering::AcqRel)
    }

    /// The pool of the calling worker thread.
    pub(crate) fn pool(&self) -> &Pool {
        &self.pools[worker::current() % self.pools.len()]
    }

    /// The fast path's pool of the calling worker thread.
    pub(crate) fn raw_pool(&self) -> &RawPool {
        &self.raw_pools[worker::current() % self.raw_pools.len()]
    }

    /// Closes the idle connections of every worker (the server went down).
    pub(crate) fn clear_pools(&self) {
        for p in self.pools.iter() {
            p.clear();
        }
        for p in self.raw_pools.iter() {
            p.clear();
        }
    }

    pub(crate) fn health(&self) -> MutexGuard<'_, Health> {
        self.health.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn standby(&self) -> bool {
        self.standby.load(Ordering::Relaxed)
    }

    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Ordering::Relaxed)
    }

    /// Applies a reloaded spec with the same name and address.
    pub(crate) fn update(&self, spec: &ServerSpec) -> bool {
        let old_standby = self.standby.swap(spec.standby, Ordering::Relaxed);
        let old_weight = self.weight.swap(spec.weight, Ordering::Relaxed);
        old_standby != spec.standby || old_weight != spec.weight
    }

    pub(crate) fn admin(&self) -> AdminState {
        AdminState::from_u8(self.admin.load(Ordering::Relaxed))
    }

    pub(crate) fn set_admin(&self, state: AdminState) -> AdminState {
        AdminState::from_u8(self.admin.swap(state.to_u8(), Ordering::Relaxed))
    }

    /// The state shown to operators.
    pub(crate) fn status(&self) -> ServerStatus {
        let h = self.health();
        let admin = self.admin();
        let state = match admin {
            AdminState::Evacuating => ServerState::Evacuating,
            _ if !h.up => ServerState::Down,
            _ if h.fence_from.is_some() => ServerState::Fencing,
            AdminState::Draining => ServerState::Draining,
            AdminState::Enabled => ServerState::Up,
        };
        ServerStatus {
            name: self.name.clone(),
            addr: self.addr,
            role: if self.standby() {
                Role::Standby
            } else {
                Role::Web
            },
            state,
            admin,
            healthy: h.up,
            ready: h.ready,
            unreachable: self.unreachable(),
            weight: self.weight(),
            epoch: h.epoch,
            sessions: h.sessions,
            active: self.active.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
            failovers: self.failovers.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            since_change_ms: millis(h.changed_at.elapsed()),
            last_error: h.last_error.clone(),
        }
    }
}

/// Counts one request in flight on a backend until dropped, and knows
/// whether the health checks have marked that backend down (with its
/// requests ended) since the request chose it.
pub(crate) struct ActiveGuard(Arc<Backend>, u64);

impl ActiveGuard {
    /// Counts a request that just chose `backend`: a mark-down from here
    /// on ends it (`end_requests_on_down`).
    pub(crate) fn new(backend: Arc<Backend>) -> Self {
        backend.active.fetch_add(1, Ordering::Relaxed);
        let downs = backend.downs();
        Self(backend, downs)
    }

    pub(crate) fn backend(&self) -> &Arc<Backend> {
        &self.0
    }

    /// [`Backend::downs`] as read when the request chose the backend.
    pub(crate) fn downs(&self) -> u64 {
        self.1
    }

    /// Returns once the server has been marked down with its requests
    /// ended since the request chose it (never, with
    /// `end_requests_on_down` off), counted as a request ended so: for a
    /// tunnel, which then closes.
    pub(crate) async fn marked_down(&self) {
        self.0.marked_down_since(self.1).await;
        self.0.count_ended_on_down();
    }

    /// For a streamed response body waiting for bytes: whether its server
    /// was marked down since the request chose it (the body then ends,
    /// counted as a request ended by the mark); if not, `cx` is woken when
    /// it is. `watch` is created at the first wait, so bodies that never
    /// wait allocate nothing.
    pub(crate) fn poll_marked_down(
        &self,
        watch: &mut Option<DownWatch>,
        cx: &mut Context<'_>,
    ) -> bool {
        let marked = self.0.downs() != self.1 || {
            let w = watch.get_or_insert_with(|| {
                let (backend, downs) = (Arc::clone(&self.0), self.1);
                Box::pin(async move { backend.marked_down_since(downs).await })
            });
            w.as_mut().poll(cx) == Poll::Ready(())
        };
        if marked {
            *watch = None;
            self.0.count_ended_on_down();
            tracing::debug!(server = %self.0.name, "web server marked down inside a response body: body ended");
        }
        marked
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}
