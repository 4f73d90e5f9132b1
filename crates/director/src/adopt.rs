//! Claim 7 whole (`docs/safety.md` §5): when the director declares a web
//! server dead — marked down by its health checks after `fall` failures,
//! or at once by a refused connection — it asks the servers its clients
//! now fail over to to **adopt** the dead server's sessions: `POST
//! /.sticky/adopt` with the admin token and
//! [`AdoptRequest`]` { owner: "NAME@EPOCH", among }`, `among` being the
//! failover candidates the routing table chooses among right now (healthy
//! standbys if any, else healthy web servers, else the last resort; those
//! this director could not reach passed over, as its routing does) with
//! their weights. Each candidate claims, in the background, the sessions
//! whose rendezvous choice over `among` is itself — the server the
//! director would route that session's user to — so sessions whose users
//! never come back are hosted (and kept on R stores) again.
//!
//! Once per (server, epoch) ([`Backend::adopt_asked`]); each candidate is
//! asked up to [`ATTEMPTS`] times, with doubling pauses, until it answers
//! `2xx`. A `404` (a web server without the endpoint) is logged once per
//! process and not retried: sessions then move as their users return.
//! Logs name servers only, never cookies or tokens.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use sticky_proto::control::{AdoptRequest, AdoptTarget, ADOPT_PATH};

use crate::backend::Backend;
use crate::history::EventKind;
use crate::state::State;

/// Tries per candidate.
const ATTEMPTS: u32 = 5;
/// The pause after the first failed try; doubled after each.
const FIRST_PAUSE: Duration = Duration::from_millis(200);
/// Longest answer read.
const MAX_ANSWER: usize = 16 << 10;

/// A `404` to an adopt request was logged (once per process).
static NOT_SUPPORTED_LOGGED: AtomicBool = AtomicBool::new(false);

/// `backend`, whose last known epoch is `epoch`, was just declared dead
/// (and the routing table republished without it): asks its failover
/// candidates to adopt its sessions, in the background, unless this
/// epoch's death was announced already.
pub(crate) fn declare_dead(shared: &State, backend: &Backend, epoch: Option<u64>) {
    let Some(epoch) = epoch.filter(|&e| e != 0) else {
        return; // Never heard its epoch: it never served a session.
    };
    if backend.adopt_asked.swap(epoch, Ordering::AcqRel) == epoch {
        return;
    }
    let table = shared.table.load();
    let targets: Vec<(Arc<Backend>, u32)> = table
        .failover_among(&[])
        .iter()
        .map(|&i| &table.entries[i])
        .filter(|e| e.backend.name != backend.name)
        .map(|e| (Arc::clone(&e.backend), e.weight))
        .collect();
    let names: Vec<&str> = targets.iter().map(|(b, _)| b.name.as_str()).collect();
    if targets.is_empty() {
        shared.history.event_epoch(
            EventKind::Adopt,
            &backend.name,
            "declared dead, and no other server is up to adopt its sessions",
            Some(epoch),
        );
        tracing::warn!(
            server = %backend.name,
            epoch,
            "web server declared dead, and no other server is up to adopt its sessions"
        );
        return;
    }
    shared.history.event_epoch(
        EventKind::Adopt,
        &backend.name,
        format!(
            "declared dead: {} asked to adopt its sessions",
            names.join(", ")
        ),
        Some(epoch),
    );
    tracing::info!(
        server = %backend.name,
        epoch,
        among = ?names,
        "web server declared dead: asking its failover servers to adopt its sessions"
    );
    let request = AdoptRequest {
        owner: format!("{}@{epoch}", backend.name),
        among: targets
            .iter()
            .map(|(b, weight)| AdoptTarget {
                name: b.name.clone(),
                weight: *weight,
            })
            .collect(),
    };
    let Ok(body) = serde_json::to_vec(&request) else {
        return;
    };
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let body = Bytes::from(body);
    let limit = shared.config.health.timeout.max(Duration::from_secs(1));
    for (target, _) in targets {
        runtime.spawn(ask(
            target,
            backend.name.clone(),
            shared.token.clone(),
            body.clone(),
            limit,
        ));
    }
}

/// Asks `target` to adopt `dead`'s sessions until it accepts, refuses
/// for good, or the tries run out.
async fn ask(target: Arc<Backend>, dead: String, token: HeaderValue, body: Bytes, limit: Duration) {
    let mut pause = FIRST_PAUSE;
    for attempt in 1..=ATTEMPTS {
        match tokio::time::timeout(limit, post(&target, &token, body.clone())).await {
            Ok(Ok(status)) if status.is_success() => {
                tracing::info!(server = %target.name, dead = %dead, "adopting the dead server's sessions");
                return;
            }
            Ok(Ok(StatusCode::NOT_FOUND)) => {
                if !NOT_SUPPORTED_LOGGED.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        server = %target.name,
                        "web server does not offer /.sticky/adopt (404): a dead server's sessions move only as their users return"
                    );
                }
                return;
            }
            Ok(Ok(status)) if status.is_client_error() => {
                tracing::warn!(server = %target.name, dead = %dead, %status, "adopt request refused");
                return;
            }
            Ok(Ok(status)) => {
                tracing::debug!(server = %target.name, attempt, %status, "adopt request failed; will retry");
            }
            Ok(Err(error)) => {
                tracing::debug!(server = %target.name, attempt, %error, "adopt request failed; will retry");
            }
            Err(_) => {
                tracing::debug!(server = %target.name, attempt, "adopt request timed out; will retry");
            }
        }
        if attempt == ATTEMPTS {
            break;
        }
        tokio::time::sleep(pause).await;
        pause *= 2;
    }
    tracing::warn!(
        server = %target.name,
        dead = %dead,
        "adopt request failed {ATTEMPTS} times: the dead server's sessions move as their users return"
    );
}

/// One `POST /.sticky/adopt` on a new connection; its status.
async fn post(
    target: &Backend,
    token: &HeaderValue,
    body: Bytes,
) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(target.addr).await?;
    let _ = stream.set_nodelay(true);
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = http::Uri::from_static(ADOPT_PATH);
    let h = req.headers_mut();
    h.insert(AUTHORIZATION, token.clone());
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Ok(host) = HeaderValue::from_str(&target.addr.to_string()) {
        h.insert(HOST, host);
    }
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    // Read (and drop) the answer so the connection ends cleanly.
    let _ = http_body_util::Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    #[test]
    fn pauses_stay_bounded() {
        let total: u32 = (0..super::ATTEMPTS - 1).map(|i| 1u32 << i).sum();
        let total = super::FIRST_PAUSE * total;
        assert!(total <= std::time::Duration::from_secs(4), "{total:?}");
    }
}
