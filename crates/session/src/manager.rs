//! Starting a [`SessionManager`] and the background tasks it spawns
//! (sweeper, lease check and pinger here; re-copy in `recopy`; the async
//! replicator in `replicator`), and its server-level API: settings,
//! health, fence. The handle and its shared state are in `state`; each
//! request's operations in `open`, `commit` and `session`.

use std::sync::{Arc, Weak};

use sticky_proto::control::HealthReport;

use crate::config::Config;
use crate::error::SessionError;
use crate::recopy::recopy_loop;
use crate::replicator::async_replicator;
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
        let (inner, rx) = Inner::new(config)?;
        let inner = Arc::new(inner);
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

    /// Drops the whole local cache and takes a new epoch. Sessions are
    /// re-loaded from the stores on demand, with a new generation.
    pub fn fence(&self, why: &str) -> u64 {
        self.inner.fencing.fence(&self.inner.cache, why)
    }

    /// The health report; `renew_lease` records an authenticated check.
    pub fn health(&self, renew_lease: bool) -> HealthReport {
        if renew_lease {
            self.check_lease();
            self.inner.fencing.renew(self.inner.clock.now_ms());
        }
        HealthReport {
            name: self.inner.config.server_name.clone(),
            epoch: self.epoch(),
            sessions: self.sessions() as u64,
            ready: self.inner.stores.live() != 0,
            standby: self.inner.config.standby,
            serving: true,
        }
    }

    /// Fences if the lease is armed and has run out. One clock read.
    pub(crate) fn check_lease(&self) {
        let inner = &self.inner;
        inner
            .fencing
            .check_lease(inner.clock.now_ms(), inner.config.lease, &inner.cache);
    }

    /// Is `header` (an `Authorization` value) the admin token?
    pub(crate) fn authorized(&self, header: Option<&[u8]>) -> bool {
        sticky_proto::control::authorized(header, &self.inner.admin_token)
    }
}

/// Sweeper, lease check and store pinger, until the manager is dropped.
async fn background(weak: Weak<Inner>) {
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
    async fn without_health_checks_for_a_lease_the_server_fences_itself() {
        let mut c = config(2);
        c.lease = Duration::from_secs(3);
        let m = manager(c);
        let id = SessionId::from_bytes([6; 16]);
        m.inner.cache.insert(
            id,
            Entry::new(Some(SessionState::new()), m.inner.clock.now_ms()),
        );
        let first = m.epoch();
        tokio::time::advance(Duration::from_secs(60)).await;
        m.check_lease();
        assert_eq!(m.epoch(), first, "no lease before the first health check");
        m.health(true);
        tokio::time::advance(Duration::from_millis(2900)).await;
        m.health(true);
        tokio::time::advance(Duration::from_millis(2900)).await;
        m.check_lease();
        assert_eq!(m.epoch(), first, "renewed in time: no fence");
        assert_eq!(m.sessions(), 1);
        tokio::time::advance(Duration::from_millis(200)).await;
        m.check_lease();
        assert_eq!(m.epoch(), first + 1, "3.1 s without a check: fenced");
        assert_eq!(m.sessions(), 0, "the local cache is dropped");
        tokio::time::advance(Duration::from_secs(60)).await;
        m.check_lease();
        assert_eq!(
            m.epoch(),
            first + 1,
            "fenced once; the lease waits to be re-armed"
        );
        assert_eq!(m.health(true).epoch, first + 1);
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
}
