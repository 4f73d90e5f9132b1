//! Adoption (claim 7 whole, `docs/safety.md` §5): when a director declares
//! a web server dead, it asks the failover targets to adopt that server's
//! sessions. Each lists the sessions the stores record as owned by the
//! dead lease (`SESS.OWNED`), keeps those the director's failover would
//! send to itself, and claims them in the background, paced. A session
//! whose user never returns is then hosted by a live server again, which
//! keeps it on R live stores (claim 9).

use std::collections::HashSet;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use sticky_proto::control::AdoptRequest;
use sticky_proto::rendezvous;
use tokio::time::Instant;

use crate::dropped::LocalCopy;
use crate::error::SessionError;
use crate::fencing::parse_owner;
use crate::id::SessionId;
use crate::open::Source;
use crate::state::{Inner, SessionManager};

/// Most session ids one adoption lists (per dead lease).
const MAX_LISTED: usize = 2_000_000;
/// Most `SESS.OWNED` pages read from one store.
const MAX_PAGES: usize = 100_000;
/// Claims in flight at once.
const CONCURRENCY: usize = 16;
/// Most adoptions running at once on one server.
const MAX_ADOPTIONS: usize = 16;

impl SessionManager {
    /// Starts adopting the sessions of dead lease `req.owner` that the
    /// director's failover over `req.among` sends to this server. Returns
    /// at once; the claims run in the background.
    ///
    /// # Errors
    ///
    /// [`SessionError::Data`] for a malformed request (an owner that is not
    /// `name@epoch`, this server's own current lease, no candidates, or this
    /// server not among them); [`SessionError::Unavailable`] when too many
    /// adoptions run already.
    pub fn adopt(&self, req: AdoptRequest) -> Result<(), SessionError> {
        let inner = &self.inner;
        let Some((name, _)) = parse_owner(&req.owner) else {
            return Err(SessionError::Data(format!(
                "owner {:?} is not name@epoch",
                req.owner
            )));
        };
        if req.owner == self.owner() {
            return Err(SessionError::Data("this server's own live lease".into()));
        }
        if !req.among.iter().any(|t| t.name == inner.config.server_name) {
            return Err(SessionError::Data(
                "this server is not among the adoption's candidates".into(),
            ));
        }
        {
            let mut running = inner.adopting.lock().unwrap_or_else(|p| p.into_inner());
            if running.contains(&req.owner) {
                return Ok(());
            }
            if running.len() >= MAX_ADOPTIONS {
                return Err(SessionError::Unavailable(
                    "too many adoptions running; retry later".into(),
                ));
            }
            running.insert(req.owner.clone());
        }
        tracing::info!(dead = %req.owner, from = name, candidates = req.among.len(), "adopting a dead server's sessions");
        tokio::spawn(adopt(Arc::downgrade(&self.inner), req));
        Ok(())
    }
}

impl SessionManager {
    /// Fences epoch `epoch` after its belief lapsed, keeps the copies it
    /// dropped ([`Dropped`](crate::dropped::Dropped)), and once the new
    /// epoch holds its lease, claims them back (paced, in the background,
    /// retried until each has a host again): they get a live host, which
    /// keeps them on R stores, instead of waiting at the stores for their
    /// users — while stores may fail further.
    pub(crate) fn fence_lapsed(&self, epoch: u64, why: &str) {
        // The ids, and each copy not locked by a request right now: the
        // stores may lose theirs before the claim (restarts), and this one
        // may be the newest that survives.
        let ids: Vec<(SessionId, Option<LocalCopy>)> = self
            .inner
            .cache
            .snapshot()
            .into_iter()
            .map(|(id, entry)| {
                let local = entry.slot.try_lock().ok().and_then(|g| {
                    g.as_ref().filter(|s| !s.is_unsaved()).map(|s| LocalCopy {
                        stamp: s.stamp,
                        payload: s.payload.clone(),
                    })
                });
                (id, local)
            })
            .collect();
        if let Some(new) = self.fence_epoch(epoch, why) {
            self.inner.dropped.keep(ids);
            if self.inner.dropped.len() > 0 {
                tokio::spawn(reclaim(Arc::downgrade(&self.inner), new));
            }
        }
    }
}

/// Whether the director's failover over `among` sends the session of
/// cookie value `cookie` to `me`: the highest weighted rendezvous score,
/// ties to the higher hash (crates/director/src/routing.rs).
pub(crate) fn routed_to(cookie: &str, among: &AdoptRequest, me: &str) -> bool {
    let scores = among.among.iter().map(|t| {
        let h = rendezvous::sha256_hash(cookie.as_bytes(), t.name.as_bytes());
        (rendezvous::weighted_score(h, t.weight.max(1)), h)
    });
    rendezvous::best(scores).is_some_and(|i| among.among[i].name == me)
}

async fn adopt(weak: Weak<Inner>, req: AdoptRequest) {
    let started = Instant::now();
    let ids = match weak.upgrade() {
        Some(inner) => list(&inner, &req).await,
        None => return,
    };
    let listed = ids.len();
    let mine: Vec<SessionId> = match weak.upgrade() {
        Some(inner) => ids
            .into_iter()
            .filter(|id| routed_to(&inner.signer.sign(id), &req, &inner.config.server_name))
            .collect(),
        None => return,
    };
    let mine: Vec<(SessionId, Option<LocalCopy>)> = mine.into_iter().map(|id| (id, None)).collect();
    let count = mine.len();
    metrics::gauge!("sticky_adoption_pending").increment(count as f64);
    let mut tally = Tally::default();
    let mut todo = mine;
    let mut pause = FIRST_RETRY;
    loop {
        let round = claim_all(&weak, &todo).await;
        metrics::gauge!("sticky_adoption_pending")
            .decrement((todo.len() - round.failed.len()) as f64);
        tally.add(&round);
        todo = round.failed;
        let Some(inner) = weak.upgrade() else { return };
        let give_up = started.elapsed() >= inner.config.idle_timeout
            || inner.stopping.load(std::sync::atomic::Ordering::SeqCst);
        if todo.is_empty() || give_up {
            if !todo.is_empty() {
                tracing::warn!(dead = %req.owner, left = todo.len(), error = round.last_error.as_deref().unwrap_or(""), "gave up adopting some sessions: their users' next requests claim them");
            }
            metrics::gauge!("sticky_adoption_pending").decrement(todo.len() as f64);
            break;
        }
        tracing::info!(dead = %req.owner, left = todo.len(), error = round.last_error.as_deref().unwrap_or(""), "some adoptions failed; retrying");
        drop(inner);
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LAST_RETRY);
    }
    metrics::counter!("sticky_adopted_total").increment(tally.claimed as u64);
    tracing::info!(
        dead = %req.owner,
        listed,
        mine = count,
        claimed = tally.claimed,
        gone = tally.gone,
        elsewhere = tally.elsewhere,
        left = todo.len(),
        ms = started.elapsed().as_millis() as u64,
        "adoption done"
    );
    if let Some(inner) = weak.upgrade() {
        inner
            .adopting
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&req.owner);
    }
}

/// After a lapse fenced this server into epoch `epoch`: once that epoch
/// holds its lease, claims back the sessions the fence kept in
/// [`Dropped`](crate::dropped::Dropped), in rounds, until each is claimed,
/// held by another live server, or gone — or the session idle timeout
/// passed (the stores expire them by then). A later fence takes over with
/// its own task; so does nobody after a stop.
pub(crate) async fn reclaim(weak: Weak<Inner>, epoch: u64) {
    let started = Instant::now();
    let current = |inner: &Inner| {
        inner.fencing.epoch() == epoch && !inner.stopping.load(std::sync::atomic::Ordering::SeqCst)
    };
    let mut tally = Tally::default();
    let mut pause = FIRST_RETRY;
    let mut rounds = 0u32;
    loop {
        let Some(inner) = weak.upgrade() else { return };
        if !current(&inner) {
            return; // fenced again (that fence reclaims), or stopping
        }
        if started.elapsed() >= inner.config.idle_timeout {
            let n = inner.dropped.clear();
            tracing::warn!(sessions = n, "gave up reclaiming the sessions a lapse dropped: no claim succeeded within the idle timeout");
            return;
        }
        let clock = inner.clock;
        if !inner
            .fencing
            .wait_for_belief(epoch, Duration::from_secs(1), || clock.now_ms())
            .await
        {
            drop(inner);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let todo = inner.dropped.pending();
        drop(inner);
        if todo.is_empty() {
            break;
        }
        rounds += 1;
        let round = claim_all(&weak, &todo).await;
        tally.add(&round);
        if round.failed.is_empty() {
            break;
        }
        tracing::info!(
            left = round.failed.len(),
            round = rounds,
            error = round.last_error.as_deref().unwrap_or(""),
            "some sessions a lapse dropped could not be claimed yet; retrying"
        );
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(LAST_RETRY);
    }
    metrics::counter!("sticky_reclaimed_total").increment(tally.claimed as u64);
    tracing::info!(
        claimed = tally.claimed,
        gone = tally.gone,
        elsewhere = tally.elsewhere,
        rounds,
        ms = started.elapsed().as_millis() as u64,
        "reclaimed the sessions a lapse dropped"
    );
}

/// The first pause between two rounds of claims that failed.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest pause between two rounds.
const LAST_RETRY: Duration = Duration::from_secs(2);

/// How a round of claims ended.
#[derive(Debug, Default)]
struct Tally {
    /// Claimed now, or found in the cache.
    claimed: usize,
    /// No live copy anywhere (destroyed or expired).
    gone: usize,
    /// Another live server holds it.
    elsewhere: usize,
    /// Not claimed yet (too few stores answered): to try again.
    failed: Vec<(SessionId, Option<LocalCopy>)>,
    /// The last failure's reason.
    last_error: Option<String>,
}

impl Tally {
    fn add(&mut self, round: &Tally) {
        self.claimed += round.claimed;
        self.gone += round.gone;
        self.elsewhere += round.elsewhere;
    }
}

/// Claims each session of `ids` (one already in the cache is only
/// opened), at most `recopy_rate` per second, [`CONCURRENCY`] at once.
/// Each settled one leaves [`Dropped`](crate::dropped::Dropped).
async fn claim_all(weak: &Weak<Inner>, ids: &[(SessionId, Option<LocalCopy>)]) -> Tally {
    let started = Instant::now();
    let rate = weak.upgrade().map_or(1, |i| i.config.recopy_rate.max(1));
    let pace = Duration::from_secs(1) / rate;
    let mut tally = Tally::default();
    let mut results = stream::iter(ids.iter().cloned().enumerate())
        .map(|(n, (id, local))| {
            let weak = weak.clone();
            async move {
                tokio::time::sleep_until(started + pace * n as u32).await;
                let inner = weak.upgrade()?;
                let m = SessionManager { inner };
                let r = m.open_id_with(id, local.clone()).await.map(|o| {
                    // Claimed now (not found in the cache): its first request
                    // will say it came from the stores.
                    if let Some(o) = o.as_ref().filter(|o| o.source == Source::Store) {
                        if let Some(e) = &o.entry {
                            e.adopted.store(true, std::sync::atomic::Ordering::Release);
                        }
                    }
                    o.is_some()
                });
                Some((id, local, r))
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(r) = results.next().await {
        let Some((id, local, r)) = r else { break };
        let settled = match r {
            Ok(true) => {
                tally.claimed += 1;
                true
            }
            Ok(false) | Err(SessionError::Data(_)) => {
                tally.gone += 1;
                true
            }
            Err(SessionError::Misdirected { .. } | SessionError::Moved { .. }) => {
                tally.elsewhere += 1;
                true
            }
            Err(e) => {
                tally.last_error = Some(e.to_string());
                tally.failed.push((id, local));
                false
            }
        };
        if settled {
            if let Some(inner) = weak.upgrade() {
                inner.dropped.settle(&id);
            }
        }
    }
    drop(results);
    tally
}

/// The ids the stores list as owned by `req.owner`, from every store that
/// answers, bounded.
async fn list(inner: &Inner, req: &AdoptRequest) -> HashSet<SessionId> {
    let mut ids = HashSet::new();
    for (i, client) in inner.stores.clients.iter().enumerate() {
        let mut cursor = 0;
        for _ in 0..MAX_PAGES {
            match client.owned(&req.owner, cursor).await {
                Ok((next, keys)) => {
                    for key in keys {
                        if ids.len() >= MAX_LISTED {
                            break;
                        }
                        if let Some(id) =
                            std::str::from_utf8(&key).ok().and_then(SessionId::from_hex)
                        {
                            ids.insert(id);
                        }
                    }
                    if next == 0 || ids.len() >= MAX_LISTED {
                        break;
                    }
                    cursor = next;
                }
                Err(e) => {
                    tracing::warn!(store = %inner.stores.names[i], error = %e, "adoption could not list a store's sessions");
                    break;
                }
            }
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;
    use sticky_proto::control::AdoptTarget;

    fn req(names: &[&str]) -> AdoptRequest {
        AdoptRequest {
            owner: "ws1@5".into(),
            among: names
                .iter()
                .map(|n| AdoptTarget {
                    name: (*n).into(),
                    weight: 1,
                })
                .collect(),
        }
    }

    #[test]
    fn every_session_goes_to_exactly_one_candidate() {
        let r = req(&["ws2", "ws3", "ws4"]);
        let mut counts = [0usize; 3];
        for n in 0..300 {
            let cookie = format!("{n:032x}.sig");
            let winners: Vec<usize> = ["ws2", "ws3", "ws4"]
                .iter()
                .enumerate()
                .filter(|(_, me)| routed_to(&cookie, &r, me))
                .map(|(i, _)| i)
                .collect();
            assert_eq!(winners.len(), 1, "{cookie}");
            counts[winners[0]] += 1;
        }
        assert!(counts.iter().all(|&c| c > 50), "spread: {counts:?}");
        assert!(!routed_to("x", &req(&[]), "ws2"), "no candidates: nobody");
    }
}
