//! The copies this server dropped when its lease lapsed, kept until each
//! session has a live host again (`docs/safety.md` §5, reclaim).
//!
//! A lapse fences: the cache is dropped, because another server may claim
//! its sessions. But while this process lives it *is* the sessions' host
//! in the sense of invariant 1 — the stores may have lost their copies
//! meanwhile (restarts), and this copy may be the newest that survives. So
//! the copies are kept here, not served, and count as one more surviving
//! copy in every claim of their session by this server (a user's request
//! or the background reclaim), until a claim succeeds, another server is
//! found to hold the session, or the session is found gone. The reclaim
//! retries until then: one failed round (a quorum of stores still inside
//! their restart windows, say) must not throw the last copy away.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use sticky_proto::Stamp;

use crate::id::SessionId;

/// This server's own copy of a session it dropped when its lease lapsed.
/// Only acknowledged versions are ever cached, so it is never a version
/// nobody stored.
#[derive(Debug, Clone)]
pub(crate) struct LocalCopy {
    pub(crate) stamp: Stamp,
    pub(crate) payload: Bytes,
}

/// The sessions a lapse dropped that are not yet claimed again: each with
/// this server's copy, or `None` when none could be taken (a request held
/// the session's lock, or it was never saved).
#[derive(Debug, Default)]
pub(crate) struct Dropped {
    map: Mutex<HashMap<SessionId, Option<LocalCopy>>>,
}

impl Dropped {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Option<LocalCopy>>> {
        // Every update leaves the map consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn publish(len: usize) {
        metrics::gauge!("sticky_reclaim_pending").set(len as f64);
    }

    /// Adds what a fence dropped; of two copies of one session the newer
    /// is kept (a second lapse before the first reclaim ended).
    pub(crate) fn keep(&self, copies: Vec<(SessionId, Option<LocalCopy>)>) {
        let mut map = self.lock();
        for (id, copy) in copies {
            let slot = map.entry(id).or_insert(None);
            let newer = match (&*slot, &copy) {
                (_, None) => false,
                (None, Some(_)) => true,
                (Some(old), Some(new)) => new.stamp > old.stamp,
            };
            if newer {
                *slot = copy;
            }
        }
        Self::publish(map.len());
    }

    /// This server's dropped copy of `id`, if one waits for a claim.
    pub(crate) fn copy_of(&self, id: &SessionId) -> Option<LocalCopy> {
        let map = self.lock();
        if map.is_empty() {
            return None;
        }
        map.get(id).cloned().flatten()
    }

    /// `id` has a host again (or is gone): its copy is not needed.
    pub(crate) fn settle(&self, id: &SessionId) {
        let mut map = self.lock();
        if map.remove(id).is_some() {
            Self::publish(map.len());
        }
    }

    /// Everything still waiting.
    pub(crate) fn pending(&self) -> Vec<(SessionId, Option<LocalCopy>)> {
        self.lock().iter().map(|(id, c)| (*id, c.clone())).collect()
    }

    /// Gives up on everything (the reclaim ran past the idle timeout:
    /// the stores expire these sessions anyway). Returns how many.
    pub(crate) fn clear(&self) -> usize {
        let mut map = self.lock();
        let n = map.len();
        map.clear();
        Self::publish(0);
        n
    }

    /// How many wait.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(g: u64, s: u64) -> Option<LocalCopy> {
        Some(LocalCopy {
            stamp: Stamp::new(g, s),
            payload: Bytes::from_static(b"{}"),
        })
    }

    #[test]
    fn the_newer_copy_of_two_lapses_is_kept_and_none_never_replaces_one() {
        let d = Dropped::default();
        let id = SessionId::from_bytes([3; 16]);
        d.keep(vec![(id, copy(2, 5))]);
        d.keep(vec![(id, copy(2, 3)), (id, None)]);
        assert_eq!(d.copy_of(&id).map(|c| c.stamp), Some(Stamp::new(2, 5)));
        d.keep(vec![(id, copy(3, 0))]);
        assert_eq!(d.copy_of(&id).map(|c| c.stamp), Some(Stamp::new(3, 0)));
        assert_eq!(d.len(), 1);
        d.settle(&id);
        assert!(d.copy_of(&id).is_none());
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn an_id_without_a_copy_still_waits_for_its_claim() {
        let d = Dropped::default();
        let id = SessionId::from_bytes([4; 16]);
        d.keep(vec![(id, None)]);
        assert_eq!(d.len(), 1);
        assert!(d.copy_of(&id).is_none());
        assert_eq!(d.pending().len(), 1);
        assert_eq!(d.clear(), 1);
        assert_eq!(d.len(), 0);
    }
}
