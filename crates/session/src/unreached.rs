//! A server that no director reaches lets its sessions go
//! (`docs/safety.md` §2, "A server no director reaches lets its sessions
//! go").
//!
//! Cut off from every director but not from the stores, a web server keeps
//! renewing its lease, so nobody may claim its sessions, while no client
//! can reach it: its users get `503` (a `421` naming a server the director
//! cannot reach) for as long as the cut lasts. When a peer probes it before
//! claiming one of its sessions (a director sent that session's user
//! elsewhere) and no director's health check has reached it for
//! [`Config::release_unreached_after`](crate::Config::release_unreached_after),
//! it fences itself as a lapse would: new epoch, cache dropped, its lease
//! released at the stores, so the probe answers with the new epoch and the
//! peer's claim goes on at once. The copies are kept (invariant 1: this
//! process still holds them), but the claim-back of the ones nobody took
//! waits until a director reaches this server again — before that it would
//! only take them back where their users cannot reach them.

use std::sync::atomic::Ordering;

use sticky_config::Mode;

use crate::state::SessionManager;

impl SessionManager {
    /// A director's health check reached this server.
    pub(crate) fn director_checked(&self) {
        let inner = &self.inner;
        inner
            .director_checked_ms
            .store(inner.clock.now_ms().max(1), Ordering::Release);
        // The claim-back the fence started waits for this.
        if inner.released_unreached.swap(false, Ordering::AcqRel) {
            tracing::info!(
                kept = inner.dropped.len(),
                "a director reaches this server again: claiming back the sessions it let go that nobody took"
            );
        }
    }

    /// A peer probed this server before claiming one of its sessions: lets
    /// every session go if no director has reached it for
    /// [`Config::release_unreached_after`](crate::Config::release_unreached_after).
    pub(crate) fn probed_by_peer(&self) {
        let inner = &self.inner;
        let Some(after) = inner.config.release_unreached_after else {
            return;
        };
        let last = inner.director_checked_ms.load(Ordering::Acquire);
        let now = inner.clock.now_ms();
        let unreached_ms = now.saturating_sub(last);
        // Never checked: no director watches this server (a library user
        // without one), or it has just started.
        if last == 0 || u128::from(unreached_ms) < after.as_millis() {
            return;
        }
        // In async mode the cache may hold changes the stores do not have
        // yet: the sessions stay where they are.
        if inner.config.mode != Mode::Sync
            || self.stopping()
            || !self.serving()
            || inner.cache.len() == 0
            || inner.released_unreached.swap(true, Ordering::AcqRel)
        {
            return;
        }
        metrics::counter!("sticky_released_unreached_total").increment(1);
        tracing::warn!(
            unreached_ms,
            sessions = inner.cache.len(),
            "no director has reached this server and a peer is claiming one of its sessions: letting its sessions go so that their users can be served elsewhere"
        );
        self.fence_lapsed(
            inner.fencing.epoch(),
            "no director reaches this server: its sessions go to servers their users can reach",
        );
    }
}
