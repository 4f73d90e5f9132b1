//! Adoption's claims in batches ([`crate::adopt`]): the sessions a dead
//! server left are claimed many at a time. Each store gets one pipeline
//! with the batch's read-and-promise (`SESS.PREPARE key NEXT`) of the
//! sessions it is a replica of, and one with their writes (`SESS.PUT`),
//! instead of a few messages per session; the dead owner's lease is ended
//! once per batch, not once per session. A burst of takeovers after a kill
//! then costs the claiming server and the stores a few messages per store
//! (issue 19 item 5).
//!
//! Each session of a batch follows the rules of a claim by
//! read-and-promise ([`crate::takeover`], `docs/safety.md` §2): the same
//! answers, counted the same way; the owner's lease recorded dead at `P`
//! stores before the write; `W` acknowledged writes before the session
//! counts as claimed. A batch handles only the plain case — the session's
//! replicas all answer within the grace, at least `P` of them promise one
//! generation above the newest copy, no answer shows the owner's lease
//! live, and the write is acknowledged — and hands every other session to
//! the one-at-a-time claim, which handles the rest (probes and releases,
//! lagging replicas, restarted stores, races, this server's own dropped
//! copy). For each session a batch sends the commands the one-at-a-time
//! claim sends in its plain case, in the same order, so it adds no case to
//! the safety argument.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures_util::stream::{FuturesUnordered, StreamExt};
use sticky_client::{ClientError, LeaseState, Put, StoredSession};
use sticky_proto::Stamp;
use tokio::sync::OwnedMutexGuard;
use tokio::time::Instant;

use crate::cache::{Entry, SessionState, Slot, Stored};
use crate::error::SessionError;
use crate::id::SessionId;
use crate::lease::claim_quorum;
use crate::open::not_serving;
use crate::replicator::write_quorum;
use crate::state::SessionManager;
use crate::stores::{Stores, GRACE};
use crate::takeover::{self, claimed_state, copy_behind, highest, parse_stored, Answers, Rule};

/// How one session of a batch came out.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Claimed now (its first request says it came from the stores), or
    /// found hosted here already.
    Hosted,
    /// No live copy at a quorum of its replicas (destroyed or expired).
    Gone,
    /// Claimed, but this server's lease belief lapsed meanwhile.
    Failed(SessionError),
    /// Not the plain case, or a request holds its entry: claim it alone.
    Alone,
}

impl SessionManager {
    /// Claims the sessions `ids` as a batch and caches them: one outcome
    /// per id, in order. None of them may have a copy this server dropped
    /// in a lapse (those are claimed alone, with it).
    pub(crate) async fn claim_batch(&self, ids: &[SessionId]) -> Vec<Outcome> {
        let inner = &self.inner;
        let mut out: Vec<Outcome> = ids.iter().map(|_| Outcome::Alone).collect();
        if !inner.stores.prepare_next() {
            return out;
        }
        let Ok(epoch) = self.serving_epoch().await else {
            return out; // each claim alone says why
        };
        // Every entry's lock is taken without waiting: an entry a request
        // holds is that request's to claim, and no lock of the batch is
        // held while waiting for another.
        let mut held: Vec<(usize, Arc<Entry>, OwnedMutexGuard<Slot>)> = Vec::new();
        for (k, id) in ids.iter().enumerate() {
            if inner.dropped.copy_of(id).is_some() {
                continue;
            }
            let (entry, _) = inner.cache.get_or_insert(*id);
            let Ok(guard) = entry.slot.clone().try_lock_owned() else {
                continue;
            };
            if guard.is_some() {
                out[k] = Outcome::Hosted;
                continue;
            }
            held.push((k, entry, guard));
        }
        if held.is_empty() {
            return out;
        }
        let batch: Vec<SessionId> = held.iter().map(|(k, ..)| ids[*k]).collect();
        for (_, entry, _) in &held {
            entry.claiming.store(true, Ordering::Release);
        }
        let started = Instant::now();
        let claimed =
            tokio::time::timeout(inner.config.claim_timeout, claim_many(self, &batch, epoch))
                .await
                .unwrap_or_else(|_| {
                    metrics::counter!("sticky_claim_timeouts_total").increment(1);
                    batch.iter().map(|_| Claimed::Alone).collect()
                });
        for ((k, entry, mut guard), claimed) in held.into_iter().zip(claimed) {
            entry.claiming.store(false, Ordering::Release);
            let id = &ids[k];
            out[k] = match claimed {
                Claimed::State(state) if inner.fencing.holds(epoch, inner.clock.now_ms()) => {
                    self.install(id, &entry, &mut guard, state, started);
                    entry.adopted.store(true, Ordering::Release);
                    Outcome::Hosted
                }
                Claimed::State(_) => {
                    drop(guard);
                    inner.cache.remove_if(id, &entry);
                    Outcome::Failed(not_serving())
                }
                Claimed::Gone => {
                    self.not_found(id, &entry, guard);
                    Outcome::Gone
                }
                Claimed::Alone => {
                    drop(guard);
                    inner.cache.remove_if(id, &entry);
                    Outcome::Alone
                }
            };
        }
        out
    }
}

/// How the batch's claim of one session ended.
enum Claimed {
    State(SessionState),
    Gone,
    Alone,
}

/// A session whose replicas promised, waiting for its write.
struct Ready {
    /// Its index in the batch.
    k: usize,
    generation: u64,
    promised: u64,
    heard: u64,
    copy: StoredSession,
    stored: Stored,
    /// The owner whose lease must be ended first (not yet dead at `P`
    /// stores, not known gone).
    to_end: Option<String>,
}

/// The batch's claim of each of `ids` for epoch `epoch`, in order.
async fn claim_many(m: &SessionManager, ids: &[SessionId], epoch: u64) -> Vec<Claimed> {
    let inner = &m.inner;
    let n = ids.len();
    let mut out: Vec<Claimed> = ids.iter().map(|_| Claimed::Alone).collect();
    let total = inner.stores.len();
    let r = inner.config.replicas;
    let p = claim_quorum(total, r);
    let needed = write_quorum(total, r);
    let me = m.owner_in(epoch);
    let horizon = inner.config.absolute_timeout;
    let grace = inner.config.slow_store.unwrap_or(GRACE);
    let targets = takeover::targets(m, p).await;
    let keys: Vec<[u8; 32]> = ids.iter().map(SessionId::key_bytes).collect();
    // The replicas each claim asks, as the one-at-a-time claim asks them
    // first; a session with fewer than `P` of them live is claimed alone.
    let wanted: Vec<u64> = ids
        .iter()
        .map(|id| inner.stores.replicas(id, r) & targets)
        .map(|w| if w.count_ones() as usize >= p { w } else { 0 })
        .collect();
    let asked = wanted.iter().fold(0, |all, w| all | w);

    // Steps 0 and 2 in one round trip: each store reads and promises the
    // sessions it is a replica of, in one pipeline.
    let mut rounds: Vec<Answers> = (0..n).map(|_| Answers::new(total)).collect();
    // The batch waits for whole pipelines, not for `take`'s verdicts: the
    // rule only names the stores and this server.
    let rule = Rule {
        me: &me,
        wanted: 0,
        p,
        grace,
        names: &inner.stores.names,
    };
    {
        let (keys, me, wanted) = (&keys, &me, &wanted);
        let mut sends: FuturesUnordered<_> = Stores::members(asked)
            .map(|i| async move {
                let which: Vec<usize> = (0..n).filter(|&k| wanted[k] & (1 << i) != 0).collect();
                let batch: Vec<&[u8]> = which.iter().map(|&k| &keys[k][..]).collect();
                let outcomes = inner.stores.clients[i]
                    .prepare_next_many(&batch, me, horizon)
                    .await;
                (i, which, outcomes)
            })
            .collect();
        // As the one-at-a-time claim: once a store answered, the others
        // get the grace (a silent replica's sessions are then claimed
        // alone, which passes it over as slow).
        let mut deadline: Option<Instant> = None;
        loop {
            let next = match deadline {
                None => sends.next().await,
                Some(at) => match tokio::time::timeout_at(at, sends.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                },
            };
            let Some((i, which, outcomes)) = next else {
                break;
            };
            for (k, answer) in which.into_iter().zip(outcomes) {
                inner.stores.observe(i, &answer);
                let _ = rounds[k].take(i, answer, &rule);
            }
            deadline.get_or_insert_with(|| Instant::now() + grace);
        }
    }

    let mut ready: Vec<Ready> = Vec::new();
    for (k, round) in rounds.into_iter().enumerate() {
        if wanted[k] == 0 || round.answered != wanted[k] {
            continue; // a replica silent or refusing: alone
        }
        let (generation, promised) = highest(&round.promises);
        let newest = round.newest;
        if newest.as_ref().is_some_and(|c| c.deleted) {
            out[k] = Claimed::Gone; // a quorum's newest answer is a tombstone
            continue;
        }
        let owner = newest
            .as_ref()
            .map(|c| c.owner.clone())
            .filter(|o| !o.is_empty() && *o != me);
        if let Some(o) = &owner {
            if round.leases.iter().any(|(w, l)| w == o && l.is_live()) {
                continue; // the probe, then a release: alone
            }
        }
        if (promised.count_ones() as usize) < p {
            continue; // replicas that promised lower generations: alone
        }
        let Some(copy) = newest else {
            out[k] = Claimed::Gone; // P promises, and no copy among them
            continue;
        };
        if copy.stamp.generation >= generation {
            continue;
        }
        let Ok(stored) = parse_stored(&copy.payload) else {
            continue; // alone, which reports it
        };
        let gone = owner.as_ref().is_some_and(|o| inner.stores.known_gone(o));
        if gone {
            metrics::counter!("sticky_claims_of_gone_owners_total").increment(1);
        }
        let dead = owner.as_deref().map_or(0, |o| {
            round
                .leases
                .iter()
                .filter(|(w, l)| w == o && *l == LeaseState::Dead)
                .count()
        });
        ready.push(Ready {
            k,
            generation,
            promised,
            heard: round.heard,
            copy,
            stored,
            to_end: owner.filter(|_| !gone && dead < p),
        });
    }

    // Step 1: each owner's lease ended at `P` stores, once for the batch.
    let owners: Vec<String> = {
        let mut o: Vec<String> = ready.iter().filter_map(|r| r.to_end.clone()).collect();
        o.sort_unstable();
        o.dedup();
        o
    };
    let ended: HashMap<&str, bool> = futures_util::future::join_all(
        owners
            .iter()
            .map(|o| async { (o.as_str(), takeover::kill(m, targets, o, p).await.is_ok()) }),
    )
    .await
    .into_iter()
    .collect();
    ready.retain(|r| {
        r.to_end
            .as_deref()
            .is_none_or(|o| ended.get(o).copied().unwrap_or(false))
    });

    // Step 3: the newest copy, as generation `g + 1`, to the replicas that
    // promised, in one pipeline per store.
    let ttl = Some(inner.config.idle_timeout);
    // (Fewer than `W` of its replicas promised: alone, which writes to the
    // other stores that promised.)
    let mut preferred: Vec<u64> = Vec::with_capacity(ready.len());
    ready.retain(|x| {
        let set = inner.stores.replicas(&ids[x.k], r) & x.promised;
        let enough = set.count_ones() as usize >= needed;
        if enough {
            preferred.push(set);
        }
        enough
    });
    let mut stored_on = vec![0u64; ready.len()];
    let mut lost = vec![false; ready.len()];
    let writes = preferred.iter().fold(0, |all, set| all | set);
    let sends = Stores::members(writes).map(|i| {
        let (ready, preferred, keys, me) = (&ready, &preferred, &keys, &me);
        async move {
            let (which, puts): (Vec<usize>, Vec<Put<'_>>) = ready
                .iter()
                .enumerate()
                .filter(|(j, _)| preferred[*j] & (1 << i) != 0)
                .map(|(j, r)| {
                    let put = Put {
                        key: &keys[r.k],
                        stamp: Stamp::new(r.generation, 0),
                        owner: me,
                        ttl,
                        payload: &r.copy.payload,
                    };
                    (j, put)
                })
                .unzip();
            let outcomes = inner.stores.clients[i].put_many(&puts).await;
            (i, which, outcomes)
        }
    });
    for (i, which, outcomes) in futures_util::future::join_all(sends).await {
        for (j, written) in which.into_iter().zip(outcomes) {
            inner.stores.observe(i, &written);
            let new = Stamp::new(ready[j].generation, 0);
            match written {
                Ok(()) => stored_on[j] |= 1 << i,
                Err(ClientError::Stale { stored }) if stored > new => lost[j] = true,
                Err(ClientError::Promised { generation }) if generation > new.generation => {
                    lost[j] = true;
                }
                Err(_) => {}
            }
        }
    }
    for (j, r) in ready.iter().enumerate() {
        if lost[j] || (stored_on[j].count_ones() as usize) < needed {
            continue; // lost a race, or too few writes: alone
        }
        let new = Stamp::new(r.generation, 0);
        copy_behind(
            m,
            &ids[r.k],
            r.heard | stored_on[j],
            new,
            &me,
            &r.copy.payload,
        );
        if let Ok(state) = claimed_state(m, &r.stored, new, stored_on[j]) {
            metrics::counter!("sticky_claims_total", "path" => "batch").increment(1);
            out[r.k] = Claimed::State(state);
        }
    }
    out
}
