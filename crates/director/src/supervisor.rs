//! The `sticky up` supervisor's control API, proxied on the admin
//! listener for the dashboard's kill, pause, resume and restart buttons
//! (`[director] supervisor`). The director adds the admin token, so the
//! browser needs neither the token nor a cross-origin request; answers
//! are passed through as they are. See `docs/up.md`.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE};
use http::{HeaderValue, Method, Response, StatusCode};
use sticky_proto::control::{self, RequestError};

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
    match control::request(addr, method, path, Some(token), LIMIT, MAX_ANSWER).await {
        Ok(resp) => pass_through(resp),
        Err(RequestError::Timeout(_)) => unavailable(&format!(
            "the sticky up supervisor at {addr} did not answer within {LIMIT:?}"
        )),
        Err(e) => unavailable(&format!("the sticky up supervisor at {addr}: {e}")),
    }
}

/// The supervisor's answer as it is, JSON unless it says otherwise, not
/// to be cached.
fn pass_through(resp: Response<Bytes>) -> Response<Body> {
    let (head, body) = resp.into_parts();
    let mut out = Response::new(Body::full(body));
    *out.status_mut() = head.status;
    let h = out.headers_mut();
    h.insert(
        CONTENT_TYPE,
        head.headers
            .get(CONTENT_TYPE)
            .cloned()
            .unwrap_or(HeaderValue::from_static("application/json")),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    out
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
