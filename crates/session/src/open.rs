//! Opening a request's session: from the local cache (no network I/O), by
//! [takeover](crate::takeover) from the stores, or new; and [`Opened`],
//! the session a request holds (locked) until it is committed.

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::cache::{Entry, SessionState, Slot};
use crate::dropped::LocalCopy;
use crate::error::SessionError;
use crate::id::SessionId;
use crate::state::SessionManager;
use crate::takeover;

/// Where a request found its session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// The local cache: no network I/O.
    Cache,
    /// The stores (a takeover).
    Store,
    /// Nowhere: a new session.
    New,
}

impl Source {
    /// `cache`, `store` or `new`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Cache => "cache",
            Source::Store => "store",
            Source::New => "new",
        }
    }
}

/// Whether storing an opened session adds a session to this server, and
/// so must be admitted ([`crate::admission`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admit {
    /// A session that exists (hosted, taken over, or continued under a
    /// new id at login): never refused by the caps or the rate limit.
    Existing,
    /// A new session, from `client` (`None`: unknown).
    New { client: Option<IpAddr> },
}

/// A session opened for one request: holds its lock until committed.
pub(crate) struct Opened {
    pub(crate) id: SessionId,
    pub(crate) source: Source,
    /// The cache entry; `None` for a new session not yet in the cache.
    pub(crate) entry: Option<Arc<Entry>>,
    pub(crate) held: Held,
    /// The data as this request changed it: parsed from the payload at its
    /// first change ([`Session`](crate::Session)'s writes), serialized by
    /// the commit, then dropped. `None` while the request only reads.
    pub(crate) edited: Option<serde_json::Map<String, serde_json::Value>>,
    /// The keys this request changed without parsing the payload (while
    /// `edited` is `None`), in order, which the commit splices into it
    /// ([`data::splice`](crate::data::splice)).
    pub(crate) pending: Vec<crate::data::Edit>,
    pub(crate) admit: Admit,
    /// The epoch it was opened in: its change is acknowledged only if this
    /// epoch's lease belief still holds when the last store acknowledges it
    /// (`docs/safety.md` §1).
    pub(crate) epoch: u64,
}

impl Opened {
    fn cached(
        id: SessionId,
        source: Source,
        entry: Arc<Entry>,
        guard: OwnedMutexGuard<Slot>,
        epoch: u64,
    ) -> Self {
        Self {
            id,
            source,
            entry: Some(entry),
            held: Held::Cached(guard),
            edited: None,
            pending: Vec::new(),
            admit: Admit::Existing,
            epoch,
        }
    }
}

/// The session state a request works on.
pub(crate) enum Held {
    /// Locked in the cache.
    Cached(OwnedMutexGuard<Slot>),
    /// New, private to the request until committed.
    Fresh(SessionState),
}

impl Held {
    pub(crate) fn state(&self) -> Option<&SessionState> {
        match self {
            Held::Cached(g) => g.as_ref(),
            Held::Fresh(s) => Some(s),
        }
    }

    pub(crate) fn state_mut(&mut self) -> Option<&mut SessionState> {
        match self {
            Held::Cached(g) => g.as_mut(),
            Held::Fresh(s) => Some(s),
        }
    }
}

impl SessionManager {
    /// Opens the session a request's cookie names: from the cache, by
    /// takeover from the stores, or new. `moved_from` (`name@epoch`, the
    /// `sticky-moved-from` header): the server the director moved the
    /// request off because it found it down, whose lease a claim probes
    /// first ([`takeover::load`]).
    pub(crate) async fn open(
        &self,
        cookie: Option<&str>,
        moved_from: Option<&str>,
    ) -> Result<Opened, SessionError> {
        let inner = &self.inner;
        // The MAC is checked before anything else: against the one
        // remembered for a cached session (the same bytes the HMAC would
        // give, compared in constant time), else with the HMAC.
        let verified = cookie.and_then(crate::id::parse).and_then(|(id, tag)| {
            let known = inner.cache.tag_is(&id, &tag);
            (known || inner.signer.verifies(&id, &tag)).then_some((id, tag, known))
        });
        let Some((id, tag, known)) = verified else {
            if cookie.is_some() {
                metrics::counter!("sticky_invalid_cookies_total").increment(1);
            }
            return self.fresh();
        };
        match self.open_id_hinted(id, None, moved_from).await? {
            Some(opened) => {
                if !known {
                    if let Some(entry) = &opened.entry {
                        entry.remember_tag(&tag);
                    }
                }
                self.check_absolute(opened)
            }
            None => self.fresh(),
        }
    }

    /// Opens session `id` from the cache or by takeover from the stores;
    /// `None` when no store has a live copy (expired, destroyed, never
    /// saved). Does not check the absolute timeout.
    pub(crate) async fn open_id(&self, id: SessionId) -> Result<Option<Opened>, SessionError> {
        self.open_id_with(id, None).await
    }

    /// [`open_id`](Self::open_id), counting `local` (this server's copy
    /// from before a lapse) as one more copy if it must claim.
    pub(crate) async fn open_id_with(
        &self,
        id: SessionId,
        local: Option<LocalCopy>,
    ) -> Result<Option<Opened>, SessionError> {
        self.open_id_hinted(id, local, None).await
    }

    /// [`open_id_with`](Self::open_id_with), a claim probing the lease
    /// `moved_from` first (see [`open`](Self::open)).
    async fn open_id_hinted(
        &self,
        id: SessionId,
        local: Option<LocalCopy>,
        moved_from: Option<&str>,
    ) -> Result<Option<Opened>, SessionError> {
        let inner = &self.inner;
        // The epoch is read before the cache: an entry found below belongs
        // to this epoch or a later one, and is served only while this
        // epoch's belief holds, checked after its lock is taken.
        let epoch = self.serving_epoch().await?;
        if let Some(entry) = inner.cache.get(&id) {
            let mut guard = entry.slot.clone().lock_owned().await;
            if guard.is_some() {
                self.still_serving(epoch)?;
                second_request(&entry, &mut guard);
                entry.touch(inner.clock.now_ms());
                inner.hot.cache_hits().increment(1);
                let source = first_since_adoption(&entry);
                return Ok(Some(Opened::cached(id, source, entry, guard, epoch)));
            }
            // A load that found nothing, or one that failed: load again below.
        }
        let (entry, _) = inner.cache.get_or_insert(id);
        let mut guard = entry.slot.clone().lock_owned().await;
        if guard.is_some() {
            // Someone else loaded it while we waited.
            self.still_serving(epoch)?;
            second_request(&entry, &mut guard);
            entry.touch(inner.clock.now_ms());
            let source = first_since_adoption(&entry);
            return Ok(Some(Opened::cached(id, source, entry, guard, epoch)));
        }
        // A copy a lapse dropped counts in any claim of this server, a
        // user's request's as much as the reclaim's.
        let local = local.or_else(|| inner.dropped.copy_of(&id));
        let started = Instant::now();
        entry.claiming.store(true, Ordering::Release);
        let claimed = match tokio::time::timeout(
            inner.config.claim_timeout,
            // Boxed: the rare path's state (a takeover's store round
            // trips) stays out of every cached read's future.
            Box::pin(takeover::load(self, &id, epoch, local.as_ref(), moved_from)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => {
                metrics::counter!("sticky_claim_timeouts_total").increment(1);
                Err(SessionError::Unavailable(format!(
                    "the takeover did not finish within the claim timeout ({} ms)",
                    inner.config.claim_timeout.as_millis()
                )))
            }
        };
        entry.claiming.store(false, Ordering::Release);
        let claimed = match claimed {
            Ok(Some(state)) if !inner.fencing.holds(epoch, inner.clock.now_ms()) => {
                drop(state);
                Err(not_serving())
            }
            other => other,
        };
        match claimed {
            Ok(Some(state)) => {
                self.install(&id, &entry, &mut guard, state, started);
                Ok(Some(Opened::cached(id, Source::Store, entry, guard, epoch)))
            }
            Ok(None) => {
                self.not_found(&id, &entry, guard);
                Ok(None)
            }
            Err(e) => {
                drop(guard);
                inner.cache.remove_if(&id, &entry);
                Err(e)
            }
        }
    }

    /// Caches `state`, just claimed from the stores (by a claim that
    /// started at `started`), in `entry`, whose lock `guard` is.
    pub(crate) fn install(
        &self,
        id: &SessionId,
        entry: &Arc<Entry>,
        guard: &mut OwnedMutexGuard<Slot>,
        state: SessionState,
        started: Instant,
    ) {
        let inner = &self.inner;
        metrics::counter!("sticky_takeovers_total").increment(1);
        metrics::histogram!("sticky_takeover_seconds").record(started.elapsed().as_secs_f64());
        // Debug, not info: a dead server's sessions are taken over by
        // the thousand; `sticky_takeovers_total` and adoption's
        // summary line tell the operator.
        tracing::debug!(session = ?id, stamp = %state.stamp, us = started.elapsed().as_micros() as u64, "session taken over from the stores");
        inner.dropped.settle(id);
        inner.cache.set_bytes(id, entry, state.payload.len() as u64);
        **guard = Some(state);
        entry.touch(inner.clock.now_ms());
    }

    /// A claim found no live copy of `id` (expired, destroyed, or never
    /// saved): its empty `entry` leaves the cache.
    pub(crate) fn not_found(
        &self,
        id: &SessionId,
        entry: &Arc<Entry>,
        guard: OwnedMutexGuard<Slot>,
    ) {
        let inner = &self.inner;
        inner.dropped.settle(id);
        drop(guard);
        inner.cache.remove_if(id, entry);
        metrics::counter!("sticky_sessions_not_found_total").increment(1);
    }

    /// A new session, private to the request until committed.
    pub(crate) fn fresh(&self) -> Result<Opened, SessionError> {
        let id = SessionId::generate()
            .map_err(|e| SessionError::Unavailable(format!("no randomness: {e}")))?;
        Ok(Opened {
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

    /// The current epoch, once its lease belief holds: checks for a lapse
    /// (fencing if so), and waits for the first renewal of a new epoch at
    /// most one store timeout. Else 503: this server may not serve.
    pub(crate) async fn serving_epoch(&self) -> Result<u64, SessionError> {
        let inner = &self.inner;
        if self.stopping() {
            return Err(SessionError::Stopping);
        }
        self.check_lease();
        let epoch = inner.fencing.epoch();
        if inner.fencing.holds(epoch, inner.clock.now_ms()) {
            return Ok(epoch);
        }
        // A new epoch (just started or fenced) gets its first renewal within
        // a round trip: wait for it, but only while it is new, so that a
        // server cut off from the stores answers 503 at once.
        let clock = inner.clock;
        let young = clock
            .now_ms()
            .saturating_sub(inner.fencing.epoch_started_ms())
            < inner.config.store_timeout.as_millis() as u64;
        if inner.fencing.until_ms() == 0
            && young
            && inner
                .fencing
                .wait_for_belief(epoch, inner.config.store_timeout, || clock.now_ms())
                .await
        {
            return Ok(epoch);
        }
        metrics::counter!("sticky_not_serving_total").increment(1);
        Err(not_serving())
    }

    /// 503 unless epoch `epoch`'s belief still holds.
    fn still_serving(&self, epoch: u64) -> Result<(), SessionError> {
        let inner = &self.inner;
        if inner.fencing.holds(epoch, inner.clock.now_ms()) {
            Ok(())
        } else {
            Err(not_serving())
        }
    }

    /// Replaces a session past its absolute timeout by a new one.
    fn check_absolute(&self, opened: Opened) -> Result<Opened, SessionError> {
        match self.unless_too_old(opened) {
            Some(opened) => Ok(opened),
            None => self.fresh(),
        }
    }

    /// Drops this server's copy of an opened session (after a failed or
    /// refused write, a destroy, a fence that raced with the load, or the
    /// absolute timeout), so that the next request re-loads the last
    /// acknowledged version from the stores. A new session has no copy.
    pub(crate) fn drop_local(&self, opened: &mut Opened) {
        if let (Some(entry), Held::Cached(g)) = (&opened.entry, &mut opened.held) {
            self.inner.cache.drop_copy(&opened.id, entry, g);
        }
    }
}

/// [`Source::Store`] for the first request of a session adoption loaded
/// (it came from the stores), [`Source::Cache`] otherwise. One relaxed
/// load on the usual path.
fn first_since_adoption(entry: &Entry) -> Source {
    if entry.adopted.load(Ordering::Relaxed) && entry.adopted.swap(false, Ordering::AcqRel) {
        Source::Store
    } else {
        Source::Cache
    }
}

/// The error of a server that does not hold its lease.
pub(crate) fn not_serving() -> SessionError {
    SessionError::Unavailable(
        "this web server does not hold its lease at enough stores to serve sessions".into(),
    )
}

/// A request found a hosted session: if it was a new session no request
/// had touched since, it now gets the normal lifetime. Its store copies
/// are extended by this request's write or lazy touch, which a zero
/// `store_deadline_ms` forces.
fn second_request(entry: &Entry, slot: &mut Slot) {
    if let Some(s) = slot.as_mut().filter(|s| s.untouched) {
        s.untouched = false;
        s.store_deadline_ms = 0;
        entry.untouched.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::{config, manager};

    #[tokio::test]
    async fn a_forged_or_missing_cookie_opens_a_new_session_without_store_io() {
        let m = manager(config(3));
        let real = m.inner.signer.sign(&SessionId::from_bytes([9; 16]));
        let mut forged = real.clone().into_bytes();
        forged[40] = if forged[40] == b'0' { b'1' } else { b'0' };
        let forged = String::from_utf8(forged).unwrap_or_default();
        for cookie in [None, Some("garbage"), Some(forged.as_str())] {
            let opened = m.open(cookie, None).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(opened.source, Source::New);
            assert!(opened.entry.is_none());
        }
        assert_eq!(m.sessions(), 0, "nothing was looked up or cached");
    }

    /// The MAC remembered for a cached session (issue 19 item 1) accepts
    /// exactly the cookie the HMAC accepts: a wrong MAC for a cached id is
    /// refused as before (a new session, the cached one untouched), with
    /// and without a remembered MAC.
    #[tokio::test]
    async fn a_forged_mac_for_a_cached_id_is_refused_like_any_forgery() {
        let m = manager(config(3));
        let id = SessionId::from_bytes([6; 16]);
        let entry = Entry::new(Some(SessionState::new()), m.inner.clock.now_ms());
        m.inner.cache.insert(id, entry.clone());
        let real = m.inner.signer.sign(&id);
        let (_, tag) = crate::id::parse(&real).unwrap_or_else(|| panic!("well formed"));
        let forgeries = |real: &str| {
            let mut out = Vec::new();
            // Each hex digit of the MAC changed in turn, and other MACs.
            for i in 33..65 {
                let mut v = real.as_bytes().to_vec();
                v[i] = if v[i] == b'0' { b'1' } else { b'0' };
                out.push(String::from_utf8(v).unwrap_or_default());
            }
            out.push(format!("{}.{}", id.key(), "0".repeat(32)));
            out.push(format!("{}.{}", id.key(), "f".repeat(32)));
            out
        };
        let forged = forgeries(&real);
        assert!(!entry.tag_is(&tag), "nothing remembered yet");
        for remembered in [false, true] {
            if remembered {
                // Opened once with the real cookie: its MAC is remembered.
                let opened = m
                    .open(Some(&real), None)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!((opened.id, opened.source), (id, Source::Cache));
                drop(opened);
                assert!(entry.tag_is(&tag), "remembered after the HMAC verified it");
            }
            for cookie in &forged {
                let opened = m
                    .open(Some(cookie), None)
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(opened.source, Source::New, "{remembered} {cookie}");
                assert!(opened.entry.is_none());
                assert_ne!(opened.id, id);
                let (_, t) = crate::id::parse(cookie).unwrap_or_else(|| panic!("well formed"));
                assert!(!entry.tag_is(&t), "a forged MAC is never remembered");
            }
            assert_eq!(m.sessions(), 1, "only the cached session");
        }
        // And the real cookie still opens it, from the remembered MAC.
        let opened = m
            .open(Some(&real), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((opened.id, opened.source), (id, Source::Cache));
    }

    #[tokio::test]
    async fn a_cached_session_opens_from_the_cache_and_drop_local_removes_it() {
        let m = manager(config(3));
        let id = SessionId::from_bytes([5; 16]);
        let entry = Entry::new(Some(SessionState::new()), m.inner.clock.now_ms());
        m.inner.cache.insert(id, entry);
        let cookie = m.inner.signer.sign(&id);
        let mut opened = m
            .open(Some(&cookie), None)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((opened.id, opened.source), (id, Source::Cache));
        m.drop_local(&mut opened);
        assert!(opened.held.state().is_none(), "the slot is emptied");
        assert!(m.inner.cache.get(&id).is_none(), "and the entry removed");
        let mut fresh = m.fresh().unwrap_or_else(|e| panic!("{e}"));
        m.drop_local(&mut fresh);
        assert!(
            fresh.held.state().is_some(),
            "a new session has no copy to drop"
        );
    }
}
