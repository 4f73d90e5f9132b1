//! Copies that only a process holds (`docs/safety.md` §3, "A restarted
//! store's no"). A takeover may count the "no copy" of stores that
//! restarted empty once every store has answered: the stores then show
//! every copy any store still keeps. That is not every copy that exists.
//! A live web server may hold the session's newest acknowledged version in
//! memory alone — in its cache before it copied it to the restarted stores
//! again, or kept after a lapse or a failed write to be claimed back —
//! and its users are owed that version (invariant 1: the host survived).
//! So such a takeover first asks every other web server whether it holds
//! the session, and goes on only when none does (or none runs).

use std::io::ErrorKind;
use std::sync::atomic::Ordering;

use http::{Method, StatusCode};
use sticky_proto::control::{self, HoldsReport, RequestError, HOLDS_PATH};
use sticky_proto::Stamp;

use crate::fencing::owner_name;
use crate::id::SessionId;
use crate::state::SessionManager;

/// How long a peer gets to answer.
const ASK_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);
/// Longest answer read.
const MAX_ANSWER: usize = 4 << 10;

impl SessionManager {
    /// Whether this server holds session `id` in memory, and its newest
    /// copy's stamp: a cached copy, a copy kept to be claimed back, or an
    /// entry a request holds right now (it may be saving a copy; its stamp
    /// is then unknown) — unless that request is a claim of an entry that
    /// holds no copy yet: two servers claiming one session at once do not
    /// hold each other back.
    pub(crate) fn holds(&self, id: &SessionId) -> HoldsReport {
        let inner = &self.inner;
        let kept = inner.dropped.copy_of(id).map(|c| c.stamp);
        let (busy, cached) = match inner.cache.get(id) {
            None => (false, None),
            Some(entry) => match entry.slot.try_lock() {
                Ok(slot) => (false, slot.as_ref().map(|s| s.stamp)),
                Err(_) => (!entry.claiming.load(Ordering::Acquire), None),
            },
        };
        let newest = kept.max(cached);
        HoldsReport {
            name: inner.config.server_name.clone(),
            epoch: inner.fencing.epoch(),
            holds: busy || newest.is_some(),
            stamp: newest.filter(|_| !busy).map(|s| [s.generation, s.seq]),
        }
    }

    /// `Ok` when no other web server holds a copy of session `id` in
    /// memory newer than `mine` (this server's own kept copy, if any): each
    /// peer answered that it holds none, or one no newer, or refused the
    /// connection (no process runs there, so no memory holds it).
    /// Otherwise why not ([`Held`]).
    pub(crate) async fn no_peer_holds(
        &self,
        id: &SessionId,
        mine: Option<Stamp>,
    ) -> Result<(), Held> {
        let inner = &self.inner;
        let auth = control::bearer(&inner.admin_token).map_err(|e| Held::Unsure(e.to_string()))?;
        let path = format!("{HOLDS_PATH}/{}", id.key());
        let asks = inner
            .config
            .peers
            .iter()
            .filter(|peer| peer.name != inner.config.server_name)
            .map(|peer| {
                let (auth, path) = (&auth, &path);
                async move {
                    let answer = control::request(
                        peer.addr,
                        Method::GET,
                        path,
                        Some(auth),
                        ASK_TIMEOUT,
                        MAX_ANSWER,
                    )
                    .await;
                    (peer, answer)
                }
            });
        for (peer, answer) in futures_util::future::join_all(asks).await {
            match answer {
                Err(RequestError::Connect(e)) if e.kind() == ErrorKind::ConnectionRefused => {}
                Ok(resp) if resp.status() == StatusCode::OK => {
                    match serde_json::from_slice::<HoldsReport>(resp.body()) {
                        Ok(r) if !r.holds => {}
                        Ok(HoldsReport {
                            stamp: Some([generation, seq]),
                            ..
                        }) if mine.is_some_and(|m| Stamp::new(generation, seq) <= m) => {}
                        Ok(r) => return Err(Held::By(owner_name(&r.name, r.epoch))),
                        Err(e) => {
                            return Err(Held::Unsure(format!("{} answered badly: {e}", peer.name)))
                        }
                    }
                }
                Ok(resp) => {
                    return Err(Held::Unsure(format!(
                        "{} answered {}",
                        peer.name,
                        resp.status()
                    )));
                }
                Err(e) => return Err(Held::Unsure(format!("{} did not answer: {e}", peer.name))),
            }
        }
        Ok(())
    }
}

/// Why a takeover may not count restarted stores' "no copy"
/// ([`SessionManager::no_peer_holds`]).
#[derive(Debug)]
pub(crate) enum Held {
    /// This web server (`name@epoch`) holds a newer copy (or one it
    /// cannot date): the request belongs there (421 naming it; the
    /// director re-sends it).
    By(String),
    /// A peer did not answer (paused, cut off, an older version) and may
    /// hold one: 503 until it answers or copies the session back.
    Unsure(String),
}
