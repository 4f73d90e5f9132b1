//! Takeover (C7): a validly signed session id that is not in the local
//! cache is read from the stores in parallel (highest stamp wins), claimed
//! with a new generation by compare-and-set, repaired onto all of its
//! replicas, and only then cached.

use sticky_proto::client::{ClientError, StoredSession};

use crate::cache::{mono_ms, SessionState, Stored};
use crate::id::SessionId;
use crate::manager::{Inner, SessionError};
use crate::stores::Stores;

/// Claim attempts before giving up (each re-reads the stores).
const ATTEMPTS: usize = 5;

/// Loads `id` from the stores and claims it for this server. `Ok(None)`
/// when no store has a live copy (expired, destroyed or never saved).
pub(crate) async fn load(
    inner: &Inner,
    id: &SessionId,
) -> Result<Option<SessionState>, SessionError> {
    let key = id.key();
    let mut last_err = String::from("no live store");
    for attempt in 0..ATTEMPTS {
        // Every live store is asked, not only the current replicas: after
        // store failures a newer copy may sit on a former replica.
        let live = inner.stores.live();
        if live == 0 {
            inner.stores.ping_all().await;
        }
        let gets = Stores::members(inner.stores.live()).map(|i| {
            let c = &inner.stores.clients[i];
            let key = key.as_bytes();
            async move { (i, c.get(key).await) }
        });
        let mut best: Option<(usize, StoredSession)> = None;
        let mut answered = 0;
        for (i, r) in futures_util::future::join_all(gets).await {
            inner.stores.observe(i, &r);
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
        if answered == 0 {
            return Err(SessionError::Unavailable(last_err));
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
        let puts = Stores::members(targets).map(|i| {
            let c = &inner.stores.clients[i];
            let key = key.as_bytes();
            let payload = &copy.payload;
            async move { (i, c.put(key, new, owner, ttl, payload).await) }
        });
        for (i, r) in futures_util::future::join_all(puts).await {
            inner.stores.observe(i, &r);
            match r {
                Ok(()) => stored_on |= 1 << i,
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
            store_deadline_ms: mono_ms() + inner.config.idle_timeout.as_millis() as u64,
        }));
    }
    Err(SessionError::Unavailable(format!(
        "could not claim the session after {ATTEMPTS} attempts ({last_err})"
    )))
}
