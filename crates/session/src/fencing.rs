//! Fencing (invariants 2 and 4 of `docs/session.md`): this server's epoch,
//! the lease that health checks renew, the fence that drops the whole
//! local cache and takes a new epoch — asked by the director, or on its
//! own when the lease runs out — and the check that refuses a request the
//! director routed for an epoch this server has left.
//!
//! The faces of fencing live elsewhere: `manager` offers
//! [`SessionManager::fence`](crate::SessionManager::fence) and
//! [`SessionManager::health`](crate::SessionManager::health), `control`
//! answers `/.sticky/health` and `/.sticky/fence`, and `layer` turns
//! [`SessionError::Fenced`] into a 503 with the `sticky-fenced` header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cache::Cache;
use crate::clock::unix_ms;
use crate::error::SessionError;

/// The epoch and the lease of one server.
#[derive(Debug)]
pub(crate) struct Fencing {
    epoch: AtomicU64,
    /// [`Clock::now_ms`](crate::clock::Clock::now_ms) of the last
    /// authenticated health check; 0 = lease not armed.
    last_health_ms: AtomicU64,
}

impl Fencing {
    /// A random first epoch (so that a restarted server never reuses one
    /// the director saw), lease not armed.
    pub(crate) fn new() -> Self {
        Self::with_epoch(random_epoch())
    }

    fn with_epoch(epoch: u64) -> Self {
        Self {
            epoch: AtomicU64::new(epoch),
            last_health_ms: AtomicU64::new(0),
        }
    }

    /// The current epoch (changes at every fence).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Drops the whole local `cache` and takes a new epoch; returns it.
    pub(crate) fn fence(&self, cache: &Cache, why: &str) -> u64 {
        let dropped = cache.len();
        cache.clear();
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        metrics::counter!("sticky_fences_total").increment(1);
        tracing::warn!(epoch, dropped, reason = why, "fenced: local cache dropped");
        epoch
    }

    /// Records an authenticated health check at `now_ms` (arms the lease).
    pub(crate) fn renew(&self, now_ms: u64) {
        self.last_health_ms.store(now_ms, Ordering::Release);
    }

    /// Fences (dropping `cache`) if the lease is armed and more than
    /// `lease` passed between the last renewal and `now_ms`.
    pub(crate) fn check_lease(&self, now_ms: u64, lease: Duration, cache: &Cache) {
        if self.lease_ran_out(now_ms, lease.as_millis() as u64) {
            self.fence(cache, "lease expired: no health check heard");
        }
    }

    /// True, once, if the lease is armed and has run out: it is disarmed
    /// first, so that of concurrent callers only one fences.
    fn lease_ran_out(&self, now_ms: u64, lease_ms: u64) -> bool {
        let last = self.last_health_ms.load(Ordering::Acquire);
        last != 0
            && now_ms.saturating_sub(last) > lease_ms
            && self
                .last_health_ms
                .compare_exchange(last, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }

    /// Refuses with [`SessionError::Fenced`] a request the director routed
    /// for `routed`, an epoch this server has left.
    pub(crate) fn check_routed(&self, routed: u64) -> Result<(), SessionError> {
        let now = self.epoch();
        if now != routed {
            return Err(SessionError::Fenced { epoch: now });
        }
        Ok(())
    }
}

fn random_epoch() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return unix_ms();
    }
    u64::from_le_bytes(b) >> 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::Entry;
    use crate::clock::Clock;
    use crate::id::SessionId;

    #[test]
    fn the_lease_runs_out_once_and_only_when_armed() {
        let f = Fencing::with_epoch(10);
        assert!(
            !f.lease_ran_out(1_000_000, 3000),
            "not armed: never runs out"
        );
        f.renew(100);
        assert!(
            !f.lease_ran_out(3100, 3000),
            "exactly the lease: still held"
        );
        assert!(f.lease_ran_out(3101, 3000));
        assert!(!f.lease_ran_out(9999, 3000), "disarmed by the first caller");
        f.renew(20_000);
        assert!(
            !f.lease_ran_out(19_000, 3000),
            "a clock read before the renewal"
        );
    }

    #[tokio::test]
    async fn a_fence_drops_the_cache_and_refuses_older_routes() {
        let cache = Cache::new(Clock::new());
        cache.insert(SessionId::from_bytes([1; 16]), Entry::new(None, 1));
        let f = Fencing::with_epoch(10);
        assert!(f.check_routed(10).is_ok());
        assert_eq!(f.fence(&cache, "test"), 11);
        assert_eq!((f.epoch(), cache.len()), (11, 0));
        assert!(matches!(
            f.check_routed(10),
            Err(SessionError::Fenced { epoch: 11 })
        ));
        assert!(f.check_routed(11).is_ok());
        f.renew(5);
        f.check_lease(3005, Duration::from_secs(3), &cache);
        assert_eq!(f.epoch(), 11, "within the lease");
        f.check_lease(3006, Duration::from_secs(3), &cache);
        assert_eq!(f.epoch(), 12, "lease ran out: fenced");
    }

    #[test]
    fn first_epochs_are_random_and_leave_room_to_count_up() {
        let a = Fencing::new().epoch();
        let b = Fencing::new().epoch();
        assert_ne!(a, b);
        assert!(a <= u64::MAX >> 1 && b <= u64::MAX >> 1);
    }
}
