//! Several directors (`[[director.peers]]`): an admin state change (drain,
//! evacuate, enable) asked on one director's admin API or dashboard is
//! passed to every other director's admin listener, with the admin token,
//! so it reaches all of them whichever one was asked. The passed request
//! carries [`PASSED_HEADER`]; a director that gets one applies it and
//! passes it on to nobody (no loops, no storms).
//!
//! The director, not the `sticky up` supervisor, fans out: admin requests
//! reach directors directly (the dashboard, scripts, `curl`), also in
//! clusters `sticky up` did not start, and only a director knows when one
//! arrived.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;

use crate::state::State;

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
