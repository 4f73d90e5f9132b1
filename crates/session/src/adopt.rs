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

use futures_util::stream::{self, FuturesUnordered, StreamExt};
use sticky_proto::control::AdoptRequest;
use sticky_proto::rendezvous;
use tokio::time::Instant;

use crate::claim_batch::Outcome;
use crate::dropped::LocalCopy;
use crate::error::SessionError;
use crate::fencing::parse_owner;
use crate::id::SessionId;
use crate::open::Source;
use crate::state::{Inner, SessionManager};
use crate::takeover;

/// Most session ids one adoption lists (per dead lease).
const MAX_LISTED: usize = 2_000_000;
/// Most `SESS.OWNED` pages read from one store.
const MAX_PAGES: usize = 100_000;
/// Claims in flight at once, of sessions claimed alone.
const CONCURRENCY: usize = 16;
/// Sessions claimed in one batch.
const BATCH: usize = 64;
/// Batches in flight at once.
const BATCHES: usize = 2;
/// How long an adoption waits for the stores still listing once enough
/// lists are in ([`list`]).
const LIST_GRACE: Duration = Duration::from_millis(500);
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
        // The ids, and each copy: the stores may lose theirs before the
        // claim (restarts), and this one may be the newest that survives.
        // A copy a request holds right now is taken once the request lets
        // go of it (below), not skipped: its host is alive, and it may be
        // the only copy left.
        let mut busy = Vec::new();
        let ids: Vec<(SessionId, Option<LocalCopy>)> = self
            .inner
            .cache
            .snapshot()
            .into_iter()
            .map(|(id, entry)| {
                let local = match entry.slot.try_lock() {
                    Ok(g) => kept_copy(&g),
                    Err(_) => {
                        busy.push((id, entry.clone()));
                        None
                    }
                };
                (id, local)
            })
            .collect();
        if let Some(new) = self.fence_epoch(epoch, why) {
            self.inner.dropped.keep(ids);
            if self.inner.dropped.len() > 0 {
                tokio::spawn(reclaim(Arc::downgrade(&self.inner), new));
            }
            for (id, entry) in busy {
                let m = self.clone();
                tokio::spawn(async move {
                    let copy = kept_copy(&*entry.slot.lock().await);
                    if let Some(copy) = copy {
                        m.inner.dropped.keep(vec![(id, Some(copy))]);
                        m.reclaim_dropped();
                    }
                });
            }
        }
    }
}

/// The copy of a slot worth keeping to claim back: a saved session's.
fn kept_copy(slot: &crate::cache::Slot) -> Option<LocalCopy> {
    slot.as_ref()
        .filter(|s| !s.is_unsaved())
        .map(|s| LocalCopy {
            stamp: s.stamp,
            payload: s.payload.clone(),
        })
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
    if !mine.is_empty() {
        // The dead lease ended once, before the batches (which claim only
        // where it is not live), as the first claim alone would end it.
        if let Some(inner) = weak.upgrade() {
            let gone = takeover::end_if_gone(&SessionManager { inner }, &req.owner).await;
            tracing::debug!(dead = %req.owner, gone, "adoption: the dead lease probed");
        }
    }
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

impl SessionManager {
    /// Keeps `copy`, the last acknowledged version of `id` this server
    /// held, after a write or a re-copy too few stores took, and claims it
    /// back in the background ([`Self::reclaim_dropped`]).
    pub(crate) fn keep_to_reclaim(&self, id: SessionId, copy: LocalCopy) {
        metrics::counter!("sticky_kept_after_failed_writes_total").increment(1);
        self.inner.dropped.keep(vec![(id, Some(copy))]);
        self.reclaim_dropped();
    }

    /// Claims back, in the background, the copies failed writes kept in
    /// [`Dropped`](crate::dropped::Dropped) ([`reclaim`] in the current
    /// epoch); one such task at a time, which looks again before it ends.
    pub(crate) fn reclaim_dropped(&self) {
        let inner = &self.inner;
        // A stopping server claims nothing back: `reclaim` would return at
        // once, and the loop below would start it again without end.
        if self.stopping()
            || inner
                .reclaiming
                .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let weak = Arc::downgrade(&self.inner);
        let epoch = inner.fencing.epoch();
        tokio::spawn(async move {
            loop {
                reclaim(weak.clone(), epoch).await;
                let Some(inner) = weak.upgrade() else { return };
                inner
                    .reclaiming
                    .store(false, std::sync::atomic::Ordering::Release);
                // A copy kept while the last round ran: once more (a fence
                // since then runs its own). Never after a stop: `reclaim`
                // returns at once then, and going round again would spin
                // this thread for good (session 24: a web server stopped
                // while its writes failed never finished its shutdown).
                if inner.dropped.len() == 0
                    || inner.fencing.epoch() != epoch
                    || inner.stopping.load(std::sync::atomic::Ordering::SeqCst)
                    || inner
                        .reclaiming
                        .swap(true, std::sync::atomic::Ordering::AcqRel)
                {
                    return;
                }
            }
        });
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
        if inner
            .released_unreached
            .load(std::sync::atomic::Ordering::Acquire)
        {
            // Let go because no director reaches this server: claimed back
            // only where their users can reach them (`unreached`).
            drop(inner);
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
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
            "some sessions this server dropped could not be claimed yet; retrying"
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
        "reclaimed the sessions a lapse or a failed write dropped"
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
/// opened), at most `recopy_rate` per second. Those without a copy of
/// this server's own go in batches ([`crate::claim_batch`]), [`BATCHES`]
/// at once; the others, and every session a batch leaves, alone,
/// [`CONCURRENCY`] at once. Each settled one leaves
/// [`Dropped`](crate::dropped::Dropped).
async fn claim_all(weak: &Weak<Inner>, ids: &[(SessionId, Option<LocalCopy>)]) -> Tally {
    let started = Instant::now();
    let Some(inner) = weak.upgrade() else {
        return Tally::default();
    };
    let rate = inner.config.recopy_rate.max(1);
    let batches = inner.stores.prepare_next();
    drop(inner);
    let pace = Duration::from_secs(1) / rate;
    let (batched, alone): (Vec<_>, Vec<_>) = ids
        .iter()
        .cloned()
        .partition(|(_, local)| batches && local.is_none());
    let mut tally = Tally::default();
    let chunks: Vec<Vec<(SessionId, Option<LocalCopy>)>> =
        batched.chunks(BATCH).map(<[_]>::to_vec).collect();
    let mut rounds = stream::iter(chunks.into_iter().enumerate())
        .map(|(j, chunk)| {
            let weak = weak.clone();
            async move {
                tokio::time::sleep_until(started + pace * (j * BATCH) as u32).await;
                claim_chunk(&weak, chunk).await
            }
        })
        .buffer_unordered(BATCHES);
    while let Some(round) = rounds.next().await {
        let Some(round) = round else { break };
        for (id, local, r) in round {
            tally.take(weak, id, local, r);
        }
    }
    drop(rounds);
    let offset = started + pace * batched.len() as u32;
    for (id, local, r) in claim_each(weak, &alone, offset, pace).await {
        tally.take(weak, id, local, r);
    }
    tally
}

/// How one claim of [`claim_all`] ended: claimed or hosted (`true`), no
/// live copy (`false`), or an error.
type ClaimResult = (SessionId, Option<LocalCopy>, Result<bool, SessionError>);

/// Claims `chunk` as one batch, then what the batch left alone, before
/// the next batch: the first of them (a live lease, proven gone) may
/// clear the way for the batches after it. `None` once the manager is
/// gone.
async fn claim_chunk(
    weak: &Weak<Inner>,
    chunk: Vec<(SessionId, Option<LocalCopy>)>,
) -> Option<Vec<ClaimResult>> {
    let m = SessionManager {
        inner: weak.upgrade()?,
    };
    let only: Vec<SessionId> = chunk.iter().map(|(id, _)| *id).collect();
    let outcomes = m.claim_batch(&only).await;
    drop(m);
    let mut done = Vec::with_capacity(chunk.len());
    let mut left = Vec::new();
    for ((id, local), outcome) in chunk.into_iter().zip(outcomes) {
        match outcome {
            Outcome::Hosted => done.push((id, local, Ok(true))),
            Outcome::Gone => done.push((id, local, Ok(false))),
            Outcome::Failed(e) => done.push((id, local, Err(e))),
            Outcome::Alone => left.push((id, local)),
        }
    }
    done.extend(claim_each(weak, &left, Instant::now(), Duration::ZERO).await);
    Some(done)
}

/// Claims each session of `ids` alone, [`CONCURRENCY`] at once, the
/// `n`-th not before `started + pace * n`.
async fn claim_each(
    weak: &Weak<Inner>,
    ids: &[(SessionId, Option<LocalCopy>)],
    started: Instant,
    pace: Duration,
) -> Vec<ClaimResult> {
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
    let mut out = Vec::with_capacity(ids.len());
    while let Some(r) = results.next().await {
        let Some(r) = r else { break };
        out.push(r);
    }
    out
}

impl Tally {
    /// Counts one claim's outcome; a settled one leaves
    /// [`Dropped`](crate::dropped::Dropped).
    fn take(
        &mut self,
        weak: &Weak<Inner>,
        id: SessionId,
        local: Option<LocalCopy>,
        r: Result<bool, SessionError>,
    ) {
        let settled = match r {
            Ok(true) => {
                self.claimed += 1;
                true
            }
            Ok(false) | Err(SessionError::Data(_)) => {
                self.gone += 1;
                true
            }
            Err(SessionError::Misdirected { .. } | SessionError::Moved { .. }) => {
                self.elsewhere += 1;
                true
            }
            Err(e) => {
                self.last_error = Some(e.to_string());
                self.failed.push((id, local));
                false
            }
        };
        if settled {
            if let Some(inner) = weak.upgrade() {
                inner.dropped.settle(&id);
            }
        }
    }
}

/// The ids the stores list as owned by `req.owner`, from every store that
/// answers, bounded.
async fn list(inner: &Inner, req: &AdoptRequest) -> HashSet<SessionId> {
    // The stores at once: the claims wait for the whole list.
    let each = inner.stores.clients.iter().enumerate().map(|(i, client)| async move {
        let mut ids = Vec::new();
        let mut cursor = 0;
        for _ in 0..MAX_PAGES {
            match client.owned(&req.owner, cursor).await {
                Ok((next, keys)) => {
                    ids.extend(
                        keys.iter()
                            .filter_map(|key| std::str::from_utf8(key).ok())
                            .filter_map(SessionId::from_hex)
                            .take(MAX_LISTED - ids.len()),
                    );
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
        ids
    });
    // Each session is on `R` stores, so the lists of `S − R + 1` show
    // every session whose copies all survive: once that many are in, a
    // store still listing gets a moment more, and one that stays silent
    // (paused, cut off) does not hold the adoption for its timeout. A
    // session it alone would have listed is claimed by its user's next
    // request.
    let enough = inner
        .stores
        .len()
        .saturating_sub(inner.config.replicas)
        .saturating_add(1);
    let mut pending: FuturesUnordered<_> = each.collect();
    let mut ids = HashSet::new();
    let mut done = 0;
    let mut deadline = None;
    loop {
        let next = match deadline {
            None => pending.next().await,
            Some(at) => match tokio::time::timeout_at(at, pending.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(dead = %req.owner, listed = done, silent = pending.len(), "adoption did not wait for the stores still listing");
                    break;
                }
            },
        };
        let Some(found) = next else { break };
        ids.extend(found.into_iter().take(MAX_LISTED - ids.len()));
        done += 1;
        if done >= enough {
            deadline.get_or_insert_with(|| Instant::now() + LIST_GRACE);
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

    /// Session 22: a lapse keeps the copy of a session a request holds at
    /// that moment too, once the request lets go of it (before, it was
    /// skipped: with the stores restarted empty, the live host's only
    /// copy was lost, and the session's next request got a new one).
    #[tokio::test]
    async fn a_lapse_keeps_the_copy_a_request_holds() {
        use crate::cache::{Entry, SessionState};
        use crate::state::tests::{config, manager};
        use sticky_proto::Stamp;
        let m = manager(config(3));
        let (free, held) = (
            SessionId::from_bytes([1; 16]),
            SessionId::from_bytes([2; 16]),
        );
        let mut entries = Vec::new();
        for (id, seq) in [(free, 4), (held, 7)] {
            let mut state = SessionState::new();
            state.stamp = Stamp::new(3, seq);
            state.stored_on = 0b11;
            let entry = Entry::new(Some(state), m.inner.clock.now_ms());
            m.inner.cache.insert(id, entry.clone());
            entries.push(entry);
        }
        let guard = entries[1].slot.clone().lock_owned().await;
        m.fence_lapsed(m.inner.fencing.epoch(), "a test lapse");
        assert_eq!(
            m.inner.dropped.copy_of(&free).map(|c| c.stamp),
            Some(Stamp::new(3, 4))
        );
        assert!(
            m.inner.dropped.copy_of(&held).is_none(),
            "not while the request holds it"
        );
        drop(guard);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while m.inner.dropped.copy_of(&held).is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the held copy is kept once released"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            m.inner.dropped.copy_of(&held).map(|c| c.stamp),
            Some(Stamp::new(3, 7))
        );
    }
}
