//! Expiry: the idle timeout (a hosted session unused that long leaves the
//! cache; its copies at the stores expire by their TTL, which
//! [lazy touches](SessionManager::lazy_touch) extend) and the absolute
//! timeout (a session that old is replaced by a new one).

use std::time::Duration;

use crate::cache::SessionState;
use crate::clock::unix_ms;
use crate::id::SessionId;
use crate::open::Opened;
use crate::state::SessionManager;
use crate::stores::Stores;

impl SessionManager {
    /// `opened`, or `None` (and this server's copy dropped) if it is past
    /// its absolute timeout.
    pub(crate) fn unless_too_old(&self, mut opened: Opened) -> Option<Opened> {
        let limit = self.inner.config.absolute_timeout.as_millis() as u64;
        let expired = opened
            .held
            .state()
            .is_some_and(|s| unix_ms().saturating_sub(s.created_ms) > limit);
        if !expired {
            return Some(opened);
        }
        self.drop_local(&mut opened);
        None
    }

    /// Idle-expiry extension, propagated lazily: only once less than half
    /// the idle time is left at the stores, and in the background.
    pub(crate) fn lazy_touch(&self, id: &SessionId, state: &mut SessionState) {
        let idle = self.inner.config.idle_timeout.as_millis() as u64;
        let now = self.inner.clock.now_ms();
        if state.is_unsaved() || state.store_deadline_ms.saturating_sub(now) > idle / 2 {
            return;
        }
        state.store_deadline_ms = now + idle;
        let targets = state.stored_on;
        let me = self.clone();
        let key = id.key();
        tokio::spawn(async move {
            for i in Stores::members(targets) {
                let r = me.inner.stores.clients[i]
                    .touch(key.as_bytes(), Some(me.inner.config.idle_timeout))
                    .await;
                me.inner.stores.observe(i, &r);
            }
        });
    }

    /// The TTL of a session's copies at the stores: the idle timeout, or,
    /// for a new session no second request touched yet, the shorter
    /// `new_session_ttl`.
    pub(crate) fn copy_ttl(&self, untouched: bool) -> Duration {
        let c = &self.inner.config;
        if untouched {
            c.new_session_ttl.min(c.idle_timeout)
        } else {
            c.idle_timeout
        }
    }

    /// When the copies at the stores of a version written now expire.
    pub(crate) fn store_deadline_ms(&self, untouched: bool) -> u64 {
        self.inner.clock.now_ms() + self.copy_ttl(untouched).as_millis() as u64
    }

    /// Removes the sessions idle for longer than the idle timeout from the
    /// cache, and the new sessions untouched for `new_session_ttl`; the
    /// sweeper runs it every second.
    pub(crate) fn sweep_idle(&self) {
        let idle = self.copy_ttl(false).as_millis() as u64;
        let new = self.copy_ttl(true).as_millis() as u64;
        let now = self.inner.clock.now_ms();
        let removed = self
            .inner
            .cache
            .sweep_idle(now.saturating_sub(idle), now.saturating_sub(new));
        if removed > 0 {
            metrics::counter!("sticky_sessions_expired_total").increment(removed as u64);
            tracing::debug!(removed, "idle sessions expired");
        }
        metrics::gauge!("sticky_sessions_hosted").set(self.inner.cache.len() as f64);
        metrics::gauge!("sticky_session_bytes_hosted").set(self.inner.cache.bytes() as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::cache::{Entry, SessionState};
    use crate::id::SessionId;
    use crate::state::tests::{config, manager};

    fn host(m: &crate::state::SessionManager, id: SessionId) -> std::sync::Arc<Entry> {
        let entry = Entry::new(Some(SessionState::new()), m.inner.clock.now_ms());
        m.inner.cache.insert(id, entry.clone());
        entry
    }

    #[tokio::test(start_paused = true)]
    async fn idle_sessions_leave_the_cache_after_the_idle_timeout() {
        let mut c = config(1);
        c.idle_timeout = Duration::from_secs(60);
        let m = manager(c);
        let (a, b) = (
            SessionId::from_bytes([1; 16]),
            SessionId::from_bytes([2; 16]),
        );
        host(&m, a);
        let used = host(&m, b);
        tokio::time::advance(Duration::from_secs(40)).await;
        used.touch(m.inner.clock.now_ms());
        m.sweep_idle();
        assert_eq!(m.sessions(), 2, "nothing idle for 60 s yet");
        tokio::time::advance(Duration::from_secs(21)).await;
        m.sweep_idle();
        assert!(m.inner.cache.get(&a).is_none(), "idle for 61 s: expired");
        assert!(m.inner.cache.get(&b).is_some(), "used 21 s ago: kept");
        tokio::time::advance(Duration::from_secs(40)).await;
        m.sweep_idle();
        assert_eq!(m.sessions(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_untouched_new_session_leaves_the_cache_after_new_session_ttl() {
        let mut c = config(1);
        c.idle_timeout = Duration::from_secs(600);
        c.new_session_ttl = Duration::from_secs(60);
        let m = manager(c);
        let (new, used) = (
            SessionId::from_bytes([5; 16]),
            SessionId::from_bytes([6; 16]),
        );
        host(&m, new)
            .untouched
            .store(true, std::sync::atomic::Ordering::Relaxed);
        host(&m, used);
        tokio::time::advance(Duration::from_secs(61)).await;
        m.sweep_idle();
        assert!(
            m.inner.cache.get(&new).is_none(),
            "untouched for 61 s: gone"
        );
        assert!(m.inner.cache.get(&used).is_some(), "a used one lives on");
        assert_eq!(m.sessions(), 1, "the count follows");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lazy_touch_waits_until_half_the_idle_time_is_left() {
        let mut c = config(1);
        c.idle_timeout = Duration::from_secs(100);
        let m = manager(c);
        let id = SessionId::from_bytes([3; 16]);
        let mut state = SessionState::new();
        state.stamp = sticky_proto::Stamp::new(1, 1);
        state.store_deadline_ms = m.store_deadline_ms(false);
        let first = state.store_deadline_ms;
        tokio::time::advance(Duration::from_secs(49)).await;
        m.lazy_touch(&id, &mut state);
        assert_eq!(state.store_deadline_ms, first, "51 s left: no touch");
        tokio::time::advance(Duration::from_secs(2)).await;
        m.lazy_touch(&id, &mut state);
        assert_eq!(
            state.store_deadline_ms,
            first + 51_000,
            "49 s left: touched"
        );
        let mut unsaved = SessionState::new();
        m.lazy_touch(&id, &mut unsaved);
        assert_eq!(
            unsaved.store_deadline_ms, 0,
            "never stored: nothing to touch"
        );
    }

    #[tokio::test]
    async fn sessions_past_the_absolute_timeout_are_dropped() {
        let mut c = config(1);
        c.absolute_timeout = Duration::from_secs(3600);
        let m = manager(c);
        let young = m.fresh().unwrap_or_else(|e| panic!("{e}"));
        assert!(m.unless_too_old(young).is_some());
        let id = SessionId::from_bytes([4; 16]);
        let entry = host(&m, id);
        {
            let mut g = entry.slot.lock().await;
            if let Some(s) = g.as_mut() {
                s.created_ms -= 3_601_000;
            }
        }
        let opened = m.open_id(id).await.unwrap_or_else(|e| panic!("{e}"));
        let opened = opened.unwrap_or_else(|| panic!("cached session not found"));
        assert!(m.unless_too_old(opened).is_none());
        assert!(
            m.inner.cache.get(&id).is_none(),
            "this server's copy dropped"
        );
    }
}
