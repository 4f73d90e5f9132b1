//! This server's lease at the stores (`docs/safety.md` §2): the quorum
//! sizes, the renewal task that keeps the [belief](crate::fencing) alive,
//! the fence it triggers when the belief lapses or a store reports the
//! lease dead, the release of an old epoch's lease after a fence, and the
//! probe that proves another server's epoch dead.
//!
//! Renewals cost one small command per store every third of the lease,
//! never one per request: reads stay free of network I/O (invariant 5).

use std::sync::{Arc, Weak};
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use http::{Method, StatusCode};
use sticky_client::ClientError;
use sticky_proto::control::{self, HealthReport, RequestError, PEER_PROBE_PATH};
use tokio::sync::Notify;

use crate::fencing::{owner_name, parse_owner, Extend};
use crate::state::{Inner, SessionManager};

/// Longest wait for a peer's health answer when proving its death.
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
/// Largest health answer read from a peer.
const MAX_PROBE_ANSWER: usize = 64 << 10;

/// `P`, the answers a claim's phases need: `max(S − R + 1, ⌊S/2⌋ + 1)`,
/// so that a claim meets every write of `R` copies and every other claim.
pub(crate) fn claim_quorum(stores: usize, replicas: usize) -> usize {
    let s = stores.max(1);
    let r = replicas.clamp(1, s);
    (s - r + 1).max(s / 2 + 1)
}

/// `Lq`, the acknowledgements a renewal needs: `S − P + 1`, so that every
/// claim's kills meet every renewal a belief rests on.
pub(crate) fn lease_quorum(stores: usize, replicas: usize) -> usize {
    stores.max(1) - claim_quorum(stores, replicas) + 1
}

/// What a probe found out about another server's epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owner {
    /// The process of that epoch is gone: nothing listens at its address,
    /// or the server there reports another epoch (it fenced or restarted,
    /// dropping that epoch's cache).
    Gone,
    /// Alive, or not known to be gone (no answer, no address).
    MaybeAlive,
}

impl SessionManager {
    /// This server's owner name in `epoch`.
    pub(crate) fn owner_in(&self, epoch: u64) -> String {
        owner_name(&self.inner.config.server_name, epoch)
    }

    /// This server's owner name now (`name@epoch`), as stores record it on
    /// the copies it writes.
    pub(crate) fn owner(&self) -> String {
        self.owner_in(self.inner.fencing.epoch())
    }

    /// One renewal of the current epoch's lease at every store. At the
    /// `Lq`-th acknowledgement the belief is extended; a store that reports
    /// the lease dead fences this server (someone proved it gone, or its
    /// lease lapsed and was killed: either way its cache may be stale).
    pub(crate) async fn renew_lease(&self) {
        let inner = &self.inner;
        if self.stopping() {
            return;
        }
        let epoch = inner.fencing.epoch();
        let owner = self.owner_in(epoch);
        let lease = inner.config.lease;
        let belief = inner.config.lease_belief();
        let needed = lease_quorum(inner.stores.len(), inner.config.replicas);
        let sent = inner.clock.now_ms();
        let mut calls: FuturesUnordered<_> = inner
            .stores
            .clients
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let owner = owner.as_str();
                async move { (i, c.lease(owner, lease).await) }
            })
            .collect();
        let mut acked = 0;
        while let Some((i, r)) = calls.next().await {
            match r {
                Ok(()) => {
                    inner.stores.mark_up(i);
                    acked += 1;
                    if acked == needed {
                        let now = inner.clock.now_ms();
                        if inner.fencing.extend(epoch, sent, now, belief) == Extend::Lapsed {
                            self.fence_lapsed(
                                epoch,
                                "lease lapsed: its renewal was acknowledged too late",
                            );
                            return;
                        }
                    }
                }
                Err(ClientError::Dead) => {
                    // A claimer ended the lease at a store where it had run
                    // out (this server was cut from it): that store does not
                    // count until its record expires. Safety does not need a
                    // fence here (the belief rests on the other stores), and
                    // one would drop the cache for nothing.
                    tracing::info!(store = %inner.stores.names[i], epoch, "a store refuses this server's lease (ended there); not counted");
                }
                Err(ClientError::Recovering { .. }) => {}
                Err(e) => {
                    tracing::debug!(store = %inner.stores.names[i], error = %e, "lease renewal failed");
                    inner.stores.observe(i, &Err::<(), _>(e));
                }
            }
        }
        if acked < needed {
            metrics::counter!("sticky_lease_renewals_short_total").increment(1);
            tracing::warn!(
                acked,
                needed,
                stores = inner.stores.len(),
                "lease renewal reached too few stores; serving stops when the lease runs out"
            );
        }
    }

    /// Stops serving sessions for good, before a graceful shutdown closes
    /// the listener: every later request for a session answers 503 with
    /// the `sticky-stopping` header ([`SessionError::Stopping`](crate::SessionError::Stopping);
    /// the director moves the client at once), the health report says
    /// `stopping`, the cache is dropped, and the lease is released at the
    /// stores, so other servers claim the sessions at once instead of after
    /// the lease time. The release is awaited at most one store timeout in
    /// all: a store that does not answer (paused, cut off) must not hold
    /// the exit — the lease there runs out on its own, and a claimer's
    /// probe of this server proves it gone meanwhile (its epoch changed).
    /// Call it *before* the listener closes: a claimer that finds the port
    /// closed takes that as proof that this process serves nothing
    /// (`docs/safety.md` §2).
    pub async fn stop(&self) {
        let inner = &self.inner;
        inner
            .stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        let epoch = inner.fencing.epoch();
        if let Some((old, new)) = inner
            .fencing
            .fence(&inner.cache, "shutting down", Some(epoch))
        {
            let weak = Arc::downgrade(&self.inner);
            // The new epoch may have been renewed meanwhile: end it too.
            let both = futures_util::future::join(
                release_everywhere(weak.clone(), self.owner_in(old)),
                release_everywhere(weak, self.owner_in(new)),
            );
            let limit = inner.config.store_timeout;
            if tokio::time::timeout(limit, both).await.is_err() {
                tracing::warn!(
                    timeout_ms = u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
                    "some stores did not confirm the lease's release in time; stopping anyway (the lease runs out there on its own)"
                );
            }
        }
    }

    /// Whether [`SessionManager::stop`] was called.
    pub(crate) fn stopping(&self) -> bool {
        self.inner
            .stopping
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Fences if the current belief has lapsed. One clock read.
    pub(crate) fn check_lease(&self) {
        let inner = &self.inner;
        if inner.fencing.lapsed(inner.clock.now_ms()) {
            self.fence_lapsed(
                inner.fencing.epoch(),
                "lease lapsed: a quorum of stores may no longer hold it",
            );
        }
    }

    /// Fences epoch `epoch` unless it was already left, then releases its
    /// lease at every store in the background: its cache is gone, so its
    /// sessions may be claimed at once. Returns the new epoch.
    pub(crate) fn fence_epoch(&self, epoch: u64, why: &str) -> Option<u64> {
        let inner = &self.inner;
        let (old, new) = inner.fencing.fence(&inner.cache, why, Some(epoch))?;
        let weak = Arc::downgrade(&self.inner);
        let owner = self.owner_in(old);
        tokio::spawn(release_everywhere(weak, owner));
        Some(new)
    }

    /// Whether the process of another server's epoch `owner` (`name@epoch`)
    /// is provably gone: asks that server's health endpoint (admin token).
    /// A refused connection or another epoch proves it; a timeout or any
    /// other answer proves nothing (a cut link looks the same).
    pub(crate) async fn probe_owner(&self, owner: &str) -> Owner {
        let inner = &self.inner;
        let Some((name, epoch)) = parse_owner(owner) else {
            return Owner::MaybeAlive;
        };
        if name == inner.config.server_name {
            // Our own: an epoch we left is gone with its cache.
            return if epoch == inner.fencing.epoch() {
                Owner::MaybeAlive
            } else {
                Owner::Gone
            };
        }
        let Some(peer) = inner.config.peers.iter().find(|p| p.name == name) else {
            return Owner::MaybeAlive;
        };
        let Ok(auth) = control::bearer(&inner.admin_token) else {
            return Owner::MaybeAlive;
        };
        let answer = control::request(
            peer.addr,
            Method::GET,
            PEER_PROBE_PATH,
            Some(&auth),
            PROBE_TIMEOUT,
            MAX_PROBE_ANSWER,
        )
        .await;
        let gone = match answer {
            Err(RequestError::Connect(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
            Ok(resp) if resp.status() == StatusCode::OK => {
                serde_json::from_slice::<HealthReport>(resp.body())
                    .is_ok_and(|r| r.name == name && r.epoch != epoch)
            }
            _ => false,
        };
        if gone {
            tracing::info!(server = name, epoch, "proved a server's epoch gone");
            metrics::counter!("sticky_owner_gone_total").increment(1);
            Owner::Gone
        } else {
            Owner::MaybeAlive
        }
    }
}

/// Records the lease of `owner` dead at every store (best effort): the
/// epoch it names has dropped its cache, or its process was proven gone,
/// so claimers need not wait for the lease to run out.
pub(crate) async fn release_everywhere(weak: Weak<Inner>, owner: String) {
    let Some(inner) = weak.upgrade() else { return };
    let kills = inner
        .stores
        .fan_out(inner.stores.all(), |c| c.kill(&owner, true))
        .await;
    let released = kills.filter(|(_, r)| r.is_ok()).count();
    tracing::info!(owner = %owner, released, "released a lease that no process holds any more");
}

/// Renews the lease every third of its time, and at once after a fence,
/// until the manager is dropped. Each round runs as its own task, so a
/// slow store does not delay the next.
pub(crate) async fn lease_loop(weak: Weak<Inner>, renew_now: Arc<Notify>, lease: Duration) {
    let period = (lease / 3).max(Duration::from_millis(10));
    loop {
        let Some(inner) = weak.upgrade() else { return };
        let m = SessionManager { inner };
        if m.stopping() {
            return;
        }
        m.check_lease();
        tokio::spawn(async move { m.renew_lease().await });
        let _ = tokio::time::timeout(period, renew_now.notified()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_intersect_as_the_argument_needs() {
        assert_eq!((claim_quorum(3, 2), lease_quorum(3, 2)), (2, 2));
        assert_eq!((claim_quorum(3, 1), lease_quorum(3, 1)), (3, 1));
        assert_eq!((claim_quorum(2, 2), lease_quorum(2, 2)), (2, 1));
        assert_eq!((claim_quorum(5, 2), lease_quorum(5, 2)), (4, 2));
        assert_eq!((claim_quorum(1, 1), lease_quorum(1, 1)), (1, 1));
        for s in 1..=12usize {
            for r in 1..=s {
                let (p, l) = (claim_quorum(s, r), lease_quorum(s, r));
                assert!(r + p > s, "W + P > S: S={s} R={r}");
                assert!(2 * p > s, "P + P > S: S={s} R={r}");
                assert!(l + p > s, "Lq + P > S: S={s} R={r}");
                assert!(p <= s && l >= 1, "reachable: S={s} R={r}");
            }
        }
    }
}
