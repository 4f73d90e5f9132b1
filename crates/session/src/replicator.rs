//! Replication: copying a session's newest version to its R replicas.
//!
//! - Sync mode ([`SessionManager::write`]): a commit waits until every
//!   current replica acknowledged the version, re-placing around stores
//!   that fail.
//! - Async mode ([`AsyncQueue`](crate::state::AsyncQueue),
//!   [`async_replicator`]): a commit queues the
//!   session and a background task copies its newest version; a writer
//!   waits for its own copy only while the queue lags too far behind.
//!
//! Both apply one rule to a write refused as stale ([`put_outcome`]): a
//! store holding our own version (or a later one of the same tenure) has
//! the change; any other stamp means the session moved.
//!
//! A third mode is a variant of `sticky_config::Mode` plus its behaviour
//! here ([`SessionManager::replicate`]).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use sticky_client::ClientError;
use sticky_proto::Stamp;
use tokio::time::Instant;

use crate::cache::Entry;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::state::{Inner, QueueReceiver, SessionManager};
use crate::stores::Stores;

/// Attempts of a write before giving up (each after re-placing around
/// stores that failed).
const WRITE_ROUNDS: usize = 3;

/// Most async copies in flight per web server.
const ASYNC_COPIES_IN_FLIGHT: usize = 4096;

/// The stores that must acknowledge a write: `replicas`, or every store
/// when there are fewer (`docs/safety.md`, §1).
pub(crate) fn write_quorum(stores: usize, replicas: usize) -> usize {
    replicas.clamp(1, stores.max(1))
}

/// What a store's answer to a write of our version means.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PutOutcome {
    /// The store holds the version (or a later one of ours).
    Stored,
    /// Another server claimed the session: the store holds `stored`.
    Moved(Stamp),
    /// The store did not take it (down, timed out, ...).
    Failed(ClientError),
}

/// Classifies the answer to writing version `ours`.
///
/// A store that refused `ours` as stale and holds a version written by the
/// same host tenure (same generation) at least as new has our change: a
/// retried or reordered copy of our own, e.g. an async copy that timed out
/// on a paused store, was applied when it resumed, and is overtaken by the
/// next change. Not a move. A higher generation means another server
/// claimed the session (it moved).
pub(crate) fn put_outcome(ours: Stamp, r: Result<(), ClientError>) -> PutOutcome {
    match r {
        Ok(()) => PutOutcome::Stored,
        Err(ClientError::Stale { stored })
            if stored.generation == ours.generation && stored.seq >= ours.seq =>
        {
            PutOutcome::Stored
        }
        Err(ClientError::Stale { stored }) => PutOutcome::Moved(stored),
        Err(e) => PutOutcome::Failed(e),
    }
}

impl SessionManager {
    /// Whether a commit must copy its change itself before answering: in
    /// sync mode always, in async mode while the queue lags too far behind.
    pub(crate) fn replicates_in_line(&self) -> bool {
        self.inner
            .queue
            .as_ref()
            .is_none_or(|q| q.lag_exceeded.load(Ordering::Relaxed))
    }

    /// Copies version `stamp` of session `id` as a commit must: in line (see
    /// [`SessionManager::replicates_in_line`]), returning the stores that
    /// acknowledged it, or left to the async queue (after the commit
    /// caches it, [`SessionManager::enqueue`]), returning `None`.
    pub(crate) async fn replicate(
        &self,
        id: &SessionId,
        stamp: Stamp,
        payload: &Bytes,
        ttl: Duration,
    ) -> Result<Option<u64>, SessionError> {
        if !self.replicates_in_line() {
            return Ok(None);
        }
        let started = Instant::now();
        let stored_on = self.write(id, stamp, payload, ttl).await?;
        self.inner
            .hot
            .replication_seconds()
            .record(started.elapsed().as_secs_f64());
        Ok(Some(stored_on))
    }

    /// Writes one version to the session's replicas, with TTL `ttl`,
    /// re-placing around stores that fail. Returns the stores that
    /// acknowledged it.
    ///
    /// A version counts as written only once **`W = R` distinct stores**
    /// acknowledged it (`docs/safety.md`, §1), whatever this server
    /// believes about which stores are up: a takeover reads `stores - R +
    /// 1` of them, and only a write on R stores is sure to meet that read.
    /// Which R stores is placement's choice (the session's replicas among
    /// the stores believed up, re-placed around those that fail). With
    /// fewer acknowledgements the write answers 503; the caller drops its
    /// copy, so the version is never served from the cache.
    ///
    /// A replica that has not answered [`Config::slow_store`] after the
    /// write was sent is [passed over](crate::stores::Stores::mark_slow):
    /// the version is sent to the next store in placement order too, and
    /// whichever R stores acknowledge first make the write. The slow
    /// store's request stays sent (it applies the version when it answers;
    /// its answer is not waited for once R others acknowledged).
    ///
    /// [`Config::slow_store`]: crate::Config::slow_store
    pub(crate) async fn write(
        &self,
        id: &SessionId,
        stamp: Stamp,
        payload: &Bytes,
        ttl: Duration,
    ) -> Result<u64, SessionError> {
        let inner = &self.inner;
        let stores = &inner.stores;
        let key = id.key();
        let key = key.as_bytes();
        let ttl = Some(ttl);
        let owner = self.owner();
        let owner = owner.as_str();
        let needed = write_quorum(stores.len(), inner.config.replicas);
        let mut acked = 0u64;
        // Stores the version was sent to; those of them that failed; those
        // passed over as slow.
        let mut sent = 0u64;
        let mut failed = 0u64;
        let mut passed = 0u64;
        let mut rounds = 0;
        let mut pending = futures_util::stream::FuturesUnordered::new();
        let slow_after = inner.config.slow_store;
        let mut slow_at: Option<Instant> = None;
        // Every store's failure, in the order they came: which one refused
        // and which one timed out both matter at 3 a.m.
        let mut errors: Vec<String> = Vec::new();
        loop {
            let have = acked.count_ones() as usize;
            if have >= needed {
                break;
            }
            let in_flight = (sent & !acked & !failed).count_ones() as usize;
            let mut more = 0u64;
            if have + in_flight < needed {
                // Nothing sent yet, or some failed: place around them.
                if rounds == WRITE_ROUNDS {
                    break;
                }
                rounds += 1;
                let missing = needed - have - in_flight;
                // This server's belief that stores are down may be stale
                // (its own pause made its requests time out): with too few
                // believed up to reach the quorum, look at them all again,
                // for a ping's grace at most (a store it cannot reach fails
                // the write at once, not after a store timeout).
                if ((stores.live() & !sent).count_ones() as usize) < missing {
                    crate::look::look_again(self, |live| {
                        ((live & !sent).count_ones() as usize) >= missing
                    })
                    .await;
                }
                more = stores.next_stores(id, sent, missing);
                if more == 0 && in_flight == 0 {
                    break;
                }
            }
            let answer = if more != 0 {
                None
            } else if let Some(at) = slow_at {
                tokio::select! {
                    answer = futures_util::StreamExt::next(&mut pending) => answer,
                    () = tokio::time::sleep_until(at) => {
                        slow_at = None;
                        let waiting = sent & !acked & !failed & !passed;
                        passed |= waiting;
                        more = self.pass_over_slow(id, waiting, sent, slow_after);
                        None
                    }
                }
            } else {
                futures_util::StreamExt::next(&mut pending).await
            };
            if more != 0 {
                for i in Stores::members(more) {
                    let put = stores.clients[i].put(key, stamp, owner, ttl, payload);
                    pending.push(async move { (i, put.await) });
                }
                sent |= more;
                slow_at = slow_after.map(|d| Instant::now() + d);
                continue;
            }
            let Some((i, r)) = answer else {
                continue;
            };
            stores.observe(i, &r);
            match put_outcome(stamp, r) {
                PutOutcome::Stored => acked |= 1 << i,
                PutOutcome::Moved(stored) => {
                    metrics::counter!("sticky_stale_refusals_total").increment(1);
                    tracing::warn!(session = ?id, %stamp, %stored, "write refused as stale: the session moved");
                    return Err(SessionError::Moved { stored });
                }
                PutOutcome::Failed(e) => {
                    failed |= 1 << i;
                    errors.push(format!("{}: {e}", stores.names[i]));
                }
            }
        }
        let have = acked.count_ones() as usize;
        if have >= needed {
            return Ok(acked);
        }
        metrics::counter!("sticky_write_no_quorum_total").increment(1);
        tracing::warn!(
            session = ?id,
            %stamp,
            acknowledged = have,
            needed,
            stores = stores.len(),
            "write refused: too few stores acknowledged it to be sure a takeover finds it"
        );
        let why = if errors.is_empty() {
            "no other live store".to_owned()
        } else {
            errors.join("; ")
        };
        Err(SessionError::Unavailable(format!(
            "{have} of the {needed} stores a write needs (replicas) acknowledged it ({why})"
        )))
    }

    /// The stores of `waiting` have not answered a write of `id` in
    /// `after` (`Config::slow_store`): marks them slow and returns as many
    /// other stores, next in `id`'s placement order after those in `sent`
    /// (fewer when no more are live).
    fn pass_over_slow(
        &self,
        id: &SessionId,
        waiting: u64,
        sent: u64,
        after: Option<Duration>,
    ) -> u64 {
        let stores = &self.inner.stores;
        let Some(after) = after else { return 0 };
        if waiting == 0 {
            return 0;
        }
        for i in Stores::members(waiting) {
            self.mark_slow(i, after);
        }
        let over = stores.next_stores(id, sent, waiting.count_ones() as usize);
        if over != 0 {
            metrics::counter!("sticky_write_hedges_total").increment(1);
        }
        over
    }

    /// Marks store `i` slow ([`Stores::mark_slow`]) after it left a
    /// request unanswered for `after`. When it was not slow before, a ping
    /// is sent to it at once: queued behind what it has not answered, its
    /// answer ends the slow mark as soon as the store catches up (rather
    /// than at the pinger's next round), and its timeout marks the store
    /// down.
    pub(crate) fn mark_slow(&self, i: usize, after: Duration) {
        if self.inner.stores.mark_slow(i, after) {
            let inner = Arc::clone(&self.inner);
            tokio::spawn(async move { inner.stores.ping_one(i).await });
        }
    }

    /// Async mode: queues `entry` for the replicator, unless it is queued
    /// already (then the queued copy will send the newest version).
    pub(crate) async fn enqueue(&self, id: SessionId, entry: Arc<Entry>) {
        let Some(queue) = &self.inner.queue else {
            return;
        };
        if entry.queued.swap(true, Ordering::AcqRel) {
            return; // coalesced: the queued copy will send the newest version
        }
        metrics::gauge!("sticky_replication_queue").increment(1.0);
        if queue.tx.send((id, entry, Instant::now())).await.is_err() {
            tracing::error!("replication queue closed");
        }
    }
}

/// Async mode: copies queued sessions, newest version only, up to
/// [`ASYNC_COPIES_IN_FLIGHT`] at once, until the manager is dropped.
pub(crate) async fn async_replicator(weak: Weak<Inner>, mut rx: QueueReceiver) {
    // Copies in flight. Each session has at most one queued or in flight
    // (changes coalesce), so this bounds how many sessions a slow store can
    // hold back: with 64, a paused store held every copy for its 1 s
    // timeout and a web server's kill then lost ~0.9 s of acknowledged
    // changes (measured with `sticky chaos --mode async`).
    let limit = Arc::new(tokio::sync::Semaphore::new(ASYNC_COPIES_IN_FLIGHT));
    while let Some((id, entry, queued_at)) = rx.recv().await {
        let Some(inner) = weak.upgrade() else { return };
        let m = SessionManager { inner };
        metrics::gauge!("sticky_replication_queue").decrement(1.0);
        let lag = queued_at.elapsed();
        metrics::gauge!("sticky_replication_lag_seconds").set(lag.as_secs_f64());
        if let Some(queue) = &m.inner.queue {
            queue
                .lag_exceeded
                .store(lag > m.inner.config.async_max_lag, Ordering::Relaxed);
        }
        let Ok(permit) = limit.clone().acquire_owned().await else {
            return;
        };
        tokio::spawn(async move {
            entry.queued.store(false, Ordering::Release);
            let snapshot = {
                let g = entry.slot.lock().await;
                g.as_ref()
                    .map(|s| (s.stamp, s.payload.clone(), m.copy_ttl(s.untouched)))
            };
            if let Some((stamp, payload, ttl)) = snapshot {
                let r = m.write(&id, stamp, &payload, ttl).await;
                let mut g = entry.slot.lock().await;
                match r {
                    Ok(on) => {
                        if let Some(s) = g.as_mut().filter(|s| s.stamp == stamp) {
                            s.stored_on = on;
                        }
                    }
                    Err(SessionError::Moved { .. }) => m.inner.cache.drop_copy(&id, &entry, &mut g),
                    Err(e) => {
                        tracing::warn!(session = ?id, error = %e, "async copy failed; will retry on the next change");
                        metrics::counter!("sticky_async_copy_failures_total").increment(1);
                    }
                }
            }
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_quorum_meets_every_takeover_read() {
        assert_eq!(write_quorum(3, 2), 2);
        assert_eq!(write_quorum(3, 1), 1);
        assert_eq!(
            write_quorum(1, 2),
            1,
            "fewer stores than replicas: all of them"
        );
        assert_eq!(write_quorum(0, 2), 1);
        // A takeover reads stores - R + 1 (at least 1): the two always meet.
        for stores in 1..=8usize {
            for r in 1..=stores {
                let read = stores - r + 1;
                assert!(
                    write_quorum(stores, r) + read > stores,
                    "{stores} stores, R={r}"
                );
            }
        }
    }

    #[test]
    fn a_stale_refusal_is_ours_only_within_the_same_generation() {
        let ours = Stamp::new(3, 5);
        let stale = |g, s| {
            Err(ClientError::Stale {
                stored: Stamp::new(g, s),
            })
        };
        assert_eq!(put_outcome(ours, Ok(())), PutOutcome::Stored);
        assert_eq!(
            put_outcome(ours, stale(3, 5)),
            PutOutcome::Stored,
            "this very version"
        );
        assert_eq!(
            put_outcome(ours, stale(3, 9)),
            PutOutcome::Stored,
            "a later one of ours"
        );
        assert_eq!(
            put_outcome(ours, stale(4, 1)),
            PutOutcome::Moved(Stamp::new(4, 1)),
            "claimed by another server"
        );
        assert!(matches!(
            put_outcome(ours, Err(ClientError::NoSession)),
            PutOutcome::Failed(ClientError::NoSession)
        ));
    }
}
