//! The `sticky up` supervisor's control API, proxied on the admin
//! listener for the dashboard's kill, pause, resume and restart buttons
//! (`[director] supervisor`). The director adds the admin token, so the
//! browser needs neither the token nor a cross-origin request; answers
//! are passed through as they are. See `docs/up.md`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_LENGTH, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_util::rt::TokioIo;

use crate::body::Body;

/// Longest a proxied request may take: a restart waits for the process to
/// stop (up to 5 s) before it starts it again.
const LIMIT: Duration = Duration::from_secs(20);
/// Largest answer passed through.
const MAX_ANSWER: usize = 1 << 20;

/// True for a process name the supervisor could have given (`ws1`, `s2`,
/// `director`), so that nothing else reaches its URL space.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Forwards `method path` to the supervisor at `addr`.
pub(crate) async fn forward(
    addr: SocketAddr,
    token: &HeaderValue,
    method: Method,
    path: &str,
) -> Response<Body> {
    match tokio::time::timeout(LIMIT, exchange(addr, token, method, path)).await {
        Ok(Ok(resp)) => resp,
        Ok(Err(e)) => unavailable(&format!("the sticky up supervisor at {addr}: {e}")),
        Err(_) => unavailable(&format!(
            "the sticky up supervisor at {addr} did not answer within {LIMIT:?}"
        )),
    }
}

async fn exchange(
    addr: SocketAddr,
    token: &HeaderValue,
    method: Method,
    path: &str,
) -> Result<Response<Body>, String> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("cannot connect: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("HTTP handshake failed: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let is_post = method == Method::POST;
    let mut req = Request::new(Empty::<Bytes>::new());
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().map_err(|_| "bad path".to_owned())?;
    let h = req.headers_mut();
    h.insert(AUTHORIZATION, token.clone());
    if let Ok(host) = HeaderValue::from_str(&addr.to_string()) {
        h.insert(HOST, host);
    }
    if is_post {
        h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
    }
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| format!("request failed: {e}"))?;
    let status = resp.status();
    let content_type = resp.headers().get(CONTENT_TYPE).cloned();
    let body = Limited::new(resp.into_body(), MAX_ANSWER)
        .collect()
        .await
        .map_err(|e| format!("unreadable answer: {e}"))?
        .to_bytes();
    let mut out = Response::new(Body::full(body));
    *out.status_mut() = status;
    let h = out.headers_mut();
    h.insert(
        CONTENT_TYPE,
        content_type.unwrap_or(HeaderValue::from_static("application/json")),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(out)
}

fn unavailable(message: &str) -> Response<Body> {
    tracing::warn!(error = message, "cannot reach the supervisor");
    let body = serde_json::json!({ "error": message }).to_string();
    let mut resp = Response::new(Body::full(body));
    *resp.status_mut() = StatusCode::BAD_GATEWAY;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

#[cfg(test)]
mod tests {
    use super::valid_name;

    #[test]
    fn only_process_names_reach_the_supervisor() {
        for ok in ["ws1", "s2", "director", "web-1.a_b"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["", "..%2f", "a/b", "a?b", "ws 1", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }
}
