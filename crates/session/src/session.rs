//! [`Session`]: the handle a request works with, and the framework-neutral
//! load/save API ([`SessionManager::load`], [`SessionManager::save`]).

use std::sync::{Arc, Mutex, MutexGuard};

use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Serialize;
use serde_json::Value;
use sticky_proto::Stamp;

use crate::cache::SessionState;
use crate::commit::{Changes, CookieAction};
use crate::data;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::open::{Admit, Held, Opened, Source};
use crate::state::SessionManager;

/// One request's session. Cheap to clone (all clones are the same session);
/// reads and writes touch only local memory. Changes are copied to the
/// stores when the request finishes ([`SessionManager::save`], which the
/// [`SessionLayer`](crate::SessionLayer) calls).
#[derive(Clone)]
pub struct Session {
    inner: Arc<Mutex<Handle>>,
}

struct Handle {
    opened: Option<Opened>,
    changes: Changes,
    /// Copy kept after `save` took the session, for late readers.
    id: SessionId,
    source: Source,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = self.lock();
        f.debug_struct("Session")
            .field("id", &h.id)
            .field("source", &h.source)
            .finish_non_exhaustive()
    }
}

/// What the response must do with the session cookie after [`SessionManager::save`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieUpdate {
    /// Nothing.
    Keep,
    /// Set the cookie to this (signed) value.
    Set(String),
    /// Remove the cookie (the session was destroyed).
    Remove,
}

impl Session {
    fn lock(&self) -> MutexGuard<'_, Handle> {
        // A panic in another holder leaves plain data behind; keep going.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Reads the data: this request's changed copy if it has one, else
    /// the payload in the cache with the keys changed since ([`Edits`]).
    /// `None` once saved.
    fn view<R>(&self, f: impl FnOnce(View<'_>) -> R) -> Option<R> {
        let h = self.lock();
        let opened = h.opened.as_ref()?;
        if let Some(d) = &opened.edited {
            return Some(f(View::Edited(d)));
        }
        opened
            .held
            .state()
            .map(|s| f(View::Stored(&s.payload, Edits(&opened.pending))))
    }

    /// [`view`](Self::view) of the data whole: a request that changed
    /// keys without parsing the payload parses it now, with its changes.
    fn view_whole<R>(&self, f: impl FnOnce(View<'_>) -> R) -> Option<R> {
        let pending = self
            .lock()
            .opened
            .as_ref()
            .is_some_and(|o| !o.pending.is_empty());
        if pending {
            // (Parsing applies the pending changes; nothing else changes.)
            let _ = self.modify(false, |_| ()).unwrap_or_else(unreadable);
        }
        self.view(f)
    }

    /// Sets (`Some`) or removes `key` and returns its previous value
    /// (parsed only if `old`): without parsing the data while this
    /// request changed few keys and the payload allows it
    /// ([`data::splice`], which the commit uses), else in its parsed copy.
    fn edit(
        &self,
        key: &str,
        value: Option<Value>,
        old: bool,
    ) -> Result<Option<Value>, SessionError> {
        {
            let mut h = self.lock();
            let h = &mut *h;
            let Some(opened) = h.opened.as_mut() else {
                return Ok(None);
            };
            let Some(state) = opened.held.state() else {
                return Ok(None);
            };
            let at = opened.pending.iter().position(|(k, _)| k == key);
            if opened.edited.is_none()
                && (at.is_some() || opened.pending.len() < MAX_PENDING)
                && data::spliceable(&state.payload, key)
            {
                let previous = match at {
                    Some(i) => {
                        let (_, v) = &mut opened.pending[i];
                        std::mem::replace(v, value)
                    }
                    None => {
                        let previous = if old {
                            data::get::<Value>(&state.payload, key).map_err(data_error)?
                        } else {
                            None
                        };
                        opened.pending.push((key.to_owned(), value));
                        previous
                    }
                };
                h.changes.modified = true;
                return Ok(previous);
            }
        }
        Ok(self
            .modify(false, |d| match value {
                Some(v) => d.insert(key.to_owned(), v),
                None => d.remove(key),
            })?
            .flatten())
    }

    /// Changes the data: parses the payload into this request's own copy
    /// at the first change (`fresh`: an empty copy instead, for `clear`),
    /// which the commit serializes. `Ok(None)` once saved.
    fn modify<R>(
        &self,
        fresh: bool,
        f: impl FnOnce(&mut serde_json::Map<String, Value>) -> R,
    ) -> Result<Option<R>, SessionError> {
        let mut h = self.lock();
        let h = &mut *h;
        let Some(opened) = h.opened.as_mut() else {
            return Ok(None);
        };
        let edited = match &mut opened.edited {
            Some(d) => d,
            None => {
                let Some(state) = opened.held.state() else {
                    return Ok(None);
                };
                let pending = std::mem::take(&mut opened.pending);
                let d = if fresh {
                    serde_json::Map::new()
                } else {
                    let mut d = data::parse(&state.payload).map_err(data_error)?;
                    data::apply(&mut d, pending);
                    d
                };
                opened.edited.insert(d)
            }
        };
        h.changes.modified = true;
        Ok(Some(f(edited)))
    }

    /// The value at `key`, deserialized.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] if the stored value is not a `T`.
    pub fn get<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        // Straight from the payload when unchanged: only this key's value
        // is parsed, the others skipped.
        self.view(|v| match v {
            View::Edited(d) => d
                .get(key)
                .map(|v| T::deserialize(v))
                .transpose()
                .map_err(data_error),
            View::Stored(p, edits) => match edits.get(key) {
                Some(v) => v.map(T::deserialize).transpose().map_err(data_error),
                None => data::get::<T>(p, key).map_err(data_error),
            },
        })
        .unwrap_or(Ok(None))
    }

    /// The raw JSON value at `key`.
    pub fn get_value(&self, key: &str) -> Option<Value> {
        self.get::<Value>(key).ok().flatten()
    }

    /// Sets `key` to `value`.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] if `value` does not serialize to JSON.
    pub fn insert<T: Serialize>(&self, key: &str, value: T) -> Result<(), SessionError> {
        let v = serde_json::to_value(value).map_err(data_error)?;
        self.edit(key, Some(v), false)?;
        Ok(())
    }

    /// Sets `key` to a raw JSON value; returns the previous one.
    pub fn insert_value(&self, key: &str, value: Value) -> Option<Value> {
        self.edit(key, Some(value), true).unwrap_or_else(unreadable)
    }

    /// Removes `key`, returning its value deserialized.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] if the removed value is not a `T`.
    pub fn remove<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, SessionError> {
        match self.remove_value(key) {
            None => Ok(None),
            Some(v) => serde_json::from_value(v).map(Some).map_err(data_error),
        }
    }

    /// Removes `key`, returning its raw value.
    pub fn remove_value(&self, key: &str) -> Option<Value> {
        let present = self.view(|v| match v {
            View::Edited(d) => d.contains_key(key),
            View::Stored(p, edits) => match edits.get(key) {
                Some(v) => v.is_some(),
                None => matches!(data::get::<IgnoredAny>(p, key), Ok(Some(_))),
            },
        });
        if present != Some(true) {
            return None;
        }
        self.edit(key, None, true).unwrap_or_else(unreadable)
    }

    /// Removes every key (the session itself lives on).
    pub fn clear(&self) {
        let empty = self.view_whole(|v| match v {
            View::Edited(d) => d.is_empty(),
            View::Stored(p, _) => data::is_empty(p).unwrap_or(false),
        });
        if empty == Some(false) {
            // Nothing to parse: the new data is empty whatever it was.
            let _ = self.modify(true, |d| d.clear());
        }
    }

    /// Gives the session a new id when the request finishes (call it at
    /// login, against session fixation); the old id is destroyed.
    pub fn cycle_id(&self) {
        self.lock().changes.cycle_id = true;
    }

    /// Destroys the session when the request finishes: its copies become
    /// tombstones and the cookie is removed.
    pub fn destroy(&self) {
        self.lock().changes.destroyed = true;
    }

    /// Whether this request changed the data.
    pub fn is_modified(&self) -> bool {
        self.lock().changes.modified
    }

    /// Records the client address a new session is counted against by the
    /// per-address limit (`new_sessions_per_ip`); see
    /// [`SessionManager::client_address`]. The [`SessionLayer`](crate::SessionLayer)
    /// calls it; a session that already exists ignores it.
    pub fn set_client_addr(&self, addr: std::net::IpAddr) {
        if let Some(o) = self.lock().opened.as_mut() {
            if let Admit::New { client } = &mut o.admit {
                *client = Some(addr);
            }
        }
    }

    /// Where this request found the session.
    pub fn source(&self) -> Source {
        self.lock().source
    }

    /// The session id (a secret: do not log or show it).
    pub fn id(&self) -> SessionId {
        self.lock().id
    }

    /// The stamp the session will carry once this request is saved: the
    /// next one if the request changed it, the current one otherwise.
    pub fn stamp(&self) -> Stamp {
        let h = self.lock();
        let Some(state) = h.opened.as_ref().and_then(|o| o.held.state()) else {
            return Stamp::default();
        };
        if !h.changes.modified {
            state.stamp
        } else if state.is_unsaved() {
            Stamp::new(1, 1)
        } else {
            state.stamp.next_seq().unwrap_or(state.stamp)
        }
    }

    /// The stamp the session will carry once this request is saved if it
    /// changes the data, whether or not it has so far: for a handler that
    /// decides elsewhere (an app behind the sidecar, `docs/sidecar.md`),
    /// which answers with [`stamp`](Self::stamp) if it leaves the data
    /// alone and this one if it changes it.
    pub fn next_stamp(&self) -> Stamp {
        let h = self.lock();
        match h.opened.as_ref().and_then(|o| o.held.state()) {
            None => Stamp::default(),
            Some(state) if state.is_unsaved() => Stamp::new(1, 1),
            Some(state) => state.stamp.next_seq().unwrap_or(state.stamp),
        }
    }

    /// The keys stored.
    pub fn keys(&self) -> Vec<String> {
        self.view_whole(|v| match v {
            View::Edited(d) => d.keys().cloned().collect(),
            View::Stored(p, _) => data::keys(p).unwrap_or_default(),
        })
        .unwrap_or_default()
    }

    /// All the data as a JSON object, the bytes [`data`](Self::data)
    /// would serialize to. While this request has not changed it, this is
    /// a slice of the copy the stores hold: no copy of the data and no
    /// serializing (the sidecar sends it to the app with every request).
    /// `{}` once saved.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] if the data cannot be serialized.
    pub fn data_json(&self) -> Result<bytes::Bytes, SessionError> {
        let empty = || bytes::Bytes::from_static(b"{}");
        self.view_whole(|v| match v {
            View::Edited(d) => serde_json::to_vec(d)
                .map(bytes::Bytes::from)
                .map_err(data_error),
            View::Stored(p, _) if p.is_empty() => Ok(empty()),
            View::Stored(p, _) => match crate::cache::stored_data_range(p) {
                Some(range) => Ok(p.slice(range)),
                None => data::parse(p)
                    .and_then(|d| serde_json::to_vec(&d))
                    .map(bytes::Bytes::from)
                    .map_err(data_error),
            },
        })
        .unwrap_or_else(|| Ok(empty()))
    }

    /// A copy of all the data (empty once saved).
    pub fn data(&self) -> serde_json::Map<String, Value> {
        self.view_whole(|v| match v {
            View::Edited(d) => d.clone(),
            View::Stored(p, _) => data::parse(p).unwrap_or_else(|e| unreadable(data_error(e))),
        })
        .unwrap_or_default()
    }

    fn from_opened(opened: Opened) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Handle {
                id: opened.id,
                source: opened.source,
                opened: Some(opened),
                changes: Changes::default(),
            })),
        }
    }
}

/// The data a request reads.
enum View<'a> {
    /// Its own copy, changed.
    Edited(&'a serde_json::Map<String, Value>),
    /// The payload in the cache, and the keys changed since (read first;
    /// the [`view_whole`](Session::view_whole) of the data has none).
    Stored(&'a bytes::Bytes, Edits<'a>),
}

/// Most keys one request changes without parsing its session's data
/// ([`data::splice`]); its next change parses it (a request changing many
/// keys is better served by serializing once than by splicing each).
const MAX_PENDING: usize = 4;

/// The keys a request changed without parsing the payload.
#[derive(Clone, Copy)]
struct Edits<'a>(&'a [data::Edit]);

impl<'a> Edits<'a> {
    /// `key`'s change, if it changed: its value, or `None` if removed.
    fn get(self, key: &str) -> Option<Option<&'a Value>> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_ref())
    }
}

fn data_error(e: serde_json::Error) -> SessionError {
    SessionError::Data(e.to_string())
}

/// A payload that does not read as a session's data, seen by a method that
/// cannot report it: every payload in the cache was written by this
/// server or read whole at takeover, so this is a bug; it is logged (not
/// the data) and the method answers as if there were no data.
fn unreadable<T: Default>(e: SessionError) -> T {
    tracing::error!(error = %e, "a cached session's data does not read back");
    T::default()
}

impl SessionManager {
    /// Opens the session named by a session cookie's value: from the local
    /// cache (no network I/O), by takeover from the stores, or a new one.
    /// A forged or malformed value counts as no session and causes no
    /// store lookup. The session stays locked until [`SessionManager::save`].
    ///
    /// # Errors
    ///
    /// [`SessionError::Unavailable`] when a takeover cannot reach any store;
    /// [`SessionError::Data`] when a stored copy cannot be read.
    pub async fn load(&self, cookie_value: Option<&str>) -> Result<Session, SessionError> {
        self.load_routed_moved(cookie_value, None, None).await
    }

    /// [`SessionManager::load`] for a request the director routed for
    /// `routed_epoch` (its `sticky-epoch` header): refused with
    /// [`SessionError::Fenced`] if this server's epoch is another one,
    /// before the load or (if a fence raced with it) after it, in which
    /// case the loaded copy is dropped. So no request routed before a
    /// fence loads or serves a session after it (invariants 2 and 4).
    ///
    /// # Errors
    ///
    /// As [`SessionManager::load`], and [`SessionError::Fenced`].
    pub async fn load_routed(
        &self,
        cookie_value: Option<&str>,
        routed_epoch: Option<u64>,
    ) -> Result<Session, SessionError> {
        self.load_routed_moved(cookie_value, routed_epoch, None)
            .await
    }

    /// [`SessionManager::load_routed`] for a request the director moved
    /// off the server `moved_from` (its `sticky-moved-from` header,
    /// `name@epoch`) because it found that server down: if the session
    /// must be taken over, its claim probes that lease's owner at once
    /// and, if the probe proves the process gone, ends the lease in its
    /// first round at the stores, one round trip fewer than finding it
    /// live first. A hint only: a lease is ended only on the probe's
    /// proof, as in any claim.
    ///
    /// # Errors
    ///
    /// As [`SessionManager::load_routed`].
    pub async fn load_routed_moved(
        &self,
        cookie_value: Option<&str>,
        routed_epoch: Option<u64>,
        moved_from: Option<&str>,
    ) -> Result<Session, SessionError> {
        // A stopping server has fenced itself too: its refusal says it is
        // going away, not only that its epoch changed (on which the
        // director would route to it again with the new epoch).
        if self.stopping() {
            return Err(SessionError::Stopping);
        }
        self.check_lease();
        let check = |routed| self.inner.fencing.check_routed(routed);
        routed_epoch.map_or(Ok(()), check)?;
        let mut opened = self.open(cookie_value, moved_from).await?;
        if let Err(fenced) = routed_epoch.map_or(Ok(()), check) {
            self.drop_local(&mut opened);
            // A stop that fenced during the load says so.
            return Err(if self.stopping() {
                SessionError::Stopping
            } else {
                fenced
            });
        }
        Ok(Session::from_opened(opened))
    }

    /// Opens session `id` itself, for frameworks that name sessions their
    /// own way (the tower-sessions adapter): from the local cache, or by
    /// takeover from the stores; `None` when no store has a live copy
    /// (expired, destroyed, never saved) or it is past the absolute timeout.
    /// No cookie is involved: the caller vouches for `id`, and an unknown
    /// `id` costs a lookup on every live store. The session stays locked
    /// until [`SessionManager::save`].
    ///
    /// # Errors
    ///
    /// As [`SessionManager::load`].
    pub async fn load_id(&self, id: SessionId) -> Result<Option<Session>, SessionError> {
        self.check_lease();
        Ok(match self.open_id(id).await? {
            Some(opened) => self.unless_too_old(opened).map(Session::from_opened),
            None => None,
        })
    }

    /// A new, empty session under `id` (chosen by the caller, e.g. another
    /// framework's random id), without asking the stores. It is stored by
    /// [`SessionManager::save`] once modified, with the first stamp: a store
    /// still holding a copy or tombstone of `id` refuses it
    /// ([`SessionError::Moved`]). `save` returns [`CookieUpdate::Set`] with
    /// Sticky's own cookie value, which such callers ignore.
    pub fn create_id(&self, id: SessionId) -> Session {
        self.check_lease();
        Session::from_opened(Opened {
            id,
            source: Source::New,
            entry: None,
            held: Held::Fresh(SessionState::new()),
            edited: None,
            pending: Vec::new(),
            admit: Admit::New { client: None },
            epoch: self.inner.fencing.epoch(),
        })
    }

    /// Copies the session's changes to its replicas (sync mode: waits for
    /// all of them) and unlocks it. Saving twice is a no-op.
    ///
    /// # Errors
    ///
    /// [`SessionError::TooLarge`] (nothing stored), [`SessionError::Moved`]
    /// (another server owns it now), [`SessionError::Unavailable`] (the
    /// stores did not acknowledge). In each case this server's copy is
    /// dropped, so no unacknowledged version is ever served.
    pub async fn save(&self, session: &Session) -> Result<CookieUpdate, SessionError> {
        let (opened, changes) = {
            let mut h = session.lock();
            (h.opened.take(), h.changes)
        };
        let Some(opened) = opened else {
            return Ok(CookieUpdate::Keep);
        };
        if !changes.changes_anything() {
            // Most requests (reads): nothing to wait for, and the commit's
            // state stays out of their futures.
            self.release(opened);
            return Ok(CookieUpdate::Keep);
        }
        let action = Box::pin(self.commit(opened, changes)).await?;
        if let CookieAction::Set(v) = &action {
            // Late readers see the new id.
            if let Some(id) = self.inner.signer.verify(v) {
                session.lock().id = id;
            }
        }
        Ok(match action {
            CookieAction::None => CookieUpdate::Keep,
            CookieAction::Set(v) => CookieUpdate::Set(v),
            CookieAction::Remove => CookieUpdate::Remove,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use serde_json::json;

    use super::*;
    use crate::cache::{Entry, StoredRef};
    use crate::state::tests::{config, manager};

    /// A session opened from the cache, whose payload holds `data`.
    async fn cached(m: &SessionManager, data: Option<&Value>) -> Session {
        let id = SessionId::from_bytes([3; 16]);
        let mut state = SessionState::new();
        if let Some(d) = data {
            let d = d.as_object().unwrap();
            let p = serde_json::to_vec(&StoredRef { c: 1, d }).unwrap();
            state.payload = bytes::Bytes::from(p);
            state.stamp = Stamp::new(1, 1);
        }
        m.inner
            .cache
            .insert(id, Entry::new(Some(state), m.inner.clock.now_ms()));
        let opened = m.open_id(id).await.unwrap().unwrap();
        assert_eq!(opened.source, Source::Cache);
        Session::from_opened(opened)
    }

    #[tokio::test]
    async fn reads_come_from_the_payload_and_the_first_change_parses_it() {
        let m = manager(config(2));
        let d = json!({"blob": "x".repeat(1000), "cart": ["a"], "counter": 1});
        let s = cached(&m, Some(&d)).await;
        assert_eq!(s.get::<u64>("counter").unwrap(), Some(1));
        assert_eq!(s.get_value("cart"), Some(json!(["a"])));
        assert_eq!(s.get::<u64>("absent").unwrap(), None);
        assert!(matches!(s.get::<u64>("blob"), Err(SessionError::Data(_))));
        assert_eq!(s.keys(), ["blob", "cart", "counter"]);
        assert_eq!(&s.data(), d.as_object().unwrap());
        assert_eq!(s.data_json().unwrap(), serde_json::to_vec(&d).unwrap());
        assert_eq!(s.remove_value("absent"), None);
        assert!(!s.is_modified(), "reading changes nothing");
        assert!(
            s.lock().opened.as_ref().unwrap().edited.is_none(),
            "nor parses it all"
        );

        s.insert("counter", 2u64).unwrap();
        assert!(s.is_modified());
        assert_eq!(s.get::<u64>("counter").unwrap(), Some(2));
        assert_eq!(s.get::<String>("blob").unwrap(), Some("x".repeat(1000)));
        assert_eq!(s.remove_value("cart"), Some(json!(["a"])));
        let now = json!({"blob": "x".repeat(1000), "counter": 2});
        assert_eq!(&s.data(), now.as_object().unwrap());
        assert_eq!(s.data_json().unwrap(), serde_json::to_vec(&now).unwrap());
        assert_eq!(s.keys(), ["blob", "counter"]);
        s.clear();
        assert!(s.data().is_empty());
        assert_eq!(s.data_json().unwrap(), &b"{}"[..]);
    }

    /// A request's first few changes are kept aside for the commit to
    /// splice, the payload unparsed, and read back as if applied; more
    /// keys, or a read of the whole data, parse it with them.
    #[tokio::test]
    async fn a_few_changes_leave_the_payload_unparsed_and_read_back() {
        let m = manager(config(2));
        let d = json!({"blob": "x".repeat(1000), "cart": ["a"], "counter": 1});
        let s = cached(&m, Some(&d)).await;
        let unparsed = |s: &Session| s.lock().opened.as_ref().unwrap().edited.is_none();
        s.insert("counter", 2u64).unwrap();
        assert_eq!(s.insert_value("counter", json!(3)), Some(json!(2)));
        assert_eq!(s.insert_value("new", json!({"k": [1]})), None);
        assert_eq!(s.remove_value("cart"), Some(json!(["a"])));
        assert_eq!(s.remove_value("cart"), None, "removed already");
        assert!(s.is_modified() && unparsed(&s));
        assert_eq!(s.get::<u64>("counter").unwrap(), Some(3));
        assert_eq!(s.get_value("new"), Some(json!({"k": [1]})));
        assert_eq!(s.get_value("cart"), None);
        assert_eq!(s.get::<String>("blob").unwrap(), Some("x".repeat(1000)));
        assert!(unparsed(&s), "reading one key parses nothing");
        let now = json!({"blob": "x".repeat(1000), "counter": 3, "new": {"k": [1]}});
        assert_eq!(s.keys(), ["blob", "counter", "new"]);
        assert!(!unparsed(&s), "reading them all parsed it");
        assert_eq!(&s.data(), now.as_object().unwrap());

        let s2 = {
            let m = manager(config(2));
            cached(&m, Some(&d)).await
        };
        for k in ["a", "b", "c", "d"] {
            s2.insert(k, 1u64).unwrap();
        }
        assert!(unparsed(&s2), "{MAX_PENDING} keys");
        s2.insert("e", 1u64).unwrap();
        assert!(!unparsed(&s2), "one more parses it");
        assert_eq!(
            s2.keys(),
            ["a", "b", "blob", "c", "cart", "counter", "d", "e"]
        );
    }

    #[tokio::test]
    async fn clear_and_remove_of_an_unchanged_session_change_it_only_if_there_is_data() {
        let m = manager(config(2));
        let s = cached(&m, None).await;
        assert_eq!(s.get_value("k"), None);
        assert!(s.keys().is_empty());
        assert_eq!(s.data_json().unwrap(), &b"{}"[..]);
        s.clear();
        assert_eq!(s.remove_value("k"), None);
        assert!(!s.is_modified());
        drop(s);

        let m = manager(config(2));
        let s = cached(&m, Some(&json!({"k": 1}))).await;
        assert_eq!(s.remove::<u64>("k").unwrap(), Some(1));
        assert!(s.is_modified());
        assert!(s.data().is_empty());

        let m = manager(config(2));
        let s = cached(&m, Some(&json!({"k": 1}))).await;
        s.clear();
        assert!(s.is_modified());
        assert_eq!(s.get_value("k"), None);
        assert_eq!(s.data_json().unwrap(), &b"{}"[..]);
    }
}
