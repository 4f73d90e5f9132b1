//! Takeover (C7): a validly signed session id that is not in the local
//! cache is read from the stores in parallel (highest stamp wins), claimed
//! with a new generation by compare-and-set, repaired onto all of its
//! replicas, and only then cached.
//!
//! A takeover reads only if it hears from a *read quorum*: at least
//! `stores - R + 1` stores, so that every set of R stores a host may have
//! written the newest version to includes one that answered. With fewer,
//! the highest copy it could see may be an old one, and claiming it (a
//! higher generation) would override the newest copy everywhere it lies:
//! an acknowledged write lost although its host and both its replicas are
//! alive. Found by chaos: a web server resumed after a pause, its requests
//! to two stores had timed out meanwhile (its own pause, not theirs), and it
//! took a session over from the third, which held a copy from before a
//! store failure. A takeover that believes fewer than a quorum of stores
//! up now first looks at the others again, and answers 503 (retry later)
//! if it still cannot reach a quorum.

use sticky_client::{ClientError, StoredSession};

use crate::cache::{SessionState, Stored};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::state::Inner;

/// Claim attempts before giving up (each re-reads the stores).
const ATTEMPTS: usize = 5;

/// Loads `id` from the stores and claims it for this server. `Ok(None)`
/// when no store has a live copy (expired, destroyed or never saved).
pub(crate) async fn load(
    inner: &Inner,
    id: &SessionId,
) -> Result<Option<SessionState>, SessionError> {
    let key = id.key();
    let total = inner.stores.len();
    let needed = read_quorum(total, inner.config.replicas);
    let mut last_err = String::from("no live store");
    for attempt in 0..ATTEMPTS {
        // Every live store is asked, not only the current replicas: after
        // store failures a newer copy may sit on a former replica. With
        // fewer live stores than the quorum, those believed down are looked
        // at again first: the belief may be stale (this process may just
        // have been paused, its requests timing out for no fault of the
        // stores'). With a quorum live, a store that is really down costs
        // the takeover nothing.
        if (inner.stores.live().count_ones() as usize) < needed {
            inner.stores.ping_all().await;
        }
        let gets = inner
            .stores
            .fan_out(inner.stores.live(), |c| c.get(key.as_bytes()))
            .await;
        let mut best: Option<(usize, StoredSession)> = None;
        let mut answered = 0;
        for (i, r) in gets {
            match r {
                Ok(found) => {
                    answered += 1;
                    if let Some(copy) = found {
                        if best.as_ref().is_none_or(|(_, b)| copy.stamp > b.stamp) {
                            best = Some((i, copy));
                        }
                    }
                }
                Err(e) => last_err = format!("{}: {e}", inner.stores.names[i]),
            }
        }
        if answered < needed {
            metrics::counter!("sticky_takeover_no_quorum_total").increment(1);
            tracing::warn!(
                session = ?id,
                answered,
                needed,
                stores = total,
                "takeover refused: too few stores answered to be sure of the newest copy"
            );
            return Err(SessionError::Unavailable(format!(
                "{answered} of {total} stores answered; a takeover needs {needed} \
                 (stores - replicas + 1) to be sure of the newest copy ({last_err})"
            )));
        }
        let Some((holder, copy)) = best else {
            return Ok(None);
        };
        if copy.deleted {
            return Ok(None);
        }
        let stored: Stored = serde_json::from_slice(&copy.payload)
            .map_err(|e| SessionError::Data(format!("stored session unreadable: {e}")))?;
        let new = copy
            .stamp
            .next_generation()
            .ok_or_else(|| SessionError::Data("generation overflow".into()))?;
        let ttl = Some(inner.config.idle_timeout);
        let owner = inner.config.server_name.as_str();
        let claim = inner.stores.clients[holder]
            .claim(key.as_bytes(), copy.stamp, new, owner, ttl)
            .await;
        inner.stores.observe(holder, &claim);
        match claim {
            Ok(()) => {}
            Err(ClientError::Stale { .. } | ClientError::NoSession) => {
                tracing::debug!(session = ?id, attempt, "claim lost a race; re-reading");
                metrics::counter!("sticky_claim_retries_total").increment(1);
                continue;
            }
            Err(ClientError::Deleted { .. }) => return Ok(None),
            Err(e) => {
                last_err = format!("{}: {e}", inner.stores.names[holder]);
                continue;
            }
        }
        // Repair: put the claimed version on every current replica.
        let mut stored_on = 1u64 << holder;
        let targets = inner.stores.replicas(id, inner.config.replicas) & !stored_on;
        let puts = inner
            .stores
            .fan_out(targets, |c| {
                c.put(key.as_bytes(), new, owner, ttl, &copy.payload)
            })
            .await;
        for (i, r) in puts {
            match r {
                Ok(()) => stored_on |= 1 << i,
                // Not the replicator's rule (`put_outcome`): right after a
                // claim no later version of ours can exist, so any higher
                // stamp, even of the same generation, is another server's.
                Err(ClientError::Stale { stored }) if stored > new => {
                    // Someone claimed after us: they win; so do we not.
                    return Err(SessionError::Moved { stored });
                }
                Err(e) => {
                    tracing::debug!(session = ?id, store = %inner.stores.names[i], error = %e, "repair failed; re-copy will retry")
                }
            }
        }
        return Ok(Some(SessionState {
            data: stored.d,
            created_ms: stored.c,
            stamp: new,
            payload: copy.payload,
            stored_on,
            store_deadline_ms: inner.clock.now_ms() + inner.config.idle_timeout.as_millis() as u64,
            // A taken-over session was used before: the normal lifetime.
            untouched: false,
        }));
    }
    Err(SessionError::Unavailable(format!(
        "could not claim the session after {ATTEMPTS} attempts ({last_err})"
    )))
}

/// The fewest stores a takeover must hear from: `stores - replicas + 1`,
/// so that it meets every set of `replicas` stores a host may have written
/// to (at least 1; all of them with R=1).
fn read_quorum(stores: usize, replicas: usize) -> usize {
    stores.saturating_sub(replicas.clamp(1, stores.max(1))) + 1
}

#[cfg(test)]
mod tests {
    use super::read_quorum;

    #[test]
    fn a_read_quorum_meets_every_replica_set() {
        assert_eq!(read_quorum(3, 2), 2);
        assert_eq!(read_quorum(3, 1), 3);
        assert_eq!(read_quorum(3, 3), 1);
        assert_eq!(read_quorum(2, 2), 1);
        assert_eq!(read_quorum(1, 1), 1);
        assert_eq!(read_quorum(5, 2), 4);
        // R above the number of stores: every store holds a copy.
        assert_eq!(read_quorum(2, 3), 1);
        // No store at all: a quorum of one that can never answer.
        assert_eq!(read_quorum(0, 2), 1);
        // Any `needed` stores and any `replicas` stores of `total` share one.
        for total in 1..=8usize {
            for r in 1..=total {
                assert!(read_quorum(total, r) + r > total, "{total} stores, R={r}");
            }
        }
    }
}
