//! Fencing (invariants 2 and 4, `docs/safety.md` §2): this server's epoch,
//! its *belief* that a quorum of stores holds its lease, the fence that
//! drops the whole local cache and takes a new epoch — asked by the
//! director, or on its own when the belief lapses or a store reports the
//! lease dead — and the check that refuses a request the director routed
//! for an epoch this server has left.
//!
//! The lease itself is renewed at the stores by [`crate::lease`]; this
//! module only keeps what the renewals prove. The faces of fencing live
//! elsewhere: `manager` offers
//! [`SessionManager::fence`](crate::SessionManager::fence), `control`
//! answers `/.sticky/health` and `/.sticky/fence`, and `layer` turns
//! [`SessionError::Fenced`] into a 503 with the `sticky-fenced` header.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::cache::Cache;
use crate::clock::unix_ms;
use crate::error::SessionError;

/// Bound on how far the clock rates of two processes differ, as a
/// fraction (1 / `DRIFT_DIVISOR`): 1%, far above what NTP slewing or a
/// VM's drift produce (`docs/safety.md`, the fault model). A belief ends
/// `2ε` of the lease before the stores' records can.
const DRIFT_DIVISOR: u64 = 100;

/// The epoch and the lease belief of one server.
#[derive(Debug)]
pub(crate) struct Fencing {
    /// Grows at every fence; random at process start.
    epoch: AtomicU64,
    /// [`Clock::now_ms`](crate::clock::Clock::now_ms) until which a quorum
    /// of stores is known to hold this epoch's lease; 0: no belief (a new
    /// epoch whose first renewal has not been acknowledged).
    until_ms: AtomicU64,
    /// Clock ms when the current epoch began (0: at process start).
    epoch_started_ms: AtomicU64,
    /// Serializes fences and extensions, so that an extension for an old
    /// epoch never lands on a new one.
    write: Mutex<()>,
    /// Wakes the renewal task at once (after a fence).
    pub(crate) renew_now: Arc<Notify>,
    /// Wakes requests waiting for a belief (after the first extension of
    /// an epoch).
    believed: Notify,
}

/// Why a renewal did not extend the belief.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Extend {
    /// Extended (or it already reached further).
    Extended,
    /// The renewal was for an epoch this server has left.
    OldEpoch,
    /// The belief had ended before the acknowledgements arrived: they count
    /// for nothing, and the server must fence.
    Lapsed,
}

impl Fencing {
    /// A random first epoch (so that a restarted server never reuses one
    /// the director or a store saw), no belief yet.
    pub(crate) fn new() -> Self {
        Self::with_epoch(random_epoch())
    }

    pub(crate) fn with_epoch(epoch: u64) -> Self {
        Self {
            epoch: AtomicU64::new(epoch),
            until_ms: AtomicU64::new(0),
            epoch_started_ms: AtomicU64::new(0),
            write: Mutex::new(()),
            renew_now: Arc::new(Notify::new()),
            believed: Notify::new(),
        }
    }

    /// The current epoch (changes at every fence).
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Whether epoch `epoch` is still this server's and its belief holds at
    /// `now_ms`: it may serve from its cache what it loaded in that epoch.
    ///
    /// Reads the belief before the epoch: a fence stores the new epoch
    /// before any extension of it stores a belief, so a belief read here
    /// that belongs to a later epoch is always followed by reading that
    /// later epoch, and refused.
    pub(crate) fn holds(&self, epoch: u64, now_ms: u64) -> bool {
        let until = self.until_ms.load(Ordering::SeqCst);
        self.epoch.load(Ordering::SeqCst) == epoch && now_ms < until
    }

    /// Clock ms when the current epoch began (0: at process start).
    pub(crate) fn epoch_started_ms(&self) -> u64 {
        self.epoch_started_ms.load(Ordering::SeqCst)
    }

    /// Until when the current belief holds (0: none).
    pub(crate) fn until_ms(&self) -> u64 {
        self.until_ms.load(Ordering::SeqCst)
    }

    /// Records a renewal of epoch `epoch`'s lease, sent at `sent_ms` and
    /// acknowledged by a lease quorum, the last acknowledgement received at
    /// `now_ms`: the belief reaches `sent_ms + lease·(1 − 2ε)`, unless it had
    /// already ended (then nothing counts: [`Extend::Lapsed`]).
    pub(crate) fn extend(&self, epoch: u64, sent_ms: u64, now_ms: u64, lease: Duration) -> Extend {
        let lease_ms = lease.as_millis() as u64;
        let reach = sent_ms + lease_ms - 2 * lease_ms / DRIFT_DIVISOR;
        let first = {
            let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
            if self.epoch.load(Ordering::SeqCst) != epoch {
                return Extend::OldEpoch;
            }
            let until = self.until_ms.load(Ordering::SeqCst);
            if until != 0 && now_ms >= until {
                return Extend::Lapsed;
            }
            if reach > until {
                self.until_ms.store(reach, Ordering::SeqCst);
            }
            until == 0
        };
        if first {
            self.believed.notify_waiters();
        }
        Extend::Extended
    }

    /// Whether the belief of the current epoch has ended at `now_ms` (a
    /// belief was held and ran out): the caller must fence.
    pub(crate) fn lapsed(&self, now_ms: u64) -> bool {
        let until = self.until_ms.load(Ordering::SeqCst);
        until != 0 && now_ms >= until
    }

    /// Drops the whole local `cache` and takes a new epoch, with no belief
    /// yet; returns `(old epoch, new epoch)`. If `only_if` is given and the
    /// epoch has already left it, does nothing and returns `None` (two
    /// callers noticing the same lapse fence once).
    pub(crate) fn fence(
        &self,
        cache: &Cache,
        why: &str,
        only_if: Option<u64>,
    ) -> Option<(u64, u64)> {
        let (old, new, dropped) = {
            let _w = self.write.lock().unwrap_or_else(|p| p.into_inner());
            let old = self.epoch.load(Ordering::SeqCst);
            if only_if.is_some_and(|e| e != old) {
                return None;
            }
            let new = old.wrapping_add(1);
            self.epoch.store(new, Ordering::SeqCst);
            self.until_ms.store(0, Ordering::SeqCst);
            self.epoch_started_ms
                .store(cache.now_ms(), Ordering::SeqCst);
            let dropped = cache.len();
            cache.clear();
            (old, new, dropped)
        };
        self.renew_now.notify_one();
        metrics::counter!("sticky_fences_total").increment(1);
        tracing::warn!(
            epoch = new,
            dropped,
            reason = why,
            "fenced: local cache dropped"
        );
        Some((old, new))
    }

    /// Waits until epoch `epoch` has a belief, at most `limit`; whether it
    /// has one (checked at `now_ms()` after the wait).
    pub(crate) async fn wait_for_belief(
        &self,
        epoch: u64,
        limit: Duration,
        now_ms: impl Fn() -> u64,
    ) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.believed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.holds(epoch, now_ms()) {
                return true;
            }
            if self.epoch() != epoch || tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.holds(epoch, now_ms());
            }
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

/// The lease owner name of server `name` in epoch `epoch`: `name@epoch`,
/// as stores record it on copies and leases.
pub(crate) fn owner_name(name: &str, epoch: u64) -> String {
    format!("{name}@{epoch}")
}

/// `(name, epoch)` of an owner name; `None` for one that is not
/// `name@epoch`.
pub(crate) fn parse_owner(owner: &str) -> Option<(&str, u64)> {
    let (name, epoch) = owner.rsplit_once('@')?;
    Some((name, epoch.parse().ok()?))
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

    const L: Duration = Duration::from_secs(3);

    #[test]
    fn a_belief_ends_two_percent_before_the_lease_and_only_its_epoch_holds() {
        let f = Fencing::with_epoch(10);
        assert!(!f.holds(10, 1), "no belief before the first renewal");
        assert_eq!(f.extend(10, 100, 150, L), Extend::Extended);
        assert_eq!(f.until_ms(), 100 + 3000 - 60);
        assert!(f.holds(10, 3039));
        assert!(!f.holds(10, 3040), "ends at sent + L(1 - 2ε)");
        assert!(!f.holds(9, 200), "another epoch never holds");
        assert_eq!(f.extend(9, 200, 210, L), Extend::OldEpoch);
        assert_eq!(f.extend(10, 50, 160, L), Extend::Extended);
        assert_eq!(f.until_ms(), 3040, "an older renewal never shortens it");
        assert_eq!(
            f.extend(10, 3000, 3040, L),
            Extend::Lapsed,
            "acknowledged after the belief ended: counts for nothing"
        );
        assert!(f.lapsed(3040) && !f.lapsed(3039));
    }

    #[tokio::test]
    async fn a_fence_drops_the_cache_the_belief_and_refuses_older_routes() {
        let cache = Cache::new(Clock::new());
        cache.insert(SessionId::from_bytes([1; 16]), Entry::new(None, 1));
        let f = Fencing::with_epoch(10);
        f.extend(10, 1, 2, L);
        assert!(f.check_routed(10).is_ok());
        assert_eq!(f.fence(&cache, "test", Some(10)), Some((10, 11)));
        assert_eq!((f.epoch(), cache.len(), f.until_ms()), (11, 0, 0));
        assert!(!f.holds(10, 5) && !f.holds(11, 5));
        assert_eq!(
            f.fence(&cache, "late", Some(10)),
            None,
            "a second fence of the same lapse does nothing"
        );
        assert!(matches!(
            f.check_routed(10),
            Err(SessionError::Fenced { epoch: 11 })
        ));
        assert!(f.check_routed(11).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn requests_wait_for_the_first_belief_of_an_epoch_within_a_limit() {
        let f = std::sync::Arc::new(Fencing::with_epoch(3));
        let clock = Clock::new();
        assert!(
            !f.wait_for_belief(3, Duration::from_millis(200), || clock.now_ms())
                .await,
            "nobody renews: gives up at the limit"
        );
        let g = f.clone();
        let renew = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            g.extend(3, clock.now_ms(), clock.now_ms(), L);
        });
        assert!(
            f.wait_for_belief(3, Duration::from_secs(1), || clock.now_ms())
                .await
        );
        renew.await.unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn owner_names_round_trip() {
        assert_eq!(owner_name("ws1", 42), "ws1@42");
        assert_eq!(parse_owner("ws1@42"), Some(("ws1", 42)));
        assert_eq!(parse_owner("a@b@7"), Some(("a@b", 7)));
        assert_eq!(parse_owner("ws1"), None);
        assert_eq!(parse_owner("ws1@x"), None);
    }

    #[test]
    fn first_epochs_are_random_and_leave_room_to_count_up() {
        let a = Fencing::new().epoch();
        let b = Fencing::new().epoch();
        assert_ne!(a, b);
        assert!(a <= u64::MAX >> 1 && b <= u64::MAX >> 1);
    }
}
