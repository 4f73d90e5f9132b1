//! Starting a [`SessionManager`] and the background tasks it spawns
//! (sweeper and pinger here; lease renewal in `lease`; re-copy in
//! `recopy`; the async replicator in `replicator`), and its server-level API: settings,
//! health, fence. The handle and its shared state are in `state`; each
//! request's operations in `open`, `commit` and `session`.

use std::sync::{Arc, Weak};

use sticky_proto::control::HealthReport;

use crate::config::Config;
use crate::error::SessionError;
use crate::lease::{claim_quorum, lease_loop};
use crate::recopy::recopy_loop;
use crate::replicator::{async_replicator, write_quorum};
use crate::state::{Inner, SessionManager};
use crate::stores::PING_INTERVAL;

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
        Self::start_with_background(config, tokio::runtime::Handle::current()).await
    }

    /// [`start`](Self::start), its background tasks (pinger, sweeper,
    /// lease check, re-copy, async replication) spawned on `background`
    /// (another runtime's handle) rather than on the caller's runtime.
    ///
    /// For a server whose request threads each run an event loop of their
    /// own: a re-copy of many sessions (a snapshot of the whole cache, then
    /// batches of copies) must not run between their requests. The store
    /// connections are opened here, by the first ping, so they stay on the
    /// caller's runtime (a connection re-opened later lives on the runtime
    /// of the task that re-opened it).
    ///
    /// # Errors
    ///
    /// As [`start`](Self::start).
    pub async fn start_with_background(
        config: Config,
        background: tokio::runtime::Handle,
    ) -> Result<Self, SessionError> {
        let (inner, rx) = Inner::new(config)?;
        let inner = Arc::new(inner);
        // The first pings and the first renewal, at once, on this runtime
        // (they open the store connections). Start-up goes on as soon as a
        // quorum of stores renewed the lease — a server that reaches a
        // quorum serves at once — or after one store timeout; a store
        // that does not answer (paused, cut off) is found out by its ping
        // in the background instead of holding the start for a store
        // timeout (session 24: a web server restarted during a store
        // fault listened only a second after its start).
        let first = SessionManager {
            inner: inner.clone(),
        };
        let epoch = inner.fencing.epoch();
        let looks = tokio::spawn(async move {
            futures_util::future::join(first.inner.stores.ping_all(), first.renew_lease()).await;
        });
        let clock = inner.clock;
        let believed = inner
            .fencing
            .wait_for_belief(epoch, inner.config.store_timeout, || clock.now_ms());
        tokio::select! {
            _ = looks => {}
            _ = believed => {}
        }
        let weak = Arc::downgrade(&inner);
        background.spawn(pinger(weak.clone()));
        background.spawn(lease_loop(
            weak.clone(),
            inner.fencing.renew_now.clone(),
            inner.config.lease_belief(),
        ));
        background.spawn(recopy_loop(weak.clone(), inner.stores.subscribe()));
        if let Some(rx) = rx {
            background.spawn(async_replicator(weak, rx));
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

    /// Serialized bytes of the sessions in the local cache (what
    /// [`Config::max_bytes`] caps).
    pub fn session_bytes(&self) -> u64 {
        self.inner.cache.bytes()
    }

    /// The client a request came from, for the per-address limit of new
    /// sessions: `peer` (the TCP peer), or, when `peer` is one of
    /// [`Config::trusted_proxies`], the last `X-Forwarded-For` address
    /// that is not a trusted proxy itself.
    pub fn client_address(
        &self,
        peer: std::net::IpAddr,
        headers: &http::HeaderMap,
    ) -> std::net::IpAddr {
        crate::admission::client_address(&self.inner.config.trusted_proxies, peer, headers)
    }

    /// The current epoch (changes at every fence).
    pub fn epoch(&self) -> u64 {
        self.inner.fencing.epoch()
    }

    /// Drops the whole local cache and takes a new epoch, and releases the
    /// old epoch's lease at the stores. Sessions are re-loaded from the
    /// stores on demand, with a new generation. Returns the new epoch.
    pub fn fence(&self, why: &str) -> u64 {
        let epoch = self.inner.fencing.epoch();
        self.fence_epoch(epoch, why)
            .unwrap_or_else(|| self.inner.fencing.epoch())
    }

    /// Whether this server holds its lease at a quorum of stores now, and
    /// so may serve from its cache (`docs/safety.md` §2).
    pub fn serving(&self) -> bool {
        let inner = &self.inner;
        inner
            .fencing
            .holds(inner.fencing.epoch(), inner.clock.now_ms())
    }

    /// Whether the stores this server sees up and answering promptly are
    /// enough for a claim's phases and for a write (`docs/safety.md` §1,
    /// §2). Prompt, not only up: a store cut off from this server is "up"
    /// until a request to it times out, but a claim that needs it would
    /// wait that long and fail (`Stores::prompt`).
    fn reaches_quorums(&self) -> bool {
        let inner = &self.inner;
        let total = inner.stores.len();
        let needed = claim_quorum(total, inner.config.replicas)
            .max(write_quorum(total, inner.config.replicas));
        inner.stores.prompt().count_ones() as usize >= needed
    }

    /// The health report (checks the lease first).
    pub fn health(&self) -> HealthReport {
        self.check_lease();
        HealthReport {
            name: self.inner.config.server_name.clone(),
            epoch: self.epoch(),
            sessions: self.sessions() as u64,
            // New clients go where they can be served now: a server
            // without its lease (just started before a quorum of its
            // stores, or lapsed) answers 503 until it holds it again.
            // Nor is one ready that sees too few stores to take a session
            // over or write one (cut from a quorum of them), while its
            // lease still lasts: a director prefers another as the
            // failover target of a dead server's users.
            ready: self.reaches_quorums() && self.serving() && !self.stopping(),
            standby: self.inner.config.standby,
            serving: self.serving(),
            stopping: self.stopping(),
        }
    }

    /// Is `header` (an `Authorization` value) the admin token?
    pub(crate) fn authorized(&self, header: Option<&[u8]>) -> bool {
        sticky_proto::control::authorized(header, &self.inner.admin_token)
    }
}

/// Sweeper and store pinger, until the manager is dropped.
async fn pinger(weak: Weak<Inner>) {
    let mut tick = tokio::time::interval(PING_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut n: u64 = 0;
    loop {
        tick.tick().await;
        let Some(inner) = weak.upgrade() else { return };
        let m = SessionManager { inner };
        m.inner.stores.ping_all().await;
        n += 1;
        if n % 2 == 0 {
            m.sweep_idle();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cache::{Entry, SessionState};
    use crate::error::SessionError;
    use crate::id::SessionId;
    use crate::open::Source;
    use crate::state::tests::{config, manager};

    #[tokio::test(start_paused = true)]
    async fn when_its_belief_lapses_the_server_fences_itself_once() {
        let m = manager(config(2));
        let id = SessionId::from_bytes([6; 16]);
        m.inner.cache.insert(
            id,
            Entry::new(Some(SessionState::new()), m.inner.clock.now_ms()),
        );
        let first = m.epoch();
        m.check_lease();
        assert!(m.serving() && m.health().serving);
        assert_eq!((m.epoch(), m.sessions()), (first, 1), "belief holds");
        tokio::time::advance(Duration::from_secs(3600)).await;
        assert!(!m.serving(), "the test belief ran out");
        m.check_lease();
        assert_eq!(m.epoch(), first + 1, "lapsed: fenced");
        assert_eq!(m.sessions(), 0, "the local cache is dropped");
        assert!(!m.health().serving, "no belief in the new epoch yet");
        tokio::time::advance(Duration::from_secs(60)).await;
        m.check_lease();
        assert_eq!(m.epoch(), first + 1, "fenced once; waits for a renewal");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_routed_for_an_old_epoch_is_refused() {
        let m = manager(config(1));
        let epoch = m.epoch();
        let now = m.fence("test");
        assert_eq!(now, epoch + 1);
        match m.load_routed(None, Some(epoch)).await {
            Err(SessionError::Fenced { epoch: e }) => assert_eq!(e, now),
            other => panic!("{:?}", other.map(|s| s.source())),
        }
        let s = m.load_routed(None, Some(now)).await;
        assert_eq!(s.map(|s| s.source()).ok(), Some(Source::New));
    }

    /// A stopping server has fenced itself, but says it is going away
    /// (the director then moves the client instead of taking the new
    /// epoch), whatever epoch the request was routed for; its health
    /// report says so too.
    #[tokio::test(start_paused = true)]
    async fn a_stopping_server_refuses_as_stopping_for_any_epoch() {
        let m = manager(config(1));
        let epoch = m.epoch();
        m.inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let now = m.fence("shutting down");
        for routed in [Some(epoch), Some(now), None] {
            match m.load_routed(None, routed).await {
                Err(SessionError::Stopping) => {}
                other => panic!("{routed:?}: {:?}", other.map(|s| s.source())),
            }
        }
        let h = m.health();
        assert!(h.stopping && !h.ready, "{h:?}");
    }
}
