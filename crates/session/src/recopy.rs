//! Re-copy (claim 9): when the live set of stores changes, every hosted
//! session whose replica set gained a store that lacks its newest version
//! is copied there, at most [`Config::recopy_rate`](crate::Config::recopy_rate)
//! per second.

use std::sync::{Arc, Weak};
use std::time::Duration;

use sticky_client::{ClientError, Put};
use tokio::sync::{watch, OwnedMutexGuard};
use tokio::time::Instant;

use crate::cache::{Entry, Slot};
use crate::dropped::LocalCopy;
use crate::id::SessionId;
use crate::replicator::{put_outcome, write_quorum, PutOutcome};
use crate::state::{Inner, SessionManager};
use crate::stores::Stores;

/// Sessions of one batch of [`recopy_batch`]: their copies go to each
/// store as one pipeline (one message, one write, one batch of replies).
const RECOPY_BATCH: usize = 64;

/// Batches re-copied at once by [`recopy_loop`]: at most
/// `RECOPY_BATCH * RECOPY_BATCHES` (256) sessions in flight, each holding
/// its entry's lock meanwhile. Enough to keep the stores busy; few enough
/// that a user request's copy queues behind at most a few milliseconds of
/// re-copies at a store.
const RECOPY_BATCHES: usize = 4;

/// The owner name this server writes on its copies, computed once per scan
/// (it changes only when the server is fenced into a new epoch).
pub(crate) struct OwnerName {
    epoch: u64,
    name: String,
}

impl OwnerName {
    /// This server's owner name now.
    pub(crate) fn of(m: &SessionManager) -> Self {
        let epoch = m.inner.fencing.epoch();
        Self {
            epoch,
            name: m.owner_in(epoch),
        }
    }
}

/// Paces the re-copies at `rate` per second (0: no limit): the `n`-th copy
/// of a scan is not made before `n / rate` seconds into it. Unlike a pause
/// after every so many copies, it waits only when ahead of that schedule,
/// so it never slows a re-copy that runs below the limit.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pace {
    started: Instant,
    rate: u32,
}

impl Pace {
    pub(crate) fn new(started: Instant, rate: u32) -> Self {
        Self { started, rate }
    }

    /// When the re-copy may go on after `copied` copies; `None`: at once.
    pub(crate) fn wait_until(&self, copied: u64, now: Instant) -> Option<Instant> {
        if self.rate == 0 {
            return None;
        }
        let ahead = Duration::try_from_secs_f64(copied as f64 / f64::from(self.rate)).ok()?;
        let due = self.started.checked_add(ahead)?;
        (due > now).then_some(due)
    }
}

/// Re-copies one session onto the replicas that lack its newest version;
/// true if it had to copy. `lost`: stores that may have lost their copies.
/// `owner`: this server's owner name when the scan started.
pub(crate) async fn recopy_one(
    m: &SessionManager,
    id: SessionId,
    entry: Arc<Entry>,
    lost: u64,
    owner: &OwnerName,
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
    let key = id.key_bytes();
    let ttl = Some(m.copy_ttl(state.untouched));
    // Fenced into a new epoch since the scan started (rare): the new name.
    let fresh;
    let owner = if m.inner.fencing.epoch() == owner.epoch {
        owner.name.as_str()
    } else {
        fresh = m.owner();
        fresh.as_str()
    };
    let mut promised = false;
    for i in Stores::members(missing) {
        let r = m.inner.stores.clients[i]
            .put(&key, state.stamp, owner, ttl, &state.payload)
            .await;
        m.inner.stores.observe(i, &r);
        match put_outcome(state.stamp, r) {
            PutOutcome::Stored => state.stored_on |= 1 << i,
            PutOutcome::Moved(stored) => {
                tracing::warn!(session = ?id, %stored, "re-copy refused: the session moved; dropping it");
                m.inner.cache.drop_copy(&id, &entry, &mut guard);
                return true;
            }
            PutOutcome::Failed(ClientError::Promised { .. }) => promised = true,
            PutOutcome::Failed(_) => {}
        }
    }
    if promised {
        keep_if_short(m, &id, &entry, &mut guard);
    }
    true
}

/// After a re-copy that a takeover's promise refused (a claim running
/// elsewhere, or one that gave up, whose promise lasts the stores' claim
/// window): if the session is now on fewer than `W` stores, its copy is
/// kept as a failed write's is and claimed back above the promise
/// ([`SessionManager::reclaim_dropped`]). Left in the cache, nothing would
/// copy it again: the next scans take a session stored nowhere for one
/// the async queue places, and the stores that forgot it would go on
/// lacking it (`docs/safety.md` §3, "A restarted store's no").
fn keep_if_short(
    m: &SessionManager,
    id: &SessionId,
    entry: &Arc<Entry>,
    guard: &mut OwnedMutexGuard<Slot>,
) {
    let needed = write_quorum(m.inner.stores.len(), m.inner.config.replicas);
    let Some(state) = guard.as_ref() else {
        return;
    };
    if (state.stored_on.count_ones() as usize) >= needed {
        return;
    }
    tracing::info!(session = ?id, stamp = %state.stamp, "re-copy refused under another server's promise: claiming the session back");
    // Kept before the cached copy goes, so that a request never finds
    // neither.
    m.keep_to_reclaim(
        *id,
        LocalCopy {
            stamp: state.stamp,
            payload: state.payload.clone(),
        },
    );
    m.inner.cache.drop_copy(id, entry, guard);
}

/// A session of a batch, its entry locked, that lacks copies.
struct Held {
    id: SessionId,
    entry: Arc<Entry>,
    guard: OwnedMutexGuard<Slot>,
    /// Stores of its replica set that lack its newest version.
    missing: u64,
    /// A store refused the copy under a takeover's promise.
    promised: bool,
    key: [u8; 32],
    ttl: Duration,
}

/// Re-copies a batch of sessions as [`recopy_one`] does each, the copies
/// to each store sent as one pipeline; how many had to be copied.
///
/// Sessions whose lock a request holds are done after the batch, one at a
/// time, with no lock of the batch held (never one lock held while waiting
/// for another).
async fn recopy_batch(
    m: &SessionManager,
    batch: Vec<(SessionId, Arc<Entry>)>,
    lost: u64,
    owner: &OwnerName,
) -> u64 {
    let mut held = Vec::with_capacity(batch.len());
    let mut busy = Vec::new();
    let live = m.inner.stores.live();
    for (id, entry) in batch {
        let Ok(mut guard) = entry.slot.clone().try_lock_owned() else {
            busy.push((id, entry));
            continue;
        };
        let Some(state) = guard.as_mut() else {
            continue;
        };
        if state.is_unsaved() || state.stored_on == 0 {
            continue; // async mode: the queue will place it
        }
        state.stored_on &= !lost;
        let want = m.inner.stores.replicas(&id, m.inner.config.replicas);
        let missing = want & !state.stored_on;
        if missing == 0 {
            state.stored_on &= live;
            continue;
        }
        let ttl = m.copy_ttl(state.untouched);
        held.push(Held {
            key: id.key_bytes(),
            id,
            entry,
            guard,
            missing,
            promised: false,
            ttl,
        });
    }
    let mut copied = held.len() as u64;
    if !held.is_empty() {
        // Fenced into a new epoch since the scan started (rare): the new name.
        let fresh;
        let owner = if m.inner.fencing.epoch() == owner.epoch {
            owner.name.as_str()
        } else {
            fresh = m.owner();
            fresh.as_str()
        };
        let stores = held.iter().fold(0, |all, h| all | h.missing);
        // Every store at once, as a commit writes its replicas.
        let sends = Stores::members(stores).map(|i| {
            let held = &held;
            async move {
                let (which, puts): (Vec<usize>, Vec<Put<'_>>) = held
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| h.missing & (1 << i) != 0)
                    .filter_map(|(k, h)| {
                        let state = h.guard.as_ref()?;
                        let put = Put {
                            key: &h.key,
                            stamp: state.stamp,
                            owner,
                            ttl: Some(h.ttl),
                            payload: &state.payload,
                        };
                        Some((k, put))
                    })
                    .unzip();
                let outcomes = m.inner.stores.clients[i].put_many(&puts).await;
                (i, which, outcomes)
            }
        });
        for (i, which, outcomes) in futures_util::future::join_all(sends).await {
            for (k, r) in which.into_iter().zip(outcomes) {
                m.inner.stores.observe(i, &r);
                let h = &mut held[k];
                let Some(state) = h.guard.as_mut() else {
                    continue; // dropped: it moved
                };
                match put_outcome(state.stamp, r) {
                    PutOutcome::Stored => state.stored_on |= 1 << i,
                    PutOutcome::Moved(stored) => {
                        tracing::warn!(session = ?h.id, %stored, "re-copy refused: the session moved; dropping it");
                        m.inner.cache.drop_copy(&h.id, &h.entry, &mut h.guard);
                    }
                    PutOutcome::Failed(ClientError::Promised { .. }) => h.promised = true,
                    PutOutcome::Failed(_) => {}
                }
            }
        }
        for h in held.iter_mut().filter(|h| h.promised) {
            keep_if_short(m, &h.id, &h.entry, &mut h.guard);
        }
    }
    drop(held);
    for (id, entry) in busy {
        copied += u64::from(recopy_one(m, id, entry, lost, owner).await);
    }
    copied
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
        let pace = Pace::new(started, m.inner.config.recopy_rate);
        let owner = OwnerName::of(&m);
        let (mut copied, mut scanned) = (0u64, 0u64);
        metrics::gauge!("sticky_recopy_pending").set(all.len() as f64);
        let mut complete = true;
        // Many sessions at once: each waits for its stores'
        // acknowledgments, so one at a time would leave the stores and this
        // server mostly idle (measured: 6,000/s per server); and batches,
        // so that each store gets one pipeline per batch rather than one
        // request per copy (the per-request work dominated).
        let mut in_flight = futures_util::stream::FuturesUnordered::new();
        let mut sessions = all.into_iter();
        loop {
            while in_flight.len() < RECOPY_BATCHES {
                if changes.has_changed().unwrap_or(false) {
                    complete = false;
                    break; // a newer change restarts the scan
                }
                let batch: Vec<_> = sessions.by_ref().take(RECOPY_BATCH).collect();
                if batch.is_empty() {
                    break;
                }
                let n = batch.len() as u64;
                scanned += n;
                let (m, owner) = (&m, &owner);
                in_flight.push(async move { (n, recopy_batch(m, batch, lost, owner).await) });
            }
            let Some((n, did_copy)) = futures_util::StreamExt::next(&mut in_flight).await else {
                break;
            };
            metrics::gauge!("sticky_recopy_pending").decrement(n as f64);
            copied += did_copy;
            metrics::counter!("sticky_recopies_total").increment(did_copy);
            if let Some(at) = pace.wait_until(copied, Instant::now()) {
                tokio::time::sleep_until(at).await;
            }
            // User requests first: their tasks run before the next batch
            // starts.
            tokio::task::yield_now().await;
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
    #![allow(clippy::expect_used)]

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

    #[test]
    fn the_pace_waits_only_when_ahead_of_the_rate() {
        let t0 = Instant::now();
        let pace = Pace::new(t0, 1_000);
        assert_eq!(pace.wait_until(0, t0), None);
        assert_eq!(
            pace.wait_until(500, t0),
            Some(t0 + Duration::from_millis(500)),
            "500 copies at once: half a second ahead"
        );
        assert_eq!(
            pace.wait_until(500, t0 + Duration::from_millis(200)),
            Some(t0 + Duration::from_millis(500))
        );
        assert_eq!(
            pace.wait_until(500, t0 + Duration::from_millis(500)),
            None,
            "on schedule"
        );
        assert_eq!(
            pace.wait_until(500, t0 + Duration::from_secs(2)),
            None,
            "behind schedule: no pause to make up for"
        );
        let unlimited = Pace::new(t0, 0);
        assert_eq!(unlimited.wait_until(u64::MAX, t0), None);
    }

    #[tokio::test]
    async fn a_batch_copies_like_one_at_a_time_and_waits_for_busy_sessions() {
        let m = manager(config(3));
        let owner = OwnerName::of(&m);
        let s3 = 0b100u64; // may have lost its copies
        let mut batch = Vec::new();
        let mut stored = Vec::new();
        for n in 0..20u8 {
            let id = SessionId::from_bytes([n; 16]);
            let want = m.inner.stores.replicas(&id, 2);
            let entry = hosted(&m, id, Stamp::new(1, 1), want);
            batch.push((id, entry.clone()));
            stored.push((want, entry));
        }
        let needing = stored.iter().filter(|(want, _)| want & s3 != 0).count() as u64;
        assert!(needing > 0 && needing < 20, "{needing}");
        let unsaved = SessionId::from_bytes([99; 16]);
        batch.push((unsaved, hosted(&m, unsaved, Stamp::default(), 0)));
        // A session on s3 whose lock a request holds.
        let busy_id = (100..=255u8)
            .map(|n| SessionId::from_bytes([n; 16]))
            .find(|id| m.inner.stores.replicas(id, 2) & s3 != 0)
            .expect("some session is placed on s3");
        let busy_want = m.inner.stores.replicas(&busy_id, 2);
        let busy = hosted(&m, busy_id, Stamp::new(1, 1), busy_want);
        batch.push((busy_id, busy.clone()));
        let guard = busy.slot.clone().lock_owned().await;

        let (copied, ()) = tokio::join!(recopy_batch(&m, batch, s3, &owner), async move {
            tokio::task::yield_now().await;
            drop(guard);
        });
        // No store listens: every copy failed, the lost replica stays
        // missing, the others are kept.
        for (want, entry) in &stored {
            assert_eq!(stored_on(entry).await, want & !s3);
        }
        assert_eq!(
            stored_on(&busy).await,
            busy_want & !s3,
            "the busy session was re-copied once its request let go"
        );
        // The busy one counts unless its failed stores were marked down
        // by the batch's failures first (then it has nowhere to go).
        assert!(
            copied == needing || copied == needing + 1,
            "{copied} of {needing}"
        );
    }

    #[test]
    fn key_bytes_is_the_key() {
        let id = SessionId::from_bytes([0xa7; 16]);
        assert_eq!(id.key_bytes().as_slice(), id.key().as_bytes());
    }

    #[tokio::test]
    async fn only_stored_sessions_missing_a_replica_are_copied() {
        let m = manager(config(3));
        let id = SessionId::from_bytes([7; 16]);
        let want = m.inner.stores.replicas(&id, 2);
        assert_eq!(want.count_ones(), 2);

        let unsaved = hosted(&m, id, Stamp::default(), 0);
        assert!(
            !recopy_one(&m, id, unsaved, 0, &OwnerName::of(&m)).await,
            "never stored"
        );
        let queued = hosted(&m, id, Stamp::new(1, 1), 0);
        assert!(
            !recopy_one(&m, id, queued, 0, &OwnerName::of(&m)).await,
            "async: the queue places it"
        );

        let complete = hosted(&m, id, Stamp::new(1, 1), want | 0b100_0000);
        assert!(
            !recopy_one(&m, id, complete.clone(), 0, &OwnerName::of(&m)).await,
            "every replica has it"
        );
        assert_eq!(stored_on(&complete).await, want, "only live stores count");

        // One replica may have lost its copy: copied again (to a store that
        // is not there, so the copy fails and the replica stays missing).
        let lost = 1u64 << want.trailing_zeros();
        let partial = hosted(&m, id, Stamp::new(1, 1), want);
        assert!(recopy_one(&m, id, partial.clone(), lost, &OwnerName::of(&m)).await);
        assert_eq!(stored_on(&partial).await, want & !lost);
    }
}
