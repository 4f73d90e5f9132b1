//! Takeover (C7): a validly signed session id that is not in the local
//! cache is *claimed* from the stores before it is cached and served. The
//! claim is the four steps of `docs/safety.md` §2, each counted against a
//! quorum of answers, never against this server's view of which stores
//! are up:
//!
//! 0. **Read** the copies and what each store knows of their owner's lease.
//!    A live lease of another server stops the claim: it disturbs nothing
//!    and answers 421 naming the owner — unless a probe proves that
//!    owner's process gone, and its lease is then released at the stores.
//! 1. **Kill** the owner's lease at `P` stores: a store accepts only when the
//!    lease is not live there, and then refuses its renewals, so the owner
//!    can no longer believe it holds the session.
//! 2. **Prepare** generation `g + 1` at `P` stores: each answers its copy and
//!    promises to refuse older writes and other claims of that generation
//!    (each generation has one claimer; one refused claims above it). A restarted store's
//!    "no copy" does not count until its horizon has passed — unless every
//!    store answered, when the copies reported are all that survive.
//! 3. **Write** the newest copy among the answers as `(g + 1, 0)`, owned by
//!    this server's epoch, to `W = R` of the stores that promised.
//!
//! `P = max(S − R + 1, ⌊S/2⌋ + 1)` meets every acknowledged write (`W + P >
//! S`) and every other claim (`P + P > S`). A claim that loses a race starts
//! over; one that cannot reach a quorum answers 503.

use std::collections::HashSet;
use std::time::Duration;

use sticky_client::{ClientError, LeaseState, Prepared, PreparedNext, StoredSession};
use sticky_proto::Stamp;

use crate::cache::{SessionState, Stored, StoredRef};
use crate::dropped::LocalCopy;
use crate::error::SessionError;
use crate::fencing::parse_owner;
use crate::holders::Held;
use crate::id::SessionId;
use crate::lease::{claim_quorum, release_everywhere, Owner};
use crate::replicator::write_quorum;
use crate::state::SessionManager;
use crate::stores::{Released, Stores, Wait, GRACE};

/// Claim attempts before giving up (each starts over at step 0).
const ATTEMPTS: usize = 5;

/// Loads `id` from the stores and claims it for this server's epoch
/// `epoch`. `Ok(None)` when no store has a live copy (expired, destroyed or
/// never saved), as a quorum of stores says.
///
/// `moved_from` (`name@epoch`): the lease of the server the director moved
/// the request off because it found it down; the first attempt probes
/// that owner at once and, if the probe proves it gone, ends its lease in
/// its first round (a hint only: see [`claim_fast`]).
pub(crate) async fn load(
    m: &SessionManager,
    id: &SessionId,
    epoch: u64,
    local: Option<&LocalCopy>,
    moved_from: Option<&str>,
) -> Result<Option<SessionState>, SessionError> {
    let mut last_err = String::from("no answer");
    // A generation promised to another claimer: the next attempt claims
    // above it (each generation has one claimer).
    let mut above = 0;
    for attempt in 0..ATTEMPTS {
        if attempt > 0 {
            // Two claimers racing for one session: let one of them win.
            tokio::time::sleep(backoff(attempt)).await;
        }
        let claim = if m.inner.stores.prepare_next() {
            let hint = if attempt == 0 { moved_from } else { None };
            match claim_fast(m, id, epoch, local, hint).await? {
                Fast::Done(claim) => claim,
                Fast::Slow { above: a } => {
                    metrics::counter!("sticky_claims_total", "path" => "read-then-promise")
                        .increment(1);
                    claim_once(m, id, epoch, local, above.max(a)).await?
                }
            }
        } else {
            metrics::counter!("sticky_claims_total", "path" => "read-then-promise").increment(1);
            claim_once(m, id, epoch, local, above).await?
        };
        match claim {
            Claim::Done(state) => return Ok(state),
            Claim::Retry(why, promised) => {
                tracing::debug!(session = ?id, attempt, why = %why, "claim lost a race; starting over");
                metrics::counter!("sticky_claim_retries_total").increment(1);
                last_err = why;
                above = above.max(promised);
            }
        }
    }
    Err(SessionError::Unavailable(format!(
        "could not claim the session after {ATTEMPTS} attempts ({last_err})"
    )))
}

/// How one claim attempt ended.
enum Claim {
    /// Claimed (or found not to exist).
    Done(Option<SessionState>),
    /// Lost a race with another claimer: start over, above the generation
    /// promised to it (0: none seen).
    Retry(String, u64),
}

async fn claim_once(
    m: &SessionManager,
    id: &SessionId,
    epoch: u64,
    local: Option<&LocalCopy>,
    above: u64,
) -> Result<Claim, SessionError> {
    let inner = &m.inner;
    let key = id.key();
    let key = key.as_bytes();
    let total = inner.stores.len();
    let p = claim_quorum(total, inner.config.replicas);
    let me = m.owner_in(epoch);

    // Step 0: read.
    let targets = targets(m, p).await;
    let mut answered = 0;
    let mut newest: Option<StoredSession> = None;
    let mut live_owners: HashSet<String> = HashSet::new();
    let mut last_err = String::from("no live store");
    // `P` answers meet every acknowledged write (`W + P > S`): a slower
    // store's answer is not waited for. A live lease it alone would have
    // shown stops the claim at step 1 (it refuses the kill), or cannot
    // matter (`P` stores record the lease dead, so its owner's belief has
    // ended: `docs/safety.md` §2).
    inner
        .stores
        .fan_out_until(
            targets,
            |c| c.get_with_lease(key),
            |i, r| {
                match r {
                    Ok(found) => {
                        answered += 1;
                        if let Some((copy, lease)) = found {
                            if lease.is_live() && !copy.deleted {
                                live_owners.insert(copy.owner.clone());
                            }
                            keep_newest(&mut newest, copy);
                        }
                    }
                    Err(e) => last_err = format!("{}: {e}", inner.stores.names[i]),
                }
                quorum(answered, p)
            },
        )
        .await;
    if answered < p {
        return Err(no_quorum(id, "read", answered, p, total, &last_err));
    }
    if newest.as_ref().is_some_and(|c| c.deleted) {
        return Ok(Claim::Done(None));
    }
    let seen = newest
        .as_ref()
        .map_or(0, |c| c.stamp.generation)
        .max(local.map_or(0, |l| l.stamp.generation))
        .max(above);
    let owner = newest
        .as_ref()
        .map(|c| c.owner.clone())
        .filter(|o| !o.is_empty() && *o != me);

    // Step 1: the owner's lease ends, or we stop here. An owner this
    // server already proved gone and released cannot serve from that
    // lease again: its other sessions skip the probe and the kill.
    let gone = owner.as_ref().is_some_and(|o| inner.stores.known_gone(o));
    if gone {
        metrics::counter!("sticky_claims_of_gone_owners_total").increment(1);
    }
    let owner_to_end = owner.as_ref().filter(|_| !gone);
    // A lease seen live: probe its owner first, and prepare only once it
    // is proven gone (a live owner is answered with 421 and must not be
    // disturbed by promises).
    if let Some(owner) = owner_to_end.filter(|o| live_owners.contains(*o)) {
        release_if_gone(m, owner, p).await?;
    }

    // Step 2: prepare generation g + 1.
    let generation = seen
        .checked_add(1)
        .ok_or_else(|| SessionError::Data("generation overflow".into()))?;
    let horizon = inner.config.absolute_timeout;
    // The session's replicas (placement passes over stores found slow).
    let wanted = inner.stores.replicas(id, inner.config.replicas) & targets;
    let grace = inner.config.slow_store.unwrap_or(GRACE);
    let prepare = async {
        let mut prepare_err = String::new();
        let mut promised = 0u64;
        // Restarted stores that hold no copy: they promised, but their "no copy"
        // may be one they forgot.
        let mut forgetful = 0u64;
        let mut best: Option<StoredSession> = None;
        let mut lost: Option<Claim> = None;
        // Stores that answered at all.
        let mut heard = 0u64;
        // `P` promises are a quorum: no other claim of this generation can
        // hold `P` too (`P + P > S`), and they meet every acknowledged write.
        // Short of `P`, every store's answer is waited for: a restarted
        // store's promise counts when every store answered (below).
        inner
            .stores
            .fan_out_until(
                targets,
                |c| c.prepare(key, generation, &me, horizon),
                |i, r| {
                    heard |= 1 << i;
                    match r {
                        Ok(Prepared::Copy { session, .. }) => {
                            promised |= 1 << i;
                            keep_newest(&mut best, session);
                        }
                        Ok(Prepared::NoCopy) => promised |= 1 << i,
                        Ok(Prepared::Forgetful { uptime }) => {
                            forgetful |= 1 << i;
                            prepare_err = format!(
                                "{} restarted {} s ago and may have forgotten the session",
                                inner.stores.names[i],
                                uptime.as_secs()
                            );
                        }
                        Err(ClientError::Stale { stored }) => {
                            lost = Some(Claim::Retry(
                                format!("another claim reached {stored}"),
                                stored.generation,
                            ));
                            return Wait::Stop;
                        }
                        Err(e @ ClientError::Promised { generation }) => {
                            lost = Some(Claim::Retry(
                                format!("{}: {e}", inner.stores.names[i]),
                                generation,
                            ));
                            return Wait::Stop;
                        }
                        Err(e) => prepare_err = format!("{}: {e}", inner.stores.names[i]),
                    }
                    if (promised.count_ones() as usize) < p {
                        Wait::More
                    } else if promised & wanted == wanted {
                        Wait::Stop
                    } else {
                        // A quorum, but not yet the session's own replicas,
                        // where step 3 would rather write: a moment more
                        // for them (a replica still silent after it is
                        // passed over as slow, below).
                        Wait::Briefly(grace)
                    }
                },
            )
            .await;
        // Replicas silent through the grace are passed over as slow: the
        // claims and writes after this one do not wait for them again.
        if lost.is_none() && promised.count_ones() as usize >= p {
            if let Some(after) = inner.config.slow_store {
                for i in Stores::members(wanted & !heard) {
                    m.mark_slow(i, after);
                }
            }
        }
        (promised, forgetful, best, lost, prepare_err, heard)
    };
    // Step 1, the kill, of a lease seen not live anywhere, runs alongside
    // the prepare (one round trip fewer): the write of step 3 waits for
    // both, so it is acknowledged only after `P` stores record the lease
    // dead, which is all the argument needs. If a store shows the lease
    // live after all (it was renewed since step 0 read), the claim stops
    // with 421 and its promises only refuse writes below generation
    // `g + 1` of this one session.
    let kill_step = async {
        match owner_to_end.filter(|o| !live_owners.contains(*o)) {
            Some(owner) => kill(m, targets, owner, p).await,
            None => Ok(()),
        }
    };
    let (killed, (mut promised, forgetful, best, lost, prepare_err, heard)) =
        tokio::join!(kill_step, prepare);
    killed?;
    if !prepare_err.is_empty() {
        last_err = prepare_err;
    }
    if let Some(lost) = lost {
        return Ok(lost);
    }
    let count = promised.count_ones() as usize;
    // Every store answered: the copies reported are every copy any store
    // still keeps. What a restarted store forgot may still be in a live
    // web server's memory alone (its cache, before it copied the session
    // there again, or a copy it kept after a lapse or a failed write), and
    // then it is owed to the users (invariant 1: the host survived). So
    // the restarted stores' "no copy" counts only once every other web
    // server says it holds no copy (`crate::holders`, `docs/safety.md`
    // §3); this server's own kept copy is `local`.
    let everyone = (promised | forgetful) == inner.stores.all();
    if count < p && !(everyone && total >= p) {
        return Err(no_quorum(id, "prepare", count, p, total, &last_err));
    }
    if count < p {
        match m.no_peer_holds(id, local.map(|l| l.stamp)).await {
            Ok(()) => {}
            Err(Held::By(holder)) => {
                // The request belongs where the copy is: 421 naming it.
                metrics::counter!("sticky_claims_held_for_peers_total").increment(1);
                tracing::info!(session = ?id, holder = %holder, "takeover held back: stores that restarted empty may have forgotten the session, and another web server holds it");
                return Err(misdirected(&holder));
            }
            Err(Held::Unsure(why)) => {
                metrics::counter!("sticky_claims_held_for_peers_total").increment(1);
                tracing::warn!(session = ?id, why = %why, "takeover held back: stores that restarted empty may have forgotten the session, and another web server may hold it");
                return Err(SessionError::Unavailable(format!(
                    "{count} of the {p} stores a takeover needs can vouch for the session, the others restarted empty, and {why}; its host copies it back if it is alive"
                )));
            }
        }
        metrics::counter!("sticky_claims_with_forgetful_stores_total").increment(1);
        promised |= forgetful;
    }
    finish(
        m,
        id,
        local,
        &me,
        Promised {
            generation,
            stores: promised,
            heard,
            best,
            known: newest.as_ref().map(|c| c.stamp),
            ended: owner,
        },
        last_err,
    )
    .await
}

/// How a claim attempt by read-and-promise ended.
enum Fast {
    /// As a claim attempt ends.
    Done(Claim),
    /// The answers left the claim short of `P` promises of one generation
    /// (replicas that disagree, a restarted store that may have forgotten
    /// the session, a store that does not answer `SESS.PREPARE NEXT`): the
    /// four-step claim takes over, above this generation.
    Slow { above: u64 },
}

/// A claim attempt whose steps 0 and 2 are one round trip
/// (`docs/safety.md` §2, "Read and promise in one round trip"): each store
/// reads its copy and promises the next generation it can (one above its
/// copy's and any live promise's) in one command, `SESS.PREPARE NEXT`,
/// unless the copy's owner holds a live lease there. `P` promises of the
/// highest generation answered are the quorum of step 2; the copies
/// answered are step 0's read. A dead server's sessions are then claimed
/// in two round trips: read-and-promise, write.
///
/// With `moved_from`, a lease the director found down: if this server does
/// not already know it gone, it is probed before the first round (a
/// concurrent probe of it is shared); proven gone, the first round
/// carries its release, as the second round would have after finding the
/// lease live. Alive (or unknown), the claim goes on as without it, and a
/// live lease of that owner is then answered with 421 without probing it
/// again. Nothing is released without the probe's proof, so a forged or
/// stale hint costs a probe and changes nothing.
async fn claim_fast(
    m: &SessionManager,
    id: &SessionId,
    epoch: u64,
    local: Option<&LocalCopy>,
    moved_from: Option<&str>,
) -> Result<Fast, SessionError> {
    let inner = &m.inner;
    let key = id.key();
    let key = key.as_bytes();
    let total = inner.stores.len();
    let p = claim_quorum(total, inner.config.replicas);
    let me = m.owner_in(epoch);
    let horizon = inner.config.absolute_timeout;
    let grace = inner.config.slow_store.unwrap_or(GRACE);
    // At most two rounds: a live lease seen in the first is probed, and
    // the second, once its owner is proven gone, releases it at each store
    // in the same command as the read and promise.
    let mut release_with: Option<String> = None;
    // An owner the hint's probe found possibly alive: not probed again.
    let mut maybe_alive: Option<&str> = None;
    // `release_with` came from the hint.
    let mut hint_released = false;
    if let Some(hinted) = moved_from.filter(|h| parse_owner(h).is_some() && *h != me) {
        if !inner.stores.known_gone(hinted) {
            if proven_gone(m, hinted).await {
                metrics::counter!("sticky_claims_released_on_hint_total").increment(1);
                release_with = Some(hinted.to_owned());
                hint_released = true;
            } else {
                maybe_alive = Some(hinted);
            }
        }
    }
    // The session's replicas that stayed silent through a grace in this
    // claim: not waited for again (a paused replica would otherwise cost a
    // grace in each round, and a kill during a paused replica twice the
    // grace; `docs/reliability.md`, session 18).
    let mut silent = 0u64;
    loop {
        let targets = targets(m, p).await;
        let replicas = inner.stores.replicas(id, inner.config.replicas) & targets;
        let wanted = replicas & !silent;
        // The session's replicas first: with `P` of them live, they alone
        // can decide (any `P` answers meet every acknowledged write), and a
        // claim then costs the other stores nothing. A release goes to every
        // store, as a kill would.
        let replicas_first = release_with.is_none() && wanted.count_ones() as usize >= p;
        let mut round = Answers::new(total);
        let mut rule = Rule {
            me: &me,
            wanted,
            p,
            grace,
            names: &inner.stores.names,
        };
        if replicas_first {
            let ask = inner.stores.fan_out_until(
                wanted,
                |c| c.prepare_next(key, &me, horizon, None),
                |i, r| round.take(i, r, &rule),
            );
            // A replica silent through the grace (paused, or slow): the
            // other stores are asked too, and their answers count alike,
            // without a second grace for it.
            let _ = tokio::time::timeout(grace, ask).await;
            silent |= wanted & !round.heard;
            rule.wanted = wanted & !silent;
            let rest = targets & !wanted;
            if (round.answered.count_ones() as usize) < p && rest != 0 {
                inner
                    .stores
                    .fan_out_until(
                        rest,
                        |c| c.prepare_next(key, &me, horizon, None),
                        |i, r| round.take(i, r, &rule),
                    )
                    .await;
            }
        } else {
            inner
                .stores
                .fan_out_until(
                    targets,
                    |c| c.prepare_next(key, &me, horizon, release_with.as_deref()),
                    |i, r| round.take(i, r, &rule),
                )
                .await;
        }
        let Answers {
            heard,
            answered,
            promises,
            mut refused,
            mut newest,
            leases,
            mut last_err,
        } = round;
        let (generation, mut promised) = highest(&promises);
        if (answered.count_ones() as usize) >= p && newest.as_ref().is_some_and(|c| c.deleted) {
            // As step 0: a quorum's newest answer is a tombstone.
            return Ok(Fast::Done(Claim::Done(None)));
        }
        let owner = newest
            .as_ref()
            .map(|c| c.owner.clone())
            .filter(|o| !o.is_empty() && *o != me);
        let gone = owner.as_ref().is_some_and(|o| inner.stores.known_gone(o));
        let live_at = |o: &str| leases.iter().any(|(w, l)| w == o && l.is_live());
        let dead_at = |o: &str| {
            leases
                .iter()
                .filter(|(w, l)| w == o && *l == LeaseState::Dead)
                .count()
        };
        if gone && release_with.is_none() {
            metrics::counter!("sticky_claims_of_gone_owners_total").increment(1);
        }
        if let Some(o) = owner.as_ref().filter(|o| live_at(o)) {
            // Stores where the owner's lease is live promised nothing:
            // probe it (421 if it may be alive), release it if gone, and
            // ask again. Stores that did promise refuse its writes of this
            // one session below our generation until the claim window ends
            // (as when a lease is renewed between step 0 and step 1). An
            // owner already proven gone is not probed again: a store that
            // still shows its lease live missed the release (its command
            // was dropped once a quorum had answered).
            // One release round per claim, besides the hint's (whose
            // owner need not be the copy's).
            let released = release_with
                .as_deref()
                .is_some_and(|r| !hint_released || r == o.as_str());
            if released || maybe_alive == Some(o.as_str()) || (!gone && !proven_gone(m, o).await) {
                return Err(misdirected(o));
            }
            release_with = Some(o.clone());
            hint_released = false;
            continue;
        }
        let read = newest.as_ref().map(|c| c.stamp);
        if (promised.count_ones() as usize) < p && generation > 0 {
            // Stores that promised a lower generation (one without a copy
            // promises 1; a lagging replica one above its older copy):
            // ask them for this one, explicitly, as step 2 would.
            let lower = promises
                .iter()
                .filter(|&&(_, g)| g < generation)
                .fold(0u64, |at, &(i, _)| at | 1 << i);
            inner
                .stores
                .fan_out_until(
                    lower,
                    |c| c.prepare(key, generation, &me, horizon),
                    |i, r| {
                        match r {
                            Ok(Prepared::Copy { session, .. }) => {
                                promised |= 1 << i;
                                keep_newest(&mut newest, session);
                            }
                            Ok(Prepared::NoCopy) => promised |= 1 << i,
                            Ok(Prepared::Forgetful { .. }) => refused = true,
                            Err(e) => last_err = format!("{}: {e}", inner.stores.names[i]),
                        }
                        quorum(promised.count_ones() as usize, p)
                    },
                )
                .await;
        }
        let count = promised.count_ones() as usize;
        // A copy newer than the first answers showed (another claim got
        // in between): the four steps sort it out.
        let moved = newest.as_ref().map(|c| c.stamp) != read;
        // This server's own dropped copy at or above the generation the
        // stores chose (they lost the newer copies): the four steps claim
        // above it, as they do.
        let below_mine = local.is_some_and(|l| l.stamp.generation >= generation);
        if count < p
            || moved
            || below_mine
            || newest
                .as_ref()
                .is_some_and(|c| c.stamp.generation >= generation || c.deleted)
        {
            if !refused && (answered.count_ones() as usize) < p {
                // Too few stores answered at all: the four steps would
                // fare no better now.
                return Err(no_quorum(id, "prepare", count, p, total, &last_err));
            }
            let mine = local.map_or(0, |l| l.stamp.generation);
            return Ok(Fast::Slow {
                above: generation.max(mine),
            });
        }
        // Replicas silent through the grace are passed over as slow, as
        // in step 2.
        if let Some(after) = inner.config.slow_store {
            for i in Stores::members(replicas & !heard) {
                m.mark_slow(i, after);
            }
        }
        // Step 1: the owner's lease must be dead at `P` stores before the
        // write; those that answered it dead already record it (released
        // by this round's own command, or before).
        let dead = owner.as_deref().map_or(0, dead_at);
        match owner.as_ref().filter(|_| !gone) {
            Some(o) if release_with.as_deref() == Some(o.as_str()) => {
                if dead >= p {
                    // Proven gone and recorded dead at a quorum: its other
                    // sessions skip the probe (every store is being told
                    // too: `proven_gone`).
                    inner.stores.record_gone(o);
                } else {
                    release(m, o, p).await?;
                }
            }
            Some(o) if dead < p => kill(m, targets, o, p).await?,
            _ => {}
        }
        metrics::counter!("sticky_claims_total", "path" => "read-and-promise").increment(1);
        return finish(
            m,
            id,
            local,
            &me,
            Promised {
                generation,
                stores: promised,
                heard,
                best: newest,
                known: read,
                ended: owner,
            },
            last_err,
        )
        .await
        .map(Fast::Done);
    }
}

/// What the stores answered a claim's read-and-promise round.
pub(crate) struct Answers {
    /// Stores that answered at all.
    pub(crate) heard: u64,
    /// Stores that answered without an error.
    pub(crate) answered: u64,
    /// Stores that promised, with the generation.
    pub(crate) promises: Vec<(usize, u64)>,
    /// A store may have forgotten the session, or does not know the
    /// command.
    refused: bool,
    /// The newest copy answered.
    pub(crate) newest: Option<StoredSession>,
    /// What each store said of its copy's owner's lease (another
    /// server's): live (it promised nothing), dead, or absent.
    pub(crate) leases: Vec<(String, LeaseState)>,
    last_err: String,
}

/// What [`Answers::take`] decides by.
pub(crate) struct Rule<'a> {
    /// This server's lease, `name@epoch`.
    pub(crate) me: &'a str,
    /// The session's own replicas among the stores asked.
    pub(crate) wanted: u64,
    /// The claim quorum.
    pub(crate) p: usize,
    pub(crate) grace: Duration,
    pub(crate) names: &'a [String],
}

impl Answers {
    pub(crate) fn new(total: usize) -> Self {
        Self {
            heard: 0,
            answered: 0,
            promises: Vec::with_capacity(total),
            refused: false,
            newest: None,
            leases: Vec::with_capacity(total),
            last_err: String::from("no live store"),
        }
    }

    /// Takes store `i`'s answer and says whether to wait for more.
    pub(crate) fn take(
        &mut self,
        i: usize,
        r: Result<PreparedNext, ClientError>,
        rule: &Rule<'_>,
    ) -> Wait {
        self.heard |= 1 << i;
        match r {
            Ok(answer) => {
                self.answered |= 1 << i;
                if let Some((copy, lease)) = answer.copy {
                    if !copy.deleted && !copy.owner.is_empty() && copy.owner != rule.me {
                        self.leases.push((copy.owner.clone(), lease));
                    }
                    keep_newest(&mut self.newest, copy);
                }
                if answer.generation > 0 {
                    self.promises.push((i, answer.generation));
                }
            }
            Err(e) => {
                // A restarted store that may have forgotten the session,
                // or one that does not know the command (older than it):
                // the four steps handle both.
                self.refused |= matches!(e, ClientError::Forgetful { .. } | ClientError::Server(_));
                self.last_err = format!("{}: {e}", rule.names[i]);
            }
        }
        let (_, at) = highest(&self.promises);
        if at.count_ones() as usize >= rule.p {
            if at & rule.wanted == rule.wanted {
                Wait::Stop
            } else {
                // A quorum, but not yet the session's own replicas, where
                // the write would rather go (as in step 2).
                Wait::Briefly(rule.grace)
            }
        } else if self.answered.count_ones() as usize >= rule.p {
            if !self.leases.iter().any(|(_, l)| l.is_live()) {
                // `P` answers as in step 0, but not `P` promises of one
                // generation: a moment more for the others (a replica's
                // promise may make the quorum), then the top-up below.
                Wait::Briefly(rule.grace)
            } else {
                // A live lease: the probe comes next.
                Wait::Stop
            }
        } else {
            Wait::More
        }
    }
}

/// The highest generation among `promises` and the stores that promised
/// it (0 and none when empty).
pub(crate) fn highest(promises: &[(usize, u64)]) -> (u64, u64) {
    let top = promises.iter().map(|&(_, g)| g).max().unwrap_or(0);
    let at = promises
        .iter()
        .filter(|&&(_, g)| g == top && top > 0)
        .fold(0u64, |at, &(i, _)| at | 1 << i);
    (top, at)
}

/// What a claim's promises gathered: step 3's input.
struct Promised {
    /// The generation promised.
    generation: u64,
    /// The stores that promised it.
    stores: u64,
    /// The stores that answered the prepare at all.
    heard: u64,
    /// The newest copy among the answers.
    best: Option<StoredSession>,
    /// The newest stamp the claim saw before the promises.
    known: Option<Stamp>,
    /// The owner whose lease the claim ended (or found ended): a copy
    /// newer than `known` owned by anyone else restarts the claim.
    ended: Option<String>,
}

/// Step 3, once `P` stores promised: writes the newest copy (or this
/// server's own newer dropped copy) as `(g + 1, 0)` where the promises
/// are, and returns the session to cache.
async fn finish(
    m: &SessionManager,
    id: &SessionId,
    local: Option<&LocalCopy>,
    me: &str,
    promised: Promised,
    mut last_err: String,
) -> Result<Claim, SessionError> {
    let inner = &m.inner;
    let key = id.key();
    let key = key.as_bytes();
    let total = inner.stores.len();
    let Promised {
        generation,
        stores: promised,
        heard,
        mut best,
        known,
        ended: owner,
    } = promised;
    // This server's own dropped copy, when it is newer than every copy the
    // stores still hold (they lost the newer ones: restarted empty).
    let mine = local.filter(|l| best.as_ref().is_none_or(|b| l.stamp > b.stamp));
    if let Some(l) = mine {
        metrics::counter!("sticky_claims_from_own_copy_total").increment(1);
        best = Some(StoredSession {
            stamp: l.stamp,
            owner: me.to_owned(),
            ttl: None,
            payload: l.payload.clone(),
            deleted: false,
        });
    }
    let Some(copy) = best else {
        return Ok(Claim::Done(None));
    };
    if copy.deleted {
        return Ok(Claim::Done(None));
    }
    if mine.is_none()
        && Some(copy.stamp) > known
        && !copy.owner.is_empty()
        && copy.owner != me
        && Some(copy.owner.as_str()) != owner.as_deref()
    {
        // A newer copy than step 0 saw, owned by a lease we did not end.
        // (A newer copy of the owner whose lease step 1 ended is what
        // that owner wrote before it lost the lease: the promises now
        // refuse its writes, and it is the copy to carry on from.)
        return Ok(Claim::Retry(
            format!("a newer copy ({}) appeared", copy.stamp),
            0,
        ));
    }

    // Step 3: write (g + 1, 0) where the promises are.
    let stored = parse_stored(&copy.payload)?;
    let new = Stamp::new(generation, 0);
    let ttl = Some(inner.config.idle_timeout);
    let needed = write_quorum(total, inner.config.replicas);
    // The session's replicas first among the stores that promised; the
    // others that promised only if those are not enough.
    let preferred = inner.stores.replicas(id, inner.config.replicas) & promised;
    let mut stored_on = 0u64;
    for set in [preferred, promised & !preferred] {
        if stored_on.count_ones() as usize >= needed || set == 0 {
            continue;
        }
        for (i, r) in inner
            .stores
            .fan_out(set, |c| c.put(key, new, me, ttl, &copy.payload))
            .await
        {
            match r {
                Ok(()) => stored_on |= 1 << i,
                Err(ClientError::Stale { stored }) if stored > new => {
                    return Ok(Claim::Retry(
                        format!("another claim wrote {stored}"),
                        stored.generation,
                    ));
                }
                // Outbid since our prepare: a claim of a higher generation
                // is under way; ours cannot complete.
                Err(ClientError::Promised { generation: g }) if g > generation => {
                    return Ok(Claim::Retry(
                        format!(
                            "{}: a claim of generation {g} is under way",
                            inner.stores.names[i]
                        ),
                        g,
                    ));
                }
                Err(e) => last_err = format!("{}: {e}", inner.stores.names[i]),
            }
        }
    }
    let count = stored_on.count_ones() as usize;
    if count < needed {
        return Err(no_quorum(id, "write", count, needed, total, &last_err));
    }
    copy_behind(m, id, heard | stored_on, new, me, &copy.payload);
    claimed_state(m, &stored, new, stored_on).map(|s| Claim::Done(Some(s)))
}

/// The stored form of a claimed copy, read before it is written as this
/// server's (an unreadable one is not spread further).
pub(crate) fn parse_stored(payload: &[u8]) -> Result<Stored, SessionError> {
    serde_json::from_slice(payload)
        .map_err(|e| SessionError::Data(format!("stored session unreadable: {e}")))
}

/// After a claim wrote `new` to a quorum: the session's replicas that did
/// not answer the prepare (paused, or passed over as slow) and did not
/// take the write (`done` has both) still hold the old owner's copy: send
/// them the claimed one too, without waiting, so a quiet session does not
/// keep its old copy there until its next write. Like a re-copy, this
/// only adds copies of the version just acknowledged (`docs/safety.md`
/// §2).
pub(crate) fn copy_behind(
    m: &SessionManager,
    id: &SessionId,
    done: u64,
    new: Stamp,
    me: &str,
    payload: &bytes::Bytes,
) {
    let inner = &m.inner;
    let ttl = Some(inner.config.idle_timeout);
    let behind = inner.stores.placed(id, inner.config.replicas) & !done;
    for i in Stores::members(behind) {
        let client = inner.stores.clients[i].clone();
        let (key, me, payload) = (id.key_bytes(), me.to_owned(), payload.clone());
        tokio::spawn(async move {
            // Its outcome does not matter: a store that refuses it holds
            // something newer; one that stays silent is marked down by the
            // pinger, and the re-copy then fixes its copies.
            let _ = client.put(&key, new, &me, ttl, &payload).await;
        });
    }
}

/// The cache's state of a session claimed as `new`, written to the
/// stores of `stored_on`.
pub(crate) fn claimed_state(
    m: &SessionManager,
    stored: &Stored,
    new: Stamp,
    stored_on: u64,
) -> Result<SessionState, SessionError> {
    let inner = &m.inner;
    // The local payload in this server's own form, which `Session` reads
    // (`crate::data`) and `Session::data_json` slices: a copy written
    // otherwise (spacing, other fields) is written again. Always a copy of
    // exactly its length: the store's reply may be a slice of a larger
    // read buffer, which the cache would otherwise keep alive.
    let ours = serde_json::to_vec(&StoredRef {
        c: stored.c,
        d: &stored.d,
    })
    .map_err(|e| SessionError::Data(e.to_string()))?;
    let payload = bytes::Bytes::from(ours.into_boxed_slice());
    Ok(SessionState {
        created_ms: stored.c,
        stamp: new,
        payload,
        stored_on,
        store_deadline_ms: inner.clock.now_ms() + inner.config.idle_timeout.as_millis() as u64,
        // A taken-over session was used before: the normal lifetime.
        untouched: false,
    })
}

/// The stores a claim asks: those believed up, or, with fewer than `p` of
/// them, those up after [looking at them all again](crate::look::look_again) (the
/// belief may be stale: this process may just have been paused).
pub(crate) async fn targets(m: &SessionManager, p: usize) -> u64 {
    let stores = &m.inner.stores;
    if (stores.live().count_ones() as usize) < p {
        crate::look::look_again(m, |live| (live.count_ones() as usize) >= p).await;
    }
    stores.live()
}

/// Step 1: kills lease `owner` at the stores of `targets`; `P` must accept.
/// A store where it is live stops the claim (421, or 503 when the owner
/// cannot be named).
pub(crate) async fn kill(
    m: &SessionManager,
    targets: u64,
    owner: &str,
    p: usize,
) -> Result<(), SessionError> {
    let inner = &m.inner;
    let mut killed = 0;
    let mut live = false;
    let mut last_err = String::from("no live store");
    // `P` stores that record the lease dead end its owner's belief
    // (`docs/safety.md` §2); a live lease at a store seen first stops the
    // claim.
    inner
        .stores
        .fan_out_until(
            targets,
            |c| c.kill(owner, false),
            |i, r| match r {
                Ok(()) => {
                    killed += 1;
                    quorum(killed, p)
                }
                Err(ClientError::Live { .. }) => {
                    live = true;
                    Wait::Stop
                }
                Err(e) => {
                    last_err = format!("{}: {e}", inner.stores.names[i]);
                    Wait::More
                }
            },
        )
        .await;
    if live {
        if release_if_gone(m, owner, p).await? {
            return Ok(());
        }
        return Err(misdirected(owner));
    }
    if killed < p {
        metrics::counter!("sticky_takeover_no_quorum_total").increment(1);
        return Err(SessionError::Unavailable(format!(
            "{killed} of {} stores ended the owner's lease; a takeover needs {p} ({last_err})",
            inner.stores.len()
        )));
    }
    Ok(())
}

/// A live lease of `owner` was seen: if a probe proves its process gone,
/// releases the lease at every store (`P` must record it) and returns
/// true; else answers 421 naming the owner.
async fn release_if_gone(m: &SessionManager, owner: &str, p: usize) -> Result<bool, SessionError> {
    if !proven_gone(m, owner).await {
        return Err(misdirected(owner));
    }
    release(m, owner, p).await?;
    Ok(true)
}

/// Before an adoption's claims of dead lease `owner`'s sessions: if a
/// probe proves its process gone, records the lease dead at `P` stores
/// once, as the first of the one-at-a-time claims would, so that the
/// batches ([`crate::claim_batch`]) find it dead. Whether it is known
/// gone now.
pub(crate) async fn end_if_gone(m: &SessionManager, owner: &str) -> bool {
    let inner = &m.inner;
    if inner.stores.known_gone(owner) {
        return true;
    }
    let p = claim_quorum(inner.stores.len(), inner.config.replicas);
    proven_gone(m, owner).await && release(m, owner, p).await.is_ok()
}

/// Whether a probe proves `owner`'s process gone. Claims that ask while a
/// probe of `owner` runs share its outcome: a dead server's sessions are
/// claimed in a burst, and the outcome is about the process.
async fn proven_gone(m: &SessionManager, owner: &str) -> bool {
    let outcome = m
        .inner
        .stores
        .releasing(&format!("probe {owner}"), || async {
            if m.probe_owner(owner).await == Owner::Gone {
                // Every store is told at once, in the background, beside
                // the claims' next round (which carries the release to the
                // stores it asks): a round ends at a quorum, so its command
                // to the slowest store may never be sent, and that store
                // would show the lease live to the owner's other sessions.
                let weak = std::sync::Arc::downgrade(&m.inner);
                tokio::spawn(release_everywhere(weak, owner.to_owned()));
                Released::Yes
            } else {
                Released::MaybeAlive
            }
        })
        .await;
    outcome == Released::Yes
}

/// Records lease `owner`, proven gone, dead at every store; `P` must
/// record it. Claims that ask while one release of `owner` runs share it.
async fn release(m: &SessionManager, owner: &str, p: usize) -> Result<(), SessionError> {
    let inner = &m.inner;
    let outcome = inner
        .stores
        .releasing(&format!("release {owner}"), || async {
            let mut released = 0;
            inner
                .stores
                .fan_out_until(
                    inner.stores.all(),
                    |c| c.kill(owner, true),
                    |_, r| {
                        released += usize::from(r.is_ok());
                        quorum(released, p)
                    },
                )
                .await;
            if released < p {
                return Released::Short(released);
            }
            inner.stores.record_gone(owner);
            Released::Yes
        })
        .await;
    match outcome {
        Released::Short(released) => Err(SessionError::Unavailable(format!(
            "the session's host is gone but only {released} stores recorded it; a takeover needs {p}"
        ))),
        _ => Ok(()),
    }
}

/// Keeps `copy` in `newest` if it is newer than what is there.
fn keep_newest(newest: &mut Option<StoredSession>, copy: StoredSession) {
    if newest.as_ref().is_none_or(|b| copy.stamp > b.stamp) {
        *newest = Some(copy);
    }
}

/// Stop waiting for more stores once `count` reached the quorum `p`.
fn quorum(count: usize, p: usize) -> Wait {
    if count >= p {
        Wait::Stop
    } else {
        Wait::More
    }
}

/// The 421 for a session whose owner holds a live lease.
fn misdirected(owner: &str) -> SessionError {
    metrics::counter!("sticky_misdirected_total").increment(1);
    match parse_owner(owner) {
        Some((name, _)) => SessionError::Misdirected {
            owner: name.to_owned(),
        },
        None => SessionError::Unavailable(format!(
            "the session is hosted by {owner:?}, which holds its lease"
        )),
    }
}

fn no_quorum(
    id: &SessionId,
    step: &str,
    answered: usize,
    needed: usize,
    total: usize,
    last_err: &str,
) -> SessionError {
    metrics::counter!("sticky_takeover_no_quorum_total").increment(1);
    tracing::warn!(
        session = ?id,
        step,
        answered,
        needed,
        stores = total,
        "takeover refused: too few stores answered"
    );
    SessionError::Unavailable(format!(
        "{answered} of {total} stores answered the takeover's {step}; it needs {needed} ({last_err})"
    ))
}

/// A short random pause before claim attempt `attempt`.
fn backoff(attempt: usize) -> Duration {
    let mut b = [0u8; 2];
    let jitter = if getrandom::fill(&mut b).is_ok() {
        u64::from(u16::from_le_bytes(b)) % 20
    } else {
        10
    };
    Duration::from_millis(10 * attempt as u64 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sticky_client::LeaseState;

    #[test]
    fn backoff_grows_and_stays_short() {
        for attempt in 1..ATTEMPTS {
            let b = backoff(attempt);
            assert!(b >= Duration::from_millis(10 * attempt as u64));
            assert!(b < Duration::from_millis(10 * attempt as u64 + 20));
        }
    }

    #[test]
    fn lease_states_that_stop_a_claim_are_only_live_ones() {
        assert!(LeaseState::Live(Duration::from_millis(1)).is_live());
        assert!(!LeaseState::Absent.is_live() && !LeaseState::Dead.is_live());
    }
}
