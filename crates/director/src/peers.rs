//! Several directors (`[[director.peers]]`): an admin state change (drain,
//! evacuate, enable) asked on one director's admin API or dashboard is
//! passed to every other director's admin listener, with the admin token,
//! so it reaches all of them whichever one was asked. The passed request
//! carries [`PASSED_HEADER`]; a director that gets one applies it and
//! passes it on to nobody (no loops, no storms).
//!
//! Each second the peers' admin listeners are asked `GET /healthz`
//! ([`watch`]), for `/api/cluster`'s `directors` and the dashboard, and
//! to end the requests relayed to a peer that stopped answering. A
//! director that starts copies the drains and evacuations of the first
//! peer that answers, once ([`catch_up`]): a restarted director does not
//! forget them.
//!
//! The director, not the `sticky up` supervisor, fans out: admin requests
//! reach directors directly (the dashboard, scripts, `curl`), also in
//! clusters `sticky up` did not start, and only a director knows when one
//! arrived.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

use crate::state::{State, PEER_DOWN, PEER_UP};
use crate::status::{AdminState, ClusterStatus};

/// Marks an admin request passed on by a peer director.
pub(crate) const PASSED_HEADER: &str = "sticky-director-peer";

/// Time one peer may take to apply a change.
const LIMIT: Duration = Duration::from_secs(2);

/// Passes `POST path` to every peer director with `token` (the admin
/// token the peers expect: the same cluster file, so the same token);
/// returns the names of the peers that did not apply it, each logged.
pub(crate) async fn pass_on(shared: &State, path: &str, token: &str) -> Vec<String> {
    let Ok(auth) = sticky_proto::control::bearer(token) else {
        return shared.config.peers.iter().map(|p| p.name.clone()).collect();
    };
    let mut asks = JoinSet::new();
    for peer in &shared.config.peers {
        let (name, addr, path, auth) =
            (peer.name.clone(), peer.admin, path.to_owned(), auth.clone());
        asks.spawn(async move {
            let result = tokio::time::timeout(LIMIT, post(addr, &path, &auth)).await;
            (name, result)
        });
    }
    let mut failed = Vec::new();
    while let Some(joined) = asks.join_next().await {
        let Ok((name, result)) = joined else {
            continue;
        };
        let error = match result {
            Ok(Ok(status)) if status.is_success() => continue,
            Ok(Ok(status)) => format!("answered {status}"),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("no answer within {LIMIT:?}"),
        };
        tracing::warn!(peer = %name, path, %error, "cannot pass an admin state change to a peer director: apply it there too");
        failed.push(name);
    }
    failed.sort();
    failed
}

/// One passed `POST` to a peer's admin listener; its status.
async fn post(
    addr: SocketAddr,
    path: &str,
    auth: &HeaderValue,
) -> Result<StatusCode, Box<dyn std::error::Error + Send + Sync>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.method_mut() = Method::POST;
    *req.uri_mut() = path.parse()?;
    let h = req.headers_mut();
    h.insert(AUTHORIZATION, auth.clone());
    h.insert(HOST, HeaderValue::from_str(&addr.to_string())?);
    h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    h.insert(PASSED_HEADER, HeaderValue::from_static("1"));
    let resp = sender.send_request(req).await?;
    let status = resp.status();
    let _ = http_body_util::Limited::new(resp.into_body(), 64 << 10)
        .collect()
        .await;
    Ok(status)
}

/// Time between two looks at the peers.
const WATCH_INTERVAL: Duration = Duration::from_secs(1);
/// Time one look may take.
const WATCH_LIMIT: Duration = Duration::from_millis(800);

/// Asks every peer director's admin listener for `/healthz` each second,
/// until the director stops.
pub(crate) async fn watch(shared: Weak<State>) {
    let mut tick = tokio::time::interval(WATCH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut caught_up = false;
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        if !s.is_serving() {
            return;
        }
        if !caught_up {
            caught_up = catch_up(&s).await;
        }
        let mut looks = JoinSet::new();
        for (i, peer) in s.config.peers.iter().enumerate() {
            let addr = peer.admin;
            looks.spawn(async move {
                let answer = sticky_proto::control::request(
                    addr,
                    Method::GET,
                    "/healthz",
                    None,
                    WATCH_LIMIT,
                    1024,
                )
                .await;
                (i, matches!(answer, Ok(r) if r.status() == StatusCode::OK))
            });
        }
        // Do not keep the director alive while waiting.
        drop(s);
        while let Some(done) = looks.join_next().await {
            if let (Ok((i, up)), Some(s)) = (done, shared.upgrade()) {
                if let Some(seen) = s.peers_seen.get(i) {
                    let now = if up { PEER_UP } else { PEER_DOWN };
                    let before = seen.swap(now, Ordering::Relaxed);
                    for (_, peer) in s.relay_peers.iter().filter(|(j, _)| *j == i) {
                        if up {
                            peer.clear_unreachable();
                            continue;
                        }
                        // Relays to it get the quick connect limit.
                        peer.mark_unreachable();
                        if before != PEER_DOWN && s.config.end_requests_on_down {
                            // Requests relayed to it wait for an answer
                            // that may never come (a link cut after they
                            // went out): ended with 504, as a web
                            // server's are when its checks mark it down.
                            peer.end_requests();
                        }
                    }
                    if before != now && before != 0 {
                        let name = &s.config.peers[i].name;
                        if up {
                            tracing::info!(peer = %name, "peer director answers again");
                        } else {
                            tracing::warn!(peer = %name, "peer director does not answer");
                        }
                    }
                }
            }
        }
    }
}

/// A director that starts (or restarts) knows no drain or evacuation made
/// before: it copies them from the first peer that answers, once. Only
/// servers still enabled here take a peer's draining or evacuating state
/// (a change asked here since the start was passed to the peers anyway).
/// True once a peer answered (or there is none to ask).
async fn catch_up(shared: &Arc<State>) -> bool {
    for peer in &shared.config.peers {
        let answer = sticky_proto::control::request(
            peer.admin,
            Method::GET,
            "/api/cluster",
            None,
            WATCH_LIMIT,
            4 << 20,
        )
        .await;
        let Ok(resp) = answer else {
            continue;
        };
        if resp.status() != StatusCode::OK {
            continue;
        }
        let Ok(status) = serde_json::from_slice::<ClusterStatus>(resp.body()) else {
            continue;
        };
        for server in status.servers {
            if server.admin == AdminState::Enabled {
                continue;
            }
            let here = shared
                .backends()
                .into_iter()
                .find(|b| b.name == server.name)
                .map(|b| b.admin());
            if here == Some(AdminState::Enabled) {
                tracing::info!(
                    server = %server.name,
                    peer = %peer.name,
                    state = server.admin.as_str(),
                    "admin state copied from a peer director"
                );
                let _ = shared.set_admin(&server.name, server.admin);
            }
        }
        return true;
    }
    shared.config.peers.is_empty()
}
