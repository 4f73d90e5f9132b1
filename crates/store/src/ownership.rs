//! Server leases, dead-lease records and the recovery window of a store
//! that restarted empty: the store's half of the ownership protocol of
//! `docs/safety.md` (§2, §3).
//!
//! A web-server process `name@epoch` renews its lease here every third of
//! its lease time. A claimer may take over that server's sessions only
//! after it *killed* the lease at a quorum of stores; a store accepts a
//! kill only when the lease is not live here, and then refuses every later
//! renewal of it until the dead record expires. A restarted store has
//! forgotten its dead records and promises, so for a recovery window it
//! grants no lease and accepts no kill or prepare.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::keyspace::now_ms;

/// Most leases (live or dead) one store keeps; web servers are few, so this
/// only bounds what a misbehaving client can make the store hold.
pub(crate) const MAX_LEASES: usize = 65_536;
/// Longest lease a client may ask for: a buggy or hostile client cannot
/// block takeovers of a server's sessions for longer than this.
pub(crate) const MAX_LEASE_MS: u64 = 10 * 60 * 1000;
/// Longest owner name (`name@epoch`).
pub(crate) const MAX_OWNER_LEN: usize = 256;

/// Why a lease operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum LeaseError {
    /// The lease was killed here: its owner must take a new epoch.
    #[error("DEAD the lease was ended at this store; take a new epoch")]
    Dead,
    /// The lease is live here, for this many more milliseconds.
    #[error("LIVE {0} the lease is live at this store")]
    Live(u64),
    /// The store restarted without its records; it grants and kills nothing
    /// for this many more milliseconds.
    #[error("RECOVERING {0} the store restarted and is inside its recovery window")]
    Recovering(u64),
    /// [`MAX_LEASES`] reached.
    #[error("ERR too many leases at this store")]
    Full,
}

/// What a store knows of one owner's lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LeaseStatus {
    /// Live for this many more milliseconds.
    Live(u64),
    /// Never granted here, or expired without a kill.
    Absent,
    /// Killed or released here.
    Dead,
}

impl LeaseStatus {
    /// The RESP integer form: remaining ms when live, -1 absent, -2 dead.
    pub(crate) fn as_int(self) -> i64 {
        match self {
            Self::Live(ms) => crate::keyspace::clamp_i64(ms),
            Self::Absent => -1,
            Self::Dead => -2,
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum State {
    /// Live until this [`now_ms`] time.
    Live(u64),
    /// Dead; the record may be dropped at this time.
    Dead(u64),
}

/// The leases of one store.
#[derive(Debug)]
pub(crate) struct Leases {
    table: Mutex<HashMap<Box<[u8]>, State>>,
    /// How long dead records and promises are kept, and how long a
    /// restarted store refuses leases, kills and prepares (twice the
    /// claim timeout).
    window_ms: u64,
    /// When this store's keyspace started ([`now_ms`] time).
    started: u64,
    /// Whether this start is a restart (records may have been lost).
    restarted: bool,
}

impl Leases {
    /// Leases of a store that started now.
    pub(crate) fn new(window_ms: u64, restarted: bool) -> Self {
        Self {
            table: Mutex::new(HashMap::new()),
            window_ms,
            started: now_ms(),
            restarted,
        }
    }

    /// How long dead records and promises are kept.
    pub(crate) fn window_ms(&self) -> u64 {
        self.window_ms
    }

    /// Milliseconds since this store started.
    pub(crate) fn uptime_ms(&self, now: u64) -> u64 {
        now.saturating_sub(self.started)
    }

    /// Whether this start is a restart.
    pub(crate) fn restarted(&self) -> bool {
        self.restarted
    }

    /// `Some(ms left)` while a restarted store is inside its recovery window.
    pub(crate) fn recovering(&self, now: u64) -> Option<u64> {
        let end = self.started.saturating_add(self.window_ms);
        (self.restarted && now < end).then(|| end - now)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, State>> {
        // Every update leaves the map consistent; a panic elsewhere while
        // holding the lock does not make it wrong.
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `SESS.LEASE`: grants or extends `owner`'s lease for `ttl_ms`.
    pub(crate) fn renew(&self, owner: &[u8], ttl_ms: u64) -> Result<(), LeaseError> {
        let now = now_ms();
        if let Some(left) = self.recovering(now) {
            return Err(LeaseError::Recovering(left));
        }
        let until = now.saturating_add(ttl_ms.clamp(1, MAX_LEASE_MS));
        let mut t = self.lock();
        match t.get_mut(owner) {
            Some(State::Dead(keep)) if *keep > now => Err(LeaseError::Dead),
            Some(state) => {
                // Live (extended) or expired without a kill (granted again:
                // no claim relied on this store while it was absent, since
                // a claim's kill would have left a dead record).
                *state = State::Live(until);
                Ok(())
            }
            None => {
                if t.len() >= MAX_LEASES {
                    Self::sweep_locked(&mut t, now);
                    if t.len() >= MAX_LEASES {
                        return Err(LeaseError::Full);
                    }
                }
                t.insert(owner.into(), State::Live(until));
                Ok(())
            }
        }
    }

    /// `SESS.KILL`: records `owner`'s lease dead if it is not live here, or
    /// whatever its state when `force` (proven death: the process is gone or
    /// fenced, so nothing can serve under that lease).
    pub(crate) fn kill(&self, owner: &[u8], force: bool) -> Result<(), LeaseError> {
        let now = now_ms();
        if !force {
            if let Some(left) = self.recovering(now) {
                return Err(LeaseError::Recovering(left));
            }
        }
        let keep = now.saturating_add(self.window_ms);
        let mut t = self.lock();
        match t.get_mut(owner) {
            Some(State::Live(until)) if *until > now && !force => {
                Err(LeaseError::Live(*until - now))
            }
            Some(state) => {
                let keep = match *state {
                    State::Dead(old) => old.max(keep),
                    State::Live(_) => keep,
                };
                *state = State::Dead(keep);
                Ok(())
            }
            None => {
                if t.len() >= MAX_LEASES {
                    Self::sweep_locked(&mut t, now);
                    if t.len() >= MAX_LEASES {
                        return Err(LeaseError::Full);
                    }
                }
                t.insert(owner.into(), State::Dead(keep));
                Ok(())
            }
        }
    }

    /// What this store knows of `owner`'s lease now.
    pub(crate) fn status(&self, owner: &[u8]) -> LeaseStatus {
        let now = now_ms();
        match self.lock().get(owner) {
            Some(State::Live(until)) if *until > now => LeaseStatus::Live(*until - now),
            Some(State::Dead(keep)) if *keep > now => LeaseStatus::Dead,
            _ => LeaseStatus::Absent,
        }
    }

    /// Drops expired leases and dead records past their keep time.
    pub(crate) fn sweep(&self) {
        let now = now_ms();
        Self::sweep_locked(&mut self.lock(), now);
    }

    fn sweep_locked(t: &mut HashMap<Box<[u8]>, State>, now: u64) {
        t.retain(|_, s| match *s {
            State::Live(until) => until > now,
            State::Dead(keep) => keep > now,
        });
    }

    /// Number of records held (live and dead), for `INFO`.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_live_lease_refuses_a_kill_and_a_dead_one_refuses_renewal() {
        let l = Leases::new(60_000, false);
        l.renew(b"ws1@1", 60_000).unwrap();
        assert!(matches!(l.kill(b"ws1@1", false), Err(LeaseError::Live(_))));
        assert!(matches!(l.status(b"ws1@1"), LeaseStatus::Live(_)));
        // Expired without a kill: it may be granted again.
        l.renew(b"ws1@1", 1).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert_eq!(l.status(b"ws1@1"), LeaseStatus::Absent);
        l.kill(b"ws1@1", false).unwrap();
        assert_eq!(l.status(b"ws1@1"), LeaseStatus::Dead);
        assert_eq!(l.renew(b"ws1@1", 3_000), Err(LeaseError::Dead));
        // A new epoch is a new lease.
        l.renew(b"ws1@2", 3_000).unwrap();
    }

    #[test]
    fn a_forced_kill_ends_a_live_lease() {
        let l = Leases::new(60_000, false);
        l.renew(b"ws1@1", 60_000).unwrap();
        l.kill(b"ws1@1", true).unwrap();
        assert_eq!(l.status(b"ws1@1"), LeaseStatus::Dead);
        assert_eq!(l.renew(b"ws1@1", 3_000), Err(LeaseError::Dead));
    }

    #[test]
    fn an_unknown_lease_can_be_killed() {
        let l = Leases::new(60_000, false);
        l.kill(b"ws9@7", false).unwrap();
        assert_eq!(l.renew(b"ws9@7", 3_000), Err(LeaseError::Dead));
    }

    #[test]
    fn a_restarted_store_grants_and_kills_nothing_in_its_window() {
        let l = Leases::new(60_000, true);
        assert!(matches!(
            l.renew(b"ws1@1", 3_000),
            Err(LeaseError::Recovering(_))
        ));
        assert!(matches!(
            l.kill(b"ws1@1", false),
            Err(LeaseError::Recovering(_))
        ));
        // Proven death may still be recorded.
        l.kill(b"ws1@1", true).unwrap();
        let fresh = Leases::new(60_000, false);
        assert_eq!(fresh.recovering(now_ms()), None);
    }

    #[test]
    fn dead_records_are_dropped_after_the_window() {
        let l = Leases::new(1, false);
        l.kill(b"ws1@1", false).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(5));
        l.sweep();
        assert_eq!(l.len(), 0);
        assert_eq!(l.status(b"ws1@1"), LeaseStatus::Absent);
    }

    #[test]
    fn lease_times_are_capped() {
        let l = Leases::new(60_000, false);
        l.renew(b"ws1@1", u64::MAX).unwrap();
        match l.status(b"ws1@1") {
            LeaseStatus::Live(ms) => assert!(ms <= MAX_LEASE_MS),
            other => panic!("expected a live lease, got {other:?}"),
        }
    }
}
