//! Health: the active checker (one task per web server), the state
//! transitions shared with passive detection, and fencing.
//!
//! A check is `GET /.sticky/health` with the admin token. After `fall`
//! failed checks in a row (or at once, when the request path finds the
//! connection refused) the server is down; after `rise` good checks it is
//! up again, but it becomes routable only once it reports an epoch other
//! than the one it had when it stopped being routable. If it comes back
//! with the same epoch, the director asks it to fence itself (`POST
//! /.sticky/fence`) and waits for the new epoch (invariant 4). Only state
//! flips are logged.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use sticky_proto::control::{HealthReport, FENCE_PATH, HEALTH_PATH};
use tokio::time::{timeout_at, MissedTickBehavior};

use crate::backend::Backend;
use crate::director::Shared;
use crate::pool::{ConnectError, RequestBody};
use crate::status::AdminState;

/// Largest health or fence answer read.
const MAX_REPORT: usize = 64 << 10;

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Send(#[source] hyper::Error),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("unreadable answer: {0}")]
    Body(String),
    #[error("answer is not a health report: {0}")]
    Json(#[source] serde_json::Error),
    #[error("reports the name {0:?}: another server listens at this address")]
    WrongServer(String),
}

/// One control request (`GET /.sticky/health` or `POST /.sticky/fence`)
/// within `limit`. A connection that misses the deadline is closed.
pub(crate) async fn control(
    backend: &Backend,
    token: &HeaderValue,
    method: Method,
    path: &'static str,
    limit: Duration,
) -> Result<HealthReport, CheckError> {
    let deadline = tokio::time::Instant::now() + limit;
    let timed_out = || CheckError::Timeout(limit);
    let mut conn = timeout_at(deadline, backend.health_pool.get())
        .await
        .map_err(|_| timed_out())??;
    let abort = conn.abort_handle();
    let build = || {
        let mut req = Request::new(RequestBody::Empty);
        *req.method_mut() = method.clone();
        *req.uri_mut() = http::Uri::from_static(path);
        let h = req.headers_mut();
        h.insert(AUTHORIZATION, token.clone());
        if let Ok(host) = HeaderValue::from_str(&backend.addr.to_string()) {
            h.insert(HOST, host);
        }
        if method == Method::POST {
            h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        req
    };
    let exchange = async {
        let resp = match conn.sender.try_send_request(build()).await {
            Ok(resp) => resp,
            Err(mut e) => {
                if e.take_message().is_none() {
                    return Err(CheckError::Send(e.into_error()));
                }
                // The pooled connection was closed before the request
                // went out: one new connection.
                conn = backend.health_pool.connect().await?;
                conn.sender
                    .try_send_request(build())
                    .await
                    .map_err(|e| CheckError::Send(e.into_error()))?
            }
        };
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_REPORT)
            .collect()
            .await
            .map_err(|e| CheckError::Body(e.to_string()))?
            .to_bytes();
        Ok::<(StatusCode, Bytes), CheckError>((status, body))
    };
    let (status, body) = match timeout_at(deadline, exchange).await {
        Ok(result) => result?,
        Err(_) => {
            abort.abort();
            return Err(timed_out());
        }
    };
    backend.health_pool.put(conn);
    if status != StatusCode::OK {
        return Err(CheckError::Status(status));
    }
    let report: HealthReport = serde_json::from_slice(&body).map_err(CheckError::Json)?;
    if report.name != backend.name {
        return Err(CheckError::WrongServer(
            report.name.chars().take(64).collect(),
        ));
    }
    Ok(report)
}

/// Checks `backend` every interval until it is retired or the director is
/// gone.
pub(crate) async fn run(shared: Weak<Shared>, backend: Arc<Backend>) {
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
        let limit = shared.config.health.timeout;
        let result = control(&backend, &shared.token, Method::GET, HEALTH_PATH, limit).await;
        if observe(&shared, &backend, result) {
            fence(&shared, &backend).await;
        }
    }
}

/// Applies a check's result; returns true when the server must be asked to
/// fence itself.
fn observe(shared: &Shared, backend: &Backend, result: Result<HealthReport, CheckError>) -> bool {
    let settings = shared.config.health;
    let mut publish = false;
    let mut must_fence = false;
    {
        let mut h = backend.health();
        let was_routable = h.routable();
        match result {
            Ok(report) => {
                h.failures = 0;
                h.successes = h.successes.saturating_add(1);
                h.last_error = None;
                if h.ready != report.ready {
                    publish = true;
                }
                if h.ready != report.ready && !h.initial {
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
                let message = e.to_string();
                if h.up && h.failures >= settings.fall {
                    h.mark_down(settings.fall);
                    tracing::warn!(
                        server = %backend.name,
                        addr = %backend.addr,
                        failures = h.failures,
                        error = %message,
                        "web server is down: its clients move to other servers"
                    );
                    backend.clear_pools();
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
    must_fence
}

/// Asks `backend` to fence itself and makes it routable once it reports a
/// new epoch.
async fn fence(shared: &Shared, backend: &Backend) {
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
                tracing::warn!(server = %backend.name, error = %e, "fence request failed; will retry");
                h.fencing = true;
            }
        }
    }
}

/// Passive detection: the request path found nobody listening.
pub(crate) fn mark_down_now(shared: &Shared, backend: &Backend, why: &str) {
    let fall = shared.config.health.fall;
    let flipped = {
        let mut h = backend.health();
        let flipped = h.mark_down(fall);
        if flipped {
            h.last_error = Some(why.to_owned());
        }
        flipped
    };
    if flipped {
        tracing::warn!(
            server = %backend.name,
            addr = %backend.addr,
            error = why,
            "web server is down (seen by a request): its clients move to other servers"
        );
        backend.clear_pools();
        shared.publish();
    }
}
