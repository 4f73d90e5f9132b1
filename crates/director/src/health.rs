//! Health: the active checker (one task per web server) and the state
//! transitions shared with passive detection.
//!
//! A check is `GET /.sticky/health` with the admin token. After `fall`
//! failed checks in a row (or at once, when the request path finds the
//! connection refused) the server is down; after `rise` good checks it is
//! up again, but it becomes routable only once it reports an epoch other
//! than the one it had when it stopped being routable. If it comes back
//! with the same epoch, the director asks it to fence itself (`POST
//! /.sticky/fence`, `fencing.rs`) and waits for the new epoch (invariant
//! 4). Only state flips are logged. A server found down (either way) is
//! declared dead: its failover candidates are asked to adopt its sessions
//! (`adopt.rs`).

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Instant;

use http::Method;
use sticky_proto::control::{HealthReport, DIRECTOR_CHECK_PATH};
use tokio::time::MissedTickBehavior;

use crate::adopt;
use crate::backend::Backend;
use crate::control::{control, CheckError};
use crate::fencing::fence;
use crate::history::EventKind;
use crate::state::State;
use crate::status::AdminState;

/// Checks `backend` every interval until it is retired or the director is
/// gone.
pub(crate) async fn run(shared: Weak<State>, backend: Arc<Backend>) {
    let Some(interval) = shared.upgrade().map(|s| s.config.health.interval) else {
        return;
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = backend.wake.notified() => {}
        }
        if backend.retired.load(Ordering::Relaxed) {
            return;
        }
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let settings = shared.config.health;
        let check = control(
            &backend,
            &shared.token,
            Method::GET,
            DIRECTOR_CHECK_PATH,
            settings.timeout,
        );
        tokio::pin!(check);
        let result = match settings.slow.filter(|&slow| slow < settings.timeout) {
            Some(slow) => match tokio::time::timeout(slow, &mut check).await {
                Ok(result) => result,
                Err(_) => {
                    slow_check(&shared, &backend, slow);
                    check.await
                }
            },
            None => check.await,
        };
        if observe(&shared, &backend, result) {
            fence(&shared, &backend).await;
        }
    }
}

/// A check of `backend` has had no answer for `after`: a paused or cut-off
/// server, most likely (a check takes a millisecond or less). Until a check
/// passes, moved and new clients go to others; the check itself fails only
/// at the health timeout, and only `fall` failures mark the server down.
fn slow_check(shared: &State, backend: &Backend, after: std::time::Duration) {
    let routable = backend.health().routable();
    let why = format!(
        "no answer to a health check within {} ms",
        after.as_millis()
    );
    if routable && mark_unreachable(shared, backend, &why) {
        shared.publish();
    }
}

/// Marks `backend` unreachable because of `why` (logged, and an event in
/// the history): where the director chooses, every request passes it over
/// until a health check passes ([`crate::routing::Table::route_avoiding`]).
/// True if it was not marked yet: the caller republishes the routing
/// table (not here: the health checker holds the server's health lock,
/// which building a table takes).
pub(crate) fn mark_unreachable(shared: &State, backend: &Backend, why: &str) -> bool {
    if !backend.mark_unreachable() {
        return false;
    }
    tracing::warn!(
        server = %backend.name,
        why,
        "web server unreachable: moved and new clients go to others until a health check passes"
    );
    shared.history.event(
        EventKind::Unreachable,
        &backend.name,
        format!("{why}: passed over for moved and new clients until a health check passes"),
    );
    true
}

/// Applies a check's result; returns true when the server must be asked to
/// fence itself.
fn observe(shared: &State, backend: &Backend, result: Result<HealthReport, CheckError>) -> bool {
    let settings = shared.config.health;
    let mut publish = false;
    let mut must_fence = false;
    // Declared dead by this check: its last epoch.
    let mut dead = None;
    // A server shutting down serves no session any more and ends its
    // lease: a failed check that marks it down at once rather than after
    // `fall` (its clients move now). Its report's epoch is the one it
    // fenced to on the way out; the one its sessions were served under
    // stays the dead one.
    let result = result.and_then(|report| {
        if report.stopping {
            Err(CheckError::Stopping)
        } else {
            Ok(report)
        }
    });
    {
        let mut h = backend.health();
        let was_routable = h.routable();
        match result {
            Ok(report) => {
                if backend.clear_unreachable() {
                    publish = true;
                    tracing::info!(server = %backend.name, "web server reachable again: a health check got through");
                    shared.history.event(
                        EventKind::Unreachable,
                        &backend.name,
                        "reachable again: a health check got through",
                    );
                }
                h.failures = 0;
                h.successes = h.successes.saturating_add(1);
                h.last_error = None;
                if h.ready != report.ready {
                    publish = true;
                }
                if h.ready != report.ready && !h.initial {
                    shared.history.event(
                        EventKind::Ready,
                        &backend.name,
                        if report.ready {
                            "ready again: writes to enough stores"
                        } else {
                            "not ready: cannot write to enough stores (preferring others)"
                        },
                    );
                    if report.ready {
                        tracing::info!(server = %backend.name, "web server reports ready again");
                    } else {
                        tracing::warn!(
                            server = %backend.name,
                            "web server reports not ready (cannot write to enough stores): preferring others"
                        );
                    }
                }
                h.ready = report.ready;
                h.sessions = report.sessions;
                h.epoch = Some(report.epoch);
                backend.epoch_hint.store(report.epoch, Ordering::Release);
                if let Some(old) = h.fence_from {
                    if old != report.epoch {
                        h.fence_from = None;
                        h.fencing = false;
                        if h.up {
                            shared.history.event_epoch(
                                EventKind::Fenced,
                                &backend.name,
                                "fenced: a new epoch, its cache from before is gone",
                                Some(report.epoch),
                            );
                            tracing::info!(
                                server = %backend.name,
                                epoch = report.epoch,
                                "web server has a new epoch (its cache from before is gone)"
                            );
                        }
                    }
                }
                if !h.up {
                    let needed = if h.initial { 1 } else { settings.rise };
                    if h.successes >= needed {
                        h.up = true;
                        h.initial = false;
                        h.changed_at = Instant::now();
                        shared.history.event_epoch(
                            EventKind::ServerUp,
                            &backend.name,
                            if h.fence_from.is_none() {
                                "up: answers its health checks"
                            } else {
                                "answers again with the epoch it had when it stopped being routable: fencing it first"
                            },
                            Some(report.epoch),
                        );
                        if h.fence_from.is_none() {
                            tracing::info!(
                                server = %backend.name,
                                addr = %backend.addr,
                                epoch = report.epoch,
                                sessions = report.sessions,
                                "web server is up"
                            );
                        } else {
                            tracing::info!(
                                server = %backend.name,
                                epoch = report.epoch,
                                "web server answers again with the epoch it had when it was marked down: fencing it before routing to it"
                            );
                        }
                    }
                }
                must_fence =
                    h.up && h.fence_from.is_some() && backend.admin() != AdminState::Evacuating;
            }
            Err(e) => {
                h.successes = 0;
                h.failures = h.failures.saturating_add(1);
                let down_now = matches!(e, CheckError::Stopping);
                let message = e.to_string();
                // One failed check is not enough to mark it down (`fall`),
                // but enough not to send it clients the director could send
                // elsewhere: a standby paused or cut off would otherwise get
                // a dead server's users until the checks mark it down.
                if h.routable() {
                    publish |= mark_unreachable(
                        shared,
                        backend,
                        &format!("a health check failed ({message})"),
                    );
                }
                if h.up && (down_now || h.failures >= settings.fall) {
                    h.mark_down(settings.fall);
                    dead = Some(h.epoch);
                    shared.history.event_epoch(
                        EventKind::ServerDown,
                        &backend.name,
                        format!(
                            "down: {} health checks failed ({message}); its clients move to other servers",
                            h.failures
                        ),
                        h.epoch,
                    );
                    tracing::warn!(
                        server = %backend.name,
                        addr = %backend.addr,
                        failures = h.failures,
                        error = %message,
                        "web server is down: its clients move to other servers"
                    );
                    backend.clear_pools();
                    // Requests lost in a cut link, or held by a server that
                    // no longer answers, would wait for TCP to resend them
                    // after a heal or for the response timeout. A server
                    // that says it stops drains its requests: not those.
                    if !down_now && shared.config.end_requests_on_down {
                        backend.end_requests();
                    }
                } else if h.initial && h.last_error.is_none() {
                    tracing::warn!(
                        server = %backend.name,
                        addr = %backend.addr,
                        error = %message,
                        "web server does not answer its health check yet"
                    );
                }
                h.last_error = Some(message);
            }
        }
        publish |= was_routable != h.routable();
    }
    if publish {
        shared.publish();
    }
    if let Some(epoch) = dead {
        adopt::declare_dead(shared, backend, epoch);
    }
    must_fence
}

/// Passive detection: the request path found nobody listening.
pub(crate) fn mark_down_now(shared: &State, backend: &Backend, why: &str) {
    let fall = shared.config.health.fall;
    let (flipped, epoch) = {
        let mut h = backend.health();
        let flipped = h.mark_down(fall);
        if flipped {
            h.last_error = Some(why.to_owned());
        }
        (flipped, h.epoch)
    };
    // The routing table first, before anything slow: until it is
    // republished, requests on other threads still route to this server,
    // find it refused, and would spend their attempts on it. A caller that
    // lost the race to flip it republishes too if the table still lists
    // it as routable (the flipper may not have got there yet).
    if flipped || shared.table.load().lists_routable(&backend.name) {
        shared.publish();
    }
    if flipped {
        shared.history.event_epoch(
            EventKind::ServerDown,
            &backend.name,
            format!("down, seen by a request ({why}); its clients move to other servers"),
            epoch,
        );
        tracing::warn!(
            server = %backend.name,
            addr = %backend.addr,
            error = why,
            "web server is down (seen by a request): its clients move to other servers"
        );
        backend.clear_pools();
        adopt::declare_dead(shared, backend, epoch);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {

    use super::*;

    /// Two requests find ws1's connection refused at once: one flips it
    /// down and, before it republishes the table, the other one's
    /// `mark_down_now` finds it already down. The second must not go on
    /// routing by a table that still lists ws1, or it spends all its
    /// attempts on the dead server and answers 503 while ws2 is up (a CI
    /// failure of `director_failover`).
    #[test]
    fn a_request_that_lost_the_race_to_mark_a_server_down_still_stops_routing_to_it() {
        let shared = State::for_tests();
        let backends = shared.backends();
        for b in &backends {
            let mut h = b.health();
            h.up = true;
            h.initial = false;
        }
        shared.publish();
        assert!(shared.table.load().lists_routable("ws1"));

        // The flipper, stopped between the flip and the publish.
        assert!(backends[0].health().mark_down(shared.config.health.fall));
        assert!(shared.table.load().lists_routable("ws1"), "stale table");

        mark_down_now(&shared, &backends[0], "connection refused");
        let table = shared.table.load();
        assert!(!table.lists_routable("ws1"));
        assert!(table.lists_routable("ws2"));
    }

    /// One failed check does not mark a server down (`fall` is 2), but the
    /// director stops choosing it for moved and new clients until a check
    /// passes; a client whose cookie names it still goes there.
    #[test]
    fn one_failed_check_passes_a_server_over_where_the_director_chooses_until_one_passes() {
        let shared = State::for_tests();
        let backends = shared.backends();
        let report = |name: &str| HealthReport {
            name: name.to_owned(),
            epoch: 7,
            sessions: 0,
            ready: true,
            standby: false,
            serving: true,
            stopping: false,
        };
        for b in &backends {
            observe(&shared, b, Ok(report(&b.name)));
        }
        let new_client = |shared: &State| {
            let table = shared.table.load();
            let rot = std::sync::atomic::AtomicUsize::new(0);
            let cookies = crate::route_cookie::RequestCookies::default();
            let ip = std::net::IpAddr::from([127, 0, 0, 1]);
            (0..8)
                .filter_map(|_| table.route(&cookies, ip, &shared.signer, &rot))
                .map(|d| table.entries[d.index].backend.name.clone())
                .collect::<std::collections::BTreeSet<_>>()
        };
        assert_eq!(
            new_client(&shared).len(),
            2,
            "both servers take new clients"
        );

        observe(
            &shared,
            &backends[0],
            Err(CheckError::Timeout(std::time::Duration::from_millis(500))),
        );
        assert!(
            backends[0].health().routable(),
            "not down after one failure"
        );
        assert!(shared.table.load().lists_routable("ws1"));
        assert!(backends[0].unreachable());
        assert_eq!(
            new_client(&shared).into_iter().collect::<Vec<_>>(),
            ["ws2"],
            "new clients pass ws1 over"
        );

        observe(&shared, &backends[0], Ok(report("ws1")));
        assert!(!backends[0].unreachable());
        assert_eq!(new_client(&shared).len(), 2, "a passing check clears it");
    }

    /// A report that says "stopping" marks an up server down at once (not
    /// after `fall` failed checks), and a passing report of the restarted
    /// process brings it back after `rise` checks.
    #[test]
    fn a_server_reporting_that_it_stops_is_down_at_once() {
        let shared = State::for_tests();
        let backends = shared.backends();
        let report = |name: &str, epoch: u64, stopping: bool| HealthReport {
            name: name.to_owned(),
            epoch,
            sessions: 0,
            ready: !stopping,
            standby: false,
            serving: true,
            stopping,
        };
        for b in &backends {
            observe(&shared, b, Ok(report(&b.name, 7, false)));
        }
        assert!(shared.table.load().lists_routable("ws1"));

        observe(&shared, &backends[0], Ok(report("ws1", 8, true)));
        assert!(!backends[0].health().up, "down after one stopping report");
        assert!(!shared.table.load().lists_routable("ws1"));
        assert_eq!(
            backends[0].health().epoch,
            Some(7),
            "the epoch its sessions were served under is kept"
        );
        observe(&shared, &backends[0], Ok(report("ws1", 8, true)));
        assert!(!backends[0].health().up, "stays down while it stops");

        let rise = shared.config.health.rise;
        for _ in 0..rise {
            observe(&shared, &backends[0], Ok(report("ws1", 9, false)));
        }
        assert!(backends[0].health().up, "the restarted process is up again");
        assert!(shared.table.load().lists_routable("ws1"));
    }
}
