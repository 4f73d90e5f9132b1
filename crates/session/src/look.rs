//! Looking at every store again: when a claim or a write finds too few
//! stores believed up, the belief may be stale (this process may just have
//! been paused, and its requests timed out), so it pings them all — but
//! waits for the answers only as long as a prompt store takes.

use crate::state::SessionManager;
use crate::stores::GRACE;

/// Looks at every store again (a ping of each, in the background; one look
/// at a time, shared by everyone who asks meanwhile) and waits until
/// `enough` says the stores believed up will do, or for [`GRACE`], the
/// time a prompt store takes to answer a ping. A store still silent then
/// is as good as down for the caller, which then fails at once (`503`,
/// and the client's retry finds what the look found) instead of waiting a
/// store timeout for a store it cannot reach (session 25: a standby cut
/// from two stores held a request 2 s, a claim timeout).
pub(crate) async fn look_again(m: &SessionManager, enough: impl Fn(u64) -> bool) {
    let stores = &m.inner.stores;
    let mut live = stores.subscribe();
    if stores.start_looking() {
        let weak = std::sync::Arc::downgrade(&m.inner);
        tokio::spawn(async move {
            if let Some(inner) = weak.upgrade() {
                inner.stores.ping_all().await;
                inner.stores.done_looking();
            }
        });
    }
    let wait = async {
        while !enough(*live.borrow_and_update()) {
            if live.changed().await.is_err() {
                return;
            }
        }
    };
    let _ = tokio::time::timeout(GRACE, wait).await;
}
