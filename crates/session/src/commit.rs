//! Committing a request's session: destroy (tombstones), cycle the id
//! (login), lazy touch of an unchanged session, or a new version copied to
//! the stores by the [replicator](crate::replicator); then the cookie
//! the response must carry. Any failure drops this server's copy, so no
//! unacknowledged version is ever served.

use std::sync::atomic::Ordering;

use bytes::Bytes;
use sticky_client::ClientError;
use sticky_proto::Stamp;

use crate::cache::{Entry, SessionState, StoredRef};
use crate::dropped::LocalCopy;
use crate::error::SessionError;
use crate::id::{CookieSigner, SessionId};
use crate::open::{Admit, Held, Opened, Source};
use crate::replicator::write_quorum;
use crate::state::SessionManager;

/// What the request did to its session.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Changes {
    pub(crate) modified: bool,
    pub(crate) destroyed: bool,
    pub(crate) cycle_id: bool,
}

impl Changes {
    /// Whether the commit has anything to store or destroy (else it only
    /// releases the session: [`SessionManager::release`]).
    pub(crate) fn changes_anything(&self) -> bool {
        self.modified || self.destroyed || self.cycle_id
    }
}

/// What commit tells the response.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CookieAction {
    None,
    Set(String),
    Remove,
}

impl SessionManager {
    /// Copies the request's changes to the stores (sync: waits for every
    /// replica; async: queues) and releases the session.
    pub(crate) async fn commit(
        &self,
        mut opened: Opened,
        changes: Changes,
    ) -> Result<CookieAction, SessionError> {
        let inner = &self.inner;
        let Some(state) = opened.held.state_mut() else {
            return Ok(CookieAction::None);
        };
        if changes.destroyed {
            let destroyed = self
                .destroy(&opened.id, state)
                .await
                .and_then(|()| self.acknowledged_within_lease(opened.epoch));
            // Destroyed, or moved elsewhere: either way this copy is done.
            self.drop_local(&mut opened);
            destroyed?;
            return Ok(if opened.source == Source::New {
                CookieAction::None
            } else {
                CookieAction::Remove
            });
        }
        if changes.cycle_id && !state.is_unsaved() {
            // Login: the session continues under a new id; the old id is destroyed.
            let mut moved = state.clone();
            let edited = opened.edited.take();
            let pending = std::mem::take(&mut opened.pending);
            let epoch = opened.epoch;
            let destroyed = self
                .destroy(&opened.id, state)
                .await
                .and_then(|()| self.acknowledged_within_lease(epoch));
            self.drop_local(&mut opened);
            destroyed?;
            moved.stamp = Stamp::default();
            moved.stored_on = 0;
            let fresh = self.fresh()?;
            opened = Opened {
                id: fresh.id,
                source: Source::New,
                entry: None,
                held: Held::Fresh(moved),
                edited,
                pending,
                // The same user under a new id: not a new session.
                admit: Admit::Existing,
                epoch,
            };
            return Box::pin(self.commit(
                opened,
                Changes {
                    modified: true,
                    ..Changes::default()
                },
            ))
            .await;
        }
        if !changes.changes_anything() {
            self.lazy_touch(&opened.id, state);
            return Ok(CookieAction::None);
        }
        let new_id = if changes.cycle_id {
            Some(self.fresh()?.id)
        } else {
            None
        };
        if let Some(id) = new_id {
            // A never-saved session: just take the new id.
            opened.id = id;
        }
        let payload = match (&opened.edited, state.payload.is_empty()) {
            // A few keys changed: spliced into the payload.
            (None, _) if !opened.pending.is_empty() => {
                spliced(state.created_ms, &state.payload, &opened.pending)?
            }
            // The data unchanged under a new id (login): the payload is
            // already its serialized form.
            (None, false) => state.payload.clone(),
            (edited, _) => serialize(state.created_ms, edited.as_ref())?,
        };
        let next = if state.is_unsaved() {
            Stamp::new(1, 1)
        } else {
            state
                .stamp
                .next_seq()
                .ok_or_else(|| SessionError::Data("stamp overflow".into()))?
        };
        if payload.len() > inner.config.max_size {
            metrics::counter!("sticky_too_large_total").increment(1);
            self.drop_local(&mut opened);
            return Err(SessionError::TooLarge {
                size: payload.len(),
                limit: inner.config.max_size,
            });
        }
        // A new session is admitted (caps, per-address limit) before it
        // costs anything, and lives `new_session_ttl` until touched again.
        let untouched = matches!(opened.admit, Admit::New { .. });
        let _admitted = match opened.admit {
            Admit::New { client } => Some(inner.admission.admit(
                &inner.config,
                &inner.cache,
                client,
                payload.len() as u64,
                inner.clock.now_ms(),
            )?),
            Admit::Existing => None,
        };
        opened.edited = None;
        opened.pending = Vec::new();
        inner.hot.session_bytes().record(payload.len() as f64);
        // Copied in line: the stores that acknowledged; queued: none yet
        // (the queue records them once copied).
        let ttl = self.copy_ttl(untouched);
        let copied = match self
            .replicate(&opened.id, next, &payload, ttl)
            .await
            .and_then(|c| {
                // In line: acknowledged only if the lease belief held when
                // the last store acknowledged (`docs/safety.md` §1).
                c.map_or(Ok(None), |c| {
                    self.acknowledged_within_lease(opened.epoch)
                        .map(|()| Some(c))
                })
            }) {
            Ok(copied) => copied,
            Err(e) => {
                self.keep_for_reclaim(&opened, &e);
                self.drop_local(&mut opened);
                return Err(e);
            }
        };
        let state = opened
            .held
            .state_mut()
            .ok_or_else(|| SessionError::Data("state vanished".into()))?;
        state.stamp = next;
        state.payload = payload;
        state.stored_on = copied.unwrap_or(0);
        state.untouched = untouched;
        state.store_deadline_ms = self.store_deadline_ms(untouched);
        let bytes = state.payload.len() as u64;
        // A new session (or one under a new id) enters the cache now.
        let entry = match opened.held {
            Held::Fresh(state) => {
                let entry = Entry::new(Some(state), inner.clock.now_ms());
                entry.bytes.store(bytes, Ordering::Release);
                entry.untouched.store(untouched, Ordering::Release);
                inner.cache.insert(opened.id, entry.clone());
                entry
            }
            Held::Cached(guard) => {
                let Some(e) = opened.entry else {
                    return Err(SessionError::Data("cached session without entry".into()));
                };
                inner.cache.set_bytes(&opened.id, &e, bytes);
                drop(guard);
                e
            }
        };
        let set = opened.source == Source::New || new_id.is_some();
        let cookie = set.then(|| {
            // Its next request's MAC, known without the HMAC (`open`).
            let tag = inner.signer.tag(&opened.id);
            entry.remember_tag(&tag);
            CookieSigner::value(&opened.id, &tag)
        });
        if copied.is_none() {
            self.enqueue(opened.id, entry).await;
        }
        Ok(cookie.map_or(CookieAction::None, CookieAction::Set))
    }

    /// A change that could not be stored (too few stores acknowledged it,
    /// or the lease belief lapsed meanwhile) drops this server's copy, so
    /// that nothing serves a version the stores may not hold. The last
    /// acknowledged version it held is kept ([`Dropped`](crate::dropped::Dropped))
    /// and claimed back in the background, as after a lapse: the failure
    /// may have left it on fewer than `R` live stores (a replica died, or
    /// restarted empty, while another store refused the copy), and without
    /// a host nobody would copy it again, so a second store failure could
    /// lose it while this server — its host — lives (invariant 1; found by
    /// the every-fault chaos run of session 21). The claim counts this copy
    /// as one more, and follows the claim rules: a newer version anywhere
    /// wins, another live host keeps its session (421, settled).
    ///
    /// Not after a refusal that proves a newer version stored ([`SessionError::Moved`]):
    /// that version's host keeps it.
    fn keep_for_reclaim(&self, opened: &Opened, e: &SessionError) {
        if matches!(e, SessionError::Moved { .. }) {
            return;
        }
        let Held::Cached(guard) = &opened.held else {
            return; // a new session: nothing acknowledged yet
        };
        let Some(state) = guard.as_ref().filter(|s| !s.is_unsaved()) else {
            return;
        };
        self.keep_to_reclaim(
            opened.id,
            LocalCopy {
                stamp: state.stamp,
                payload: state.payload.clone(),
            },
        );
    }

    /// Releases a session the request did not change (the commit of
    /// [`Changes`] that change nothing), without waiting on anything: a
    /// lazy touch of its copies if they are due one.
    pub(crate) fn release(&self, mut opened: Opened) {
        if let Some(state) = opened.held.state_mut() {
            self.lazy_touch(&opened.id, state);
        }
    }

    /// Ok if epoch `epoch`'s lease belief still holds now, when the last
    /// acknowledgement of a change has arrived: only then may the change be
    /// acknowledged (a claim cannot have started reading yet). Else 503.
    fn acknowledged_within_lease(&self, epoch: u64) -> Result<(), SessionError> {
        let inner = &self.inner;
        if inner.fencing.holds(epoch, inner.clock.now_ms()) {
            return Ok(());
        }
        metrics::counter!("sticky_acks_after_lease_total").increment(1);
        tracing::warn!(
            epoch,
            "a change was stored after this server's lease belief ended: not acknowledged"
        );
        Err(crate::open::not_serving())
    }

    /// Replaces the session's copies by tombstones. A refusal as stale
    /// means another server owns the session now: [`SessionError::Moved`],
    /// like any other refused write, never a silent success.
    ///
    /// Unlike a put ([`put_outcome`](crate::replicator::put_outcome)), any
    /// stale refusal of a tombstone other than our own counts as a move:
    /// the tombstone's stamp is the next of the newest version this server
    /// knows, so no later version of its own can be stored.
    ///
    /// Tombstones go to every store (believed up or not) and live as long
    /// as a copy could; a logout needs `replicas`
    /// of them acknowledged (else 503), and the stores that did not take
    /// one get it in the background (issue 15, item 12).
    async fn destroy(&self, id: &SessionId, state: &SessionState) -> Result<(), SessionError> {
        if state.is_unsaved() {
            return Ok(());
        }
        let Some(stamp) = state.stamp.next_seq() else {
            return Ok(());
        };
        let inner = &self.inner;
        // Every store, believed up or not: a store that was down at logout
        // must not bring the session back, and the tombstone needs
        // `replicas` acknowledgements wherever the replicas are. A
        // tombstone is a few bytes, and logouts are rare.
        let targets = inner.stores.all();
        let needed = write_quorum(inner.stores.len(), inner.config.replicas);
        let key = id.key();
        let ttl = tombstone_ttl(&inner.config);
        let dels = inner
            .stores
            .fan_out(targets, |c| c.delete(key.as_bytes(), stamp, Some(ttl)))
            .await;
        let mut moved = None;
        let mut stored = 0u64;
        for (i, r) in dels {
            match r {
                Ok(()) => stored |= 1 << i,
                // Our own tombstone, already there (a retried delete).
                Err(ClientError::Stale { stored: s }) if s == stamp => stored |= 1 << i,
                Err(ClientError::Stale { stored }) => moved = Some(stored),
                Err(e) => {
                    tracing::debug!(session = ?id, store = %inner.stores.names[i], error = %e, "tombstone not stored yet; retrying in the background")
                }
            }
        }
        if let Some(stored) = moved {
            metrics::counter!("sticky_stale_refusals_total").increment(1);
            tracing::warn!(session = ?id, %stamp, %stored, "destroy refused as stale: the session moved");
            return Err(SessionError::Moved { stored });
        }
        let missing = targets & !stored;
        if missing != 0 {
            self.retry_tombstones(*id, stamp, missing);
        }
        if (stored.count_ones() as usize) < needed {
            return Err(SessionError::Unavailable(format!(
                "the logout reached {} of the {needed} stores it needs; it is retried in the background",
                stored.count_ones()
            )));
        }
        Ok(())
    }

    /// Keeps writing tombstone `stamp` of `id` to the stores of `missing`
    /// that did not take it, with backoff, for as long as a live copy there
    /// could outlive it (the idle timeout); then gives up with a warning.
    fn retry_tombstones(&self, id: SessionId, stamp: Stamp, mut missing: u64) {
        // Weak: the retries stop when the manager is dropped.
        let weak = std::sync::Arc::downgrade(&self.inner);
        let give_up = tokio::time::Instant::now() + self.inner.config.idle_timeout;
        metrics::counter!("sticky_tombstone_retries_total").increment(1);
        tokio::spawn(async move {
            let key = id.key();
            let mut wait = std::time::Duration::from_millis(250);
            while missing != 0 && tokio::time::Instant::now() < give_up {
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(10));
                let Some(inner) = weak.upgrade() else { return };
                let ttl = tombstone_ttl(&inner.config);
                for (i, r) in inner
                    .stores
                    .fan_out(missing, |c| c.delete(key.as_bytes(), stamp, Some(ttl)))
                    .await
                {
                    // Stored, or anything at least as new is there: done.
                    match r {
                        Ok(()) | Err(ClientError::Stale { .. }) => missing &= !(1 << i),
                        Err(_) => {}
                    }
                }
            }
            if missing != 0 {
                tracing::warn!(session = ?id, stores = missing.count_ones(), "gave up writing a logout's tombstone to stores that stayed unreachable");
            }
        });
    }
}

/// A session's payload: creation time `c` and data `d` (none: empty), in
/// [`StoredRef`]'s form.
fn serialize(
    c: u64,
    d: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<Bytes, SessionError> {
    let empty = serde_json::Map::new();
    let stored = StoredRef {
        c,
        d: d.unwrap_or(&empty),
    };
    // Allocated once, of exactly its length: this copy is kept for the
    // session's life, and `to_vec` grows by doubling, so its slack would
    // cost up to its size again per session (measured: 4.2 KB -> 3.2 KB
    // per 1 KB session on a web server), and cutting the slack off
    // (`into_boxed_slice`) leaves a hole next to every payload that only
    // small allocations fill (measured on `sticky up` with the data kept
    // only serialized: 1,880 B per 1 KB session). Serializing twice (first
    // only counting) costs a write about a microsecond per KB.
    let mut len = Counter(0);
    serde_json::to_writer(&mut len, &stored).map_err(|e| SessionError::Data(e.to_string()))?;
    let mut payload = Vec::with_capacity(len.0);
    serde_json::to_writer(&mut payload, &stored).map_err(|e| SessionError::Data(e.to_string()))?;
    Ok(Bytes::from(payload))
}

/// The payload with `edits` applied ([`crate::data::splice`]); parsed,
/// changed and serialized whole when it cannot be spliced.
fn spliced(c: u64, payload: &Bytes, edits: &[crate::data::Edit]) -> Result<Bytes, SessionError> {
    if let Some(p) = crate::data::splice(c, payload, edits) {
        return Ok(Bytes::from(p));
    }
    let mut d = crate::data::parse(payload).map_err(|e| SessionError::Data(e.to_string()))?;
    crate::data::apply(&mut d, edits.iter().cloned());
    serialize(c, Some(&d))
}

/// Counts the bytes written to it.
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How long a tombstone lives: as long as a live copy could (its TTL is
/// the idle timeout), so that a copy on a store that missed the logout
/// expires before the tombstone that outranks it.
fn tombstone_ttl(config: &crate::config::Config) -> std::time::Duration {
    config.idle_timeout.max(std::time::Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;
    use crate::state::tests::{config, manager};

    fn modified() -> Changes {
        Changes {
            modified: true,
            ..Changes::default()
        }
    }

    #[tokio::test]
    async fn a_new_session_that_was_not_changed_or_was_destroyed_stores_nothing() {
        let m = manager(config(2));
        let opened = m.fresh().unwrap_or_else(|e| panic!("{e}"));
        let r = m.commit(opened, Changes::default()).await;
        assert_eq!(r.ok(), Some(CookieAction::None));
        let opened = m.fresh().unwrap_or_else(|e| panic!("{e}"));
        let destroyed = Changes {
            destroyed: true,
            ..modified()
        };
        let r = m.commit(opened, destroyed).await;
        assert_eq!(r.ok(), Some(CookieAction::None), "no cookie to remove");
        assert_eq!(m.sessions(), 0);
    }

    #[tokio::test]
    async fn a_too_large_session_is_refused_and_this_servers_copy_dropped() {
        let mut c = config(2);
        c.max_size = 64;
        let m = manager(c);
        let big = Value::String("x".repeat(100));

        let mut opened = m.fresh().unwrap_or_else(|e| panic!("{e}"));
        opened.edited = Some([("k".to_owned(), big.clone())].into_iter().collect());
        match m.commit(opened, modified()).await {
            Err(SessionError::TooLarge { limit: 64, size }) => assert!(size > 100),
            other => panic!("{other:?}"),
        }
        assert_eq!(m.sessions(), 0, "a new session never enters the cache");

        let id = SessionId::from_bytes([8; 16]);
        m.inner.cache.insert(
            id,
            Entry::new(Some(SessionState::new()), m.inner.clock.now_ms()),
        );
        let opened = m.open_id(id).await.unwrap_or_else(|e| panic!("{e}"));
        let mut opened = opened.unwrap_or_else(|| panic!("cached"));
        opened.edited = Some([("k".to_owned(), big)].into_iter().collect());
        let r = m.commit(opened, modified()).await;
        assert!(matches!(r, Err(SessionError::TooLarge { .. })));
        assert!(
            m.inner.cache.get(&id).is_none(),
            "the unsaved version is not served"
        );
    }
}
