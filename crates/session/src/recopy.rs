//! Re-copy (claim 9): when the live set of stores changes, every hosted
//! session whose replica set gained a store that lacks its newest version
//! is copied there, at most [`Config::recopy_rate`](crate::Config::recopy_rate)
//! per second.

use std::sync::{Arc, Weak};
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::cache::Entry;
use crate::id::SessionId;
use crate::replicator::{put_outcome, PutOutcome};
use crate::state::{Inner, SessionManager};
use crate::stores::Stores;

/// Sessions re-copied at once by [`recopy_loop`].
const RECOPY_PARALLEL: usize = 32;

/// Re-copies one session onto the replicas that lack its newest version;
/// true if it had to copy. `lost`: stores that may have lost their copies.
pub(crate) async fn recopy_one(
    m: &SessionManager,
    id: SessionId,
    entry: Arc<Entry>,
    lost: u64,
) -> bool {
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
    let ttl = Some(m.copy_ttl(state.untouched));
    let owner = m.owner();
    for i in Stores::members(missing) {
        let r = m.inner.stores.clients[i]
            .put(key.as_bytes(), state.stamp, &owner, ttl, &state.payload)
            .await;
        m.inner.stores.observe(i, &r);
        match put_outcome(state.stamp, r) {
            PutOutcome::Stored => state.stored_on |= 1 << i,
            PutOutcome::Moved(stored) => {
                tracing::warn!(session = ?id, %stored, "re-copy refused: the session moved; dropping it");
                m.inner.cache.drop_copy(&id, &entry, &mut guard);
                break;
            }
            PutOutcome::Failed(_) => {}
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
pub(crate) async fn recopy_loop(weak: Weak<Inner>, mut changes: watch::Receiver<u64>) {
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

#[cfg(test)]
mod tests {
    use sticky_proto::Stamp;

    use super::*;
    use crate::cache::SessionState;
    use crate::state::tests::{config, manager};

    fn hosted(m: &SessionManager, id: SessionId, stamp: Stamp, stored_on: u64) -> Arc<Entry> {
        let mut state = SessionState::new();
        state.stamp = stamp;
        state.stored_on = stored_on;
        let entry = Entry::new(Some(state), m.inner.clock.now_ms());
        m.inner.cache.insert(id, entry.clone());
        entry
    }

    async fn stored_on(entry: &Entry) -> u64 {
        entry.slot.lock().await.as_ref().map_or(0, |s| s.stored_on)
    }

    #[tokio::test]
    async fn only_stored_sessions_missing_a_replica_are_copied() {
        let m = manager(config(3));
        let id = SessionId::from_bytes([7; 16]);
        let want = m.inner.stores.replicas(&id, 2);
        assert_eq!(want.count_ones(), 2);

        let unsaved = hosted(&m, id, Stamp::default(), 0);
        assert!(!recopy_one(&m, id, unsaved, 0).await, "never stored");
        let queued = hosted(&m, id, Stamp::new(1, 1), 0);
        assert!(
            !recopy_one(&m, id, queued, 0).await,
            "async: the queue places it"
        );

        let complete = hosted(&m, id, Stamp::new(1, 1), want | 0b100_0000);
        assert!(
            !recopy_one(&m, id, complete.clone(), 0).await,
            "every replica has it"
        );
        assert_eq!(stored_on(&complete).await, want, "only live stores count");

        // One replica may have lost its copy: copied again (to a store that
        // is not there, so the copy fails and the replica stays missing).
        let lost = 1u64 << want.trailing_zeros();
        let partial = hosted(&m, id, Stamp::new(1, 1), want);
        assert!(recopy_one(&m, id, partial.clone(), lost).await);
        assert_eq!(stored_on(&partial).await, want & !lost);
    }
}
