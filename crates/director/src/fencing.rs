//! The director's side of fencing: a web server that was evacuated is
//! routed to again only once it has fenced itself (new epoch, empty cache,
//! its lease released, so its sessions could move). A server that was only
//! marked down is not fenced: its lease at the stores decides whether it
//! may serve its cache (`docs/safety.md`, invariant 4).
//!
//! - When a server is evacuated (`State::set_admin`) the director
//!   remembers the epoch it had (`Health::fence_from`).
//! - The health checker (`health.rs`) clears that once the server reports
//!   another epoch, and until then asks it to fence itself: [`fence`].
//! - Every request carries the epoch last reported, as the fencing token
//!   [`STICKY_EPOCH`] (`forward::ControlHeaders`, on every path); a server that fenced
//!   itself since refuses the request untouched with `sticky-fenced`, and
//!   the request path (`forward::refused_untouched`) either adopts its
//!   new epoch ([`adopt_epoch`]) or marks it down.

use std::sync::atomic::Ordering;

use http::{HeaderName, Method};
use sticky_proto::control::FENCE_PATH;

use crate::backend::Backend;
use crate::control::control;
use crate::history::EventKind;
use crate::state::State;
use crate::status::AdminState;

/// The fencing token sent with every request: the epoch the server last
/// reported.
pub(crate) static STICKY_EPOCH: HeaderName =
    HeaderName::from_static(sticky_proto::control::EPOCH_HEADER);

/// Asks `backend` to fence itself and makes it routable once it reports a
/// new epoch.
pub(crate) async fn fence(shared: &State, backend: &Backend) {
    let limit = shared.config.health.timeout;
    let result = control(backend, &shared.token, Method::POST, FENCE_PATH, limit).await;
    let mut h = backend.health();
    match result {
        Ok(report) => {
            h.epoch = Some(report.epoch);
            backend.epoch_hint.store(report.epoch, Ordering::Release);
            h.sessions = report.sessions;
            h.ready = report.ready;
            match h.fence_from {
                Some(old) if old != report.epoch => {
                    h.fence_from = None;
                    h.fencing = false;
                    shared.history.event_epoch(
                        EventKind::Fenced,
                        &backend.name,
                        "fenced itself: a new epoch, routed to again",
                        Some(report.epoch),
                    );
                    tracing::info!(
                        server = %backend.name,
                        old_epoch = old,
                        epoch = report.epoch,
                        "web server fenced itself: routing to it again"
                    );
                    drop(h);
                    shared.publish();
                }
                Some(_) if !h.fencing => {
                    shared.history.event_epoch(
                        EventKind::Fencing,
                        &backend.name,
                        "asked to fence itself; it answered without a new epoch, asking again",
                        Some(report.epoch),
                    );
                    tracing::warn!(
                        server = %backend.name,
                        "web server answered the fence request without a new epoch; asking again"
                    );
                    h.fencing = true;
                }
                _ => {}
            }
        }
        Err(e) => {
            if !h.fencing {
                shared.history.event(
                    EventKind::Fencing,
                    &backend.name,
                    format!("fence request failed ({e}); will retry"),
                );
                tracing::warn!(server = %backend.name, error = %e, "fence request failed; will retry");
                h.fencing = true;
            }
        }
    }
}

/// A `sticky-fenced` answer carried `epoch`. If the server is routable
/// (up, fenced since it last stopped being routable, not evacuating),
/// the director has moved none of its sessions since it learned the
/// epoch it sent: the server fenced itself on its own (its lease ran
/// out because our checks did not reach it), its cache is empty, and
/// it may be routed to with the new epoch — as a health check would
/// record it. Returns whether the server stays routable; if not, the
/// caller marks it down and routes elsewhere.
pub(crate) fn adopt_epoch(backend: &Backend, epoch: Option<u64>) -> bool {
    let Some(epoch) = epoch else {
        return false;
    };
    if backend.admin() == AdminState::Evacuating {
        return false;
    }
    let mut h = backend.health();
    if !h.routable() {
        return false;
    }
    h.epoch = Some(epoch);
    backend.epoch_hint.store(epoch, Ordering::Release);
    true
}
