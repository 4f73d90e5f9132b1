//! Fencing (invariants 2 and 4 of `docs/session.md`): this server's epoch,
//! the lease that health checks renew, and the fence that drops the whole
//! local cache and takes a new epoch — asked by the director, or on its
//! own when the lease runs out. Also the check that refuses a request the
//! director routed for an epoch this server has left.
//!
//! The HTTP faces of fencing live elsewhere: `control` answers
//! `/.sticky/health` and `/.sticky/fence`, `layer` turns
//! [`SessionError::Fenced`] into a 503 with the `sticky-fenced` header.

use std::sync::atomic::{AtomicU64, Ordering};

use sticky_proto::control::HealthReport;

use crate::clock::unix_ms;
use crate::error::SessionError;
use crate::manager::SessionManager;

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

    pub(crate) fn with_epoch(epoch: u64) -> Self {
        Self {
            epoch: AtomicU64::new(epoch),
            last_health_ms: AtomicU64::new(0),
        }
    }

    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Takes the next epoch; returns it.
    fn next_epoch(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Records an authenticated health check at `now_ms` (arms the lease).
    fn renew(&self, now_ms: u64) {
        self.last_health_ms.store(now_ms, Ordering::Release);
    }

    /// True, once, if the lease is armed and more than `lease_ms` passed
    /// since the last renewal at `now_ms`: the lease is disarmed first, so
    /// that of concurrent callers only one fences.
    fn lease_ran_out(&self, now_ms: u64, lease_ms: u64) -> bool {
        let last = self.last_health_ms.load(Ordering::Acquire);
        last != 0
            && now_ms.saturating_sub(last) > lease_ms
            && self
                .last_health_ms
                .compare_exchange(last, 0, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
    }
}

fn random_epoch() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        return unix_ms();
    }
    u64::from_le_bytes(b) >> 1
}

impl SessionManager {
    /// The current epoch (changes at every fence).
    pub fn epoch(&self) -> u64 {
        self.inner.fencing.epoch()
    }

    /// Drops the whole local cache and takes a new epoch. Sessions are
    /// re-loaded from the stores on demand, with a new generation.
    pub fn fence(&self, why: &str) -> u64 {
        let dropped = self.inner.cache.len();
        self.inner.cache.clear();
        let epoch = self.inner.fencing.next_epoch();
        metrics::counter!("sticky_fences_total").increment(1);
        tracing::warn!(epoch, dropped, reason = why, "fenced: local cache dropped");
        epoch
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
        }
    }

    /// Fences if the lease is armed and has run out. One clock read.
    pub(crate) fn check_lease(&self) {
        let lease_ms = self.inner.config.lease.as_millis() as u64;
        if self
            .inner
            .fencing
            .lease_ran_out(self.inner.clock.now_ms(), lease_ms)
        {
            self.fence("lease expired: no health check heard");
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(f.next_epoch(), 11);
        assert_eq!(f.epoch(), 11);
    }

    #[test]
    fn first_epochs_are_random_and_leave_room_to_count_up() {
        let a = Fencing::new().epoch();
        let b = Fencing::new().epoch();
        assert_ne!(a, b);
        assert!(a < u64::MAX / 2 + 1 && b < u64::MAX / 2 + 1);
    }
}
