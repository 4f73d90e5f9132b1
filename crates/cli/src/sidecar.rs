//! `sticky web --app URL`: the web server as a sidecar in line in front of
//! an app in any language on the same machine (`docs/sidecar.md`).
//!
//! The session library does all the session work, exactly as for the
//! bundled demo: [`SessionLayer`] opens the request's session (cache hit,
//! takeover or new; fencing, admission, forged cookies) and holds its lock
//! until it has saved the changes and set the cookie. Between the two, this
//! module forwards the request to the app with the session in a header and
//! applies the app's answer headers to the session:
//!
//! - to the app: `sticky-session` (base64url of the session's JSON
//!   object), `sticky-session-source` (`new`, `cache`, `store`),
//!   `sticky-session-stamp` (the stamp now) and `sticky-session-next-stamp`
//!   (the stamp once changed), and on every request `sticky-session-server`
//!   (this server's name);
//! - from the app: `sticky-session-set` (base64url of the new JSON object:
//!   replaces the data) and `sticky-session-action` (`rotate`: a new id, as
//!   at login; `destroy`: as at logout).
//!
//! Every `sticky-session*` header a client sends is removed before the app
//! sees the request, and every one the app sends is removed before the
//! client sees the answer. The answer's headers arrive before its body, so
//! the session is committed then and the body streams through afterwards.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use axum::Router;
use base64::Engine;
use http::header::{
    HeaderName, CONNECTION, CONTENT_TYPE, EXPECT, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, HeaderValue, Request, StatusCode, Uri};
use serde_json::{Map, Value};
use sticky_session::{Session, SessionLayer, SessionManager};
use tower::{Layer, ServiceExt};

/// The session's data, to the app.
pub(crate) const SESSION: &str = "sticky-session";
/// Where the session was found, to the app.
pub(crate) const SOURCE: &str = "sticky-session-source";
/// The session's stamp now, to the app.
pub(crate) const STAMP: &str = "sticky-session-stamp";
/// The session's stamp once this request changes it, to the app.
pub(crate) const NEXT_STAMP: &str = "sticky-session-next-stamp";
/// This web server's name, to the app (on every request).
pub(crate) const SERVER: &str = "sticky-session-server";
/// The new data, from the app.
pub(crate) const SET: &str = "sticky-session-set";
/// `rotate` or `destroy`, from the app.
pub(crate) const ACTION: &str = "sticky-session-action";
/// The prefix of every header of this interface.
const PREFIX: &str = "sticky-session";

/// Default largest session JSON the app may set, in bytes: its base64url
/// form (4/3 of it) stays within the header limits of the usual servers
/// once raised a little (`docs/sidecar.md`).
pub(crate) const DEFAULT_MAX_SESSION: usize = 32 << 10;

/// Answers of the app up to this length (`Content-Length`) are read whole
/// before they are passed on; longer or unframed ones stream.
const SMALL_ANSWER: usize = 64 << 10;

/// Base64url without padding out; padding accepted in.
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Settings of the sidecar.
#[derive(Debug, Clone)]
pub(crate) struct SidecarConfig {
    /// The app's base URL, `http://HOST:PORT`.
    pub(crate) app: String,
    /// Paths that get a session (by prefix); empty: all.
    pub(crate) session_prefixes: Vec<String>,
    /// Largest session JSON the app may set, in bytes (also capped by the
    /// library's `max_size`).
    pub(crate) max_session: usize,
    /// How long the app may take to send its answer's headers.
    pub(crate) app_timeout: Duration,
}

mod app_conn;

use app_conn::{AppClient, Framing, Target};

struct Sidecar {
    client: AppClient,
    /// The app's address as given, for logs and answers.
    shown: String,
    server: HeaderValue,
    prefixes: Vec<String>,
    max_session: usize,
    timeout: Duration,
}

/// Where the app listens (`--app`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AppAddr {
    /// `http://HOST:PORT`: the base URL, no trailing slash.
    Tcp(String),
    /// `unix:/PATH`: a Unix socket.
    Unix(std::path::PathBuf),
}

/// Checks `--app`: an `http://` URL with a host and port and no path, or
/// `unix:` and the absolute path of a Unix socket.
pub(crate) fn app_addr(url: &str) -> anyhow::Result<AppAddr> {
    if let Some(path) = url.strip_prefix("unix:") {
        // `unix:/run/app.sock` and `unix:///run/app.sock` alike.
        let path = path.strip_prefix("//").unwrap_or(path);
        if !path.starts_with('/') {
            bail!("--app {url:?}: give the socket's absolute path, as unix:/run/app.sock");
        }
        return Ok(AppAddr::Unix(path.into()));
    }
    app_base(url).map(AppAddr::Tcp)
}

/// Checks an `http://` `--app`: a host and port and no path.
fn app_base(url: &str) -> anyhow::Result<String> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("--app {url:?} is not a URL"))?;
    if uri.scheme_str() != Some("http") {
        bail!(
            "--app {url:?}: give http://HOST:PORT or unix:/PATH (the app runs on the same machine)"
        );
    }
    let Some(authority) = uri.authority() else {
        bail!("--app {url:?} names no host");
    };
    if uri.path() != "/" && !uri.path().is_empty() {
        bail!("--app {url:?}: give the app's address only, without a path");
    }
    Ok(format!("http://{authority}"))
}

/// The routes of a sidecar web server: every request goes to the app,
/// those under the session prefixes through the [`SessionLayer`].
pub(crate) fn routes(manager: &SessionManager, config: SidecarConfig) -> anyhow::Result<Router> {
    let target = match app_addr(&config.app)? {
        AppAddr::Tcp(base) => Target::Tcp(base.trim_start_matches("http://").to_owned()),
        AppAddr::Unix(path) => Target::Unix(path),
    };
    let library_max = manager.config().max_size;
    let max_session = config.max_session.min(library_max).max(2);
    // Room for the largest session the app may set, base64url-encoded, and
    // the rest of its headers.
    let client = AppClient::new(target, (max_session / 3 * 4 + 64 * 1024).max(64 * 1024));
    let server = HeaderValue::from_str(&manager.config().server_name)
        .context("the server name is not a valid header value")?;
    let sidecar = Arc::new(Sidecar {
        client,
        shown: config.app.clone(),
        server,
        prefixes: config.session_prefixes,
        max_session,
        timeout: config.app_timeout,
    });
    let to_app = {
        let sidecar = sidecar.clone();
        tower::service_fn(move |req: Request<Body>| {
            let sidecar = sidecar.clone();
            async move { Ok::<_, Infallible>(sidecar.forward(req).await) }
        })
    };
    let with_session = SessionLayer::new(manager.clone()).layer(to_app.clone());
    let dispatch = tower::service_fn(move |req: Request<Body>| {
        let with_session = with_session.clone();
        let to_app = to_app.clone();
        let sessioned = sidecar.sessioned(req.uri().path());
        async move {
            if sessioned {
                with_session.oneshot(req).await
            } else {
                to_app.oneshot(req).await
            }
        }
    });
    Ok(Router::new().fallback_service(dispatch))
}

/// A plain-text answer of the sidecar itself.
fn refuse(status: StatusCode, msg: &str) -> Response {
    let mut r = (status, format!("sticky sidecar: {msg}\n")).into_response();
    r.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Removes every header of this interface.
fn strip_session_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|n| n.as_str().starts_with(PREFIX))
        .cloned()
        .collect();
    for n in names {
        headers.remove(n);
    }
}

/// Removes the hop-by-hop headers (RFC 9110 §7.6.1), those `Connection`
/// names included.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for n in [CONNECTION, TE, TRAILER, TRANSFER_ENCODING, UPGRADE] {
        headers.remove(n);
    }
    for n in ["keep-alive", "proxy-connection"] {
        headers.remove(n);
    }
}

/// The one value of header `name`: `Ok(None)` if absent, `Err` if sent more
/// than once or not text.
fn single<'h>(headers: &'h HeaderMap, name: &str) -> Result<Option<&'h str>, String> {
    let mut all = headers.get_all(name).iter();
    let Some(first) = all.next() else {
        return Ok(None);
    };
    if all.next().is_some() {
        return Err(format!("the app sent {name} more than once"));
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| format!("the app's {name} is not text"))
}

/// What the app asked for in its answer's headers.
struct Changes {
    data: Option<Map<String, Value>>,
    action: Option<Action>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Rotate,
    Destroy,
}

/// Why the app's answer cannot be applied.
enum Bad {
    /// Larger than the limit: 413, nothing stored.
    TooLarge(usize),
    /// Malformed: 502.
    Invalid(String),
}

impl Sidecar {
    fn sessioned(&self, path: &str) -> bool {
        self.prefixes.is_empty() || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }

    /// Reads the app's session headers.
    fn changes(&self, headers: &HeaderMap) -> Result<Changes, Bad> {
        let data = match single(headers, SET).map_err(Bad::Invalid)? {
            None => None,
            Some(text) => {
                let text = text.trim().trim_end_matches('=');
                // 4 characters carry 3 bytes.
                if text.len() / 4 * 3 > self.max_session {
                    return Err(Bad::TooLarge(text.len() / 4 * 3));
                }
                let json = B64
                    .decode(text)
                    .map_err(|_| Bad::Invalid(format!("the app's {SET} is not base64url")))?;
                if json.len() > self.max_session {
                    return Err(Bad::TooLarge(json.len()));
                }
                let map: Map<String, Value> = serde_json::from_slice(&json)
                    .map_err(|_| Bad::Invalid(format!("the app's {SET} is not a JSON object")))?;
                Some(map)
            }
        };
        let action = match single(headers, ACTION).map_err(Bad::Invalid)? {
            None => None,
            Some(a) if a.trim().eq_ignore_ascii_case("rotate") => Some(Action::Rotate),
            Some(a) if a.trim().eq_ignore_ascii_case("destroy") => Some(Action::Destroy),
            Some(_) => {
                return Err(Bad::Invalid(format!(
                    "the app's {ACTION} is neither rotate nor destroy"
                )))
            }
        };
        Ok(Changes { data, action })
    }

    /// Sends `req` to the app, with its session if it has one, and applies
    /// the session changes of the answer (saved by the layer afterwards).
    async fn forward(&self, mut req: Request<Body>) -> Response {
        let session = req.extensions_mut().remove::<Session>();
        let headers = req.headers_mut();
        strip_session_headers(headers);
        strip_hop_by_hop(headers);
        // The body follows the head at once: the client's `Expect` is
        // answered by the server side when the body is read.
        headers.remove(EXPECT);
        // The interface's headers go into the request head as it is
        // written: no header map entries, no copies of the session.
        let server = self.server.as_bytes();
        let session_head = match &session {
            None => None,
            Some(s) => {
                // Unchanged since its last save (always, here): a slice of
                // the stored copy, not serialized again.
                let Ok(json) = s.data_json() else {
                    return refuse(StatusCode::INTERNAL_SERVER_ERROR, "unreadable session");
                };
                // Stamps are digits and a dot: always a valid value.
                let stamps = (s.stamp().to_string(), s.next_stamp().to_string());
                Some((json, s.source().as_str(), stamps))
            }
        };
        let extra_len = 160
            + session_head
                .as_ref()
                .map_or(0, |(json, _, _)| json.len() / 3 * 4 + 4);
        let extra = |head: &mut Vec<u8>| {
            app_conn::put_header(head, SERVER, server);
            if let Some((json, source, (stamp, next))) = &session_head {
                head.extend_from_slice(SESSION.as_bytes());
                head.extend_from_slice(b": ");
                let start = head.len();
                head.resize(start + json.len() / 3 * 4 + 4, 0);
                // Sized for it: 4 characters per 3 bytes, rounded up.
                let written = B64.encode_slice(json, &mut head[start..]).unwrap_or(0);
                head.truncate(start + written);
                head.extend_from_slice(b"\r\n");
                app_conn::put_header(head, SOURCE, source.as_bytes());
                app_conn::put_header(head, STAMP, stamp.as_bytes());
                app_conn::put_header(head, NEXT_STAMP, next.as_bytes());
            }
        };
        let answer = match tokio::time::timeout(
            self.timeout,
            self.client.send(req, extra_len, extra),
        )
        .await
        {
            Err(_) => {
                tracing::warn!(app = %self.shown, timeout = ?self.timeout, "the app did not answer in time");
                return refuse(
                    StatusCode::GATEWAY_TIMEOUT,
                    &format!("the app did not answer within {:?}", self.timeout),
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(app = %self.shown, error = %e, "the app is not answering");
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    &format!("the app at {} is not answering", self.shown),
                );
            }
            Ok(Ok(a)) => a,
        };
        // A small answer with a length is read whole before anything is
        // applied, so its head and body leave in one write (Waitress, for
        // one, writes them apart) and a body the app fails to finish
        // changes no session. Others stream.
        let small = matches!(answer.framing, Framing::Length(n) if n <= SMALL_ANSWER as u64);
        let (mut parts, body) = if small {
            match tokio::time::timeout(self.timeout, answer.read_whole()).await {
                Ok(Ok((parts, whole))) => (parts, Body::from(whole)),
                Ok(Err(e)) => {
                    tracing::warn!(app = %self.shown, error = %e, "the app's answer broke off");
                    return refuse(
                        StatusCode::BAD_GATEWAY,
                        "the app's answer broke off; nothing was stored",
                    );
                }
                Err(_) => {
                    tracing::warn!(app = %self.shown, timeout = ?self.timeout, "the app did not finish its answer in time");
                    return refuse(
                        StatusCode::GATEWAY_TIMEOUT,
                        &format!(
                            "the app did not finish its answer within {:?}; nothing was stored",
                            self.timeout
                        ),
                    );
                }
            }
        } else {
            answer.into_streaming()
        };
        let changes = match self.changes(&parts.headers) {
            Ok(c) => c,
            Err(Bad::TooLarge(size)) => {
                return refuse(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    &format!(
                        "the session would be {size} bytes, over the limit of {}; nothing was stored",
                        self.max_session
                    ),
                );
            }
            Err(Bad::Invalid(msg)) => {
                tracing::warn!(app = %self.shown, "{msg}");
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    &format!("{msg}; nothing was stored"),
                );
            }
        };
        strip_session_headers(&mut parts.headers);
        strip_hop_by_hop(&mut parts.headers);
        match &session {
            None if changes.data.is_some() || changes.action.is_some() => {
                tracing::warn!(app = %self.shown, "the app changed a session on a path outside --session-prefix");
                return refuse(
                    StatusCode::BAD_GATEWAY,
                    "the app changed a session on a path that has none (see --session-prefix); nothing was stored",
                );
            }
            None => {}
            Some(s) => {
                if let Some(data) = changes.data {
                    // Only a real change makes a new version.
                    if data != s.data() {
                        s.clear();
                        for (k, v) in data {
                            s.insert_value(&k, v);
                        }
                    }
                }
                match changes.action {
                    Some(Action::Rotate) => s.cycle_id(),
                    Some(Action::Destroy) => s.destroy(),
                    None => {}
                }
            }
        }
        Response::from_parts(parts, body)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn the_app_url_is_an_http_address_without_a_path() {
        assert_eq!(
            app_base("http://127.0.0.1:3000").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert_eq!(
            app_base("http://127.0.0.1:3000/").unwrap(),
            "http://127.0.0.1:3000"
        );
        assert!(app_base("https://127.0.0.1:3000").is_err());
        assert!(app_base("http://127.0.0.1:3000/app").is_err());
        assert!(app_base("127.0.0.1:3000").is_err());
        assert_eq!(
            app_addr("http://127.0.0.1:3000").unwrap(),
            AppAddr::Tcp("http://127.0.0.1:3000".into())
        );
        for unix in ["unix:/run/app.sock", "unix:///run/app.sock"] {
            assert_eq!(
                app_addr(unix).unwrap(),
                AppAddr::Unix("/run/app.sock".into())
            );
        }
        assert!(app_addr("unix:app.sock").is_err(), "a relative path");
        assert!(app_addr("unix:").is_err());
    }

    #[test]
    fn strips_every_session_header_and_hop_by_hop_headers() {
        let mut h = HeaderMap::new();
        h.insert("sticky-session", HeaderValue::from_static("e30"));
        h.insert("sticky-session-set", HeaderValue::from_static("e30"));
        h.insert("sticky-sessionx", HeaderValue::from_static("1"));
        h.insert("connection", HeaderValue::from_static("close, x-private"));
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_session_headers(&mut h);
        strip_hop_by_hop(&mut h);
        let left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        assert_eq!(left, ["x-kept"]);
    }

    fn sidecar(max_session: usize) -> Sidecar {
        Sidecar {
            client: AppClient::new(Target::Tcp("127.0.0.1:1".into()), 64 << 10),
            shown: "http://127.0.0.1:1".into(),
            server: HeaderValue::from_static("ws1"),
            prefixes: vec!["/api/".into()],
            max_session,
            timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn reads_the_apps_changes_and_refuses_bad_or_large_ones() {
        let s = sidecar(64);
        let mut h = HeaderMap::new();
        let set = B64.encode(br#"{"counter":3}"#);
        h.insert(SET, HeaderValue::from_str(&set).unwrap());
        h.insert(ACTION, HeaderValue::from_static("rotate"));
        let c = s.changes(&h).ok().unwrap();
        assert_eq!(c.data.unwrap()["counter"], 3);
        assert_eq!(c.action, Some(Action::Rotate));
        // Padded base64url is accepted too.
        h.insert(SET, HeaderValue::from_static("e30="));
        assert!(s.changes(&h).ok().unwrap().data.unwrap().is_empty());

        h.insert(SET, HeaderValue::from_static("WzFd")); // [1]
        assert!(matches!(s.changes(&h), Err(Bad::Invalid(_))));
        h.insert(SET, HeaderValue::from_static("not base64!"));
        assert!(matches!(s.changes(&h), Err(Bad::Invalid(_))));
        let big = B64.encode(format!(r#"{{"note":"{}"}}"#, "x".repeat(100)));
        h.insert(SET, HeaderValue::from_str(&big).unwrap());
        assert!(matches!(s.changes(&h), Err(Bad::TooLarge(_))));
        h.remove(SET);
        h.insert(ACTION, HeaderValue::from_static("explode"));
        assert!(matches!(s.changes(&h), Err(Bad::Invalid(_))));
        h.append(ACTION, HeaderValue::from_static("rotate"));
        assert!(matches!(s.changes(&h), Err(Bad::Invalid(_))));
    }

    #[test]
    fn sessions_only_under_the_prefixes_or_everywhere_without_any() {
        let mut s = sidecar(64);
        assert!(s.sessioned("/api/cart"));
        assert!(!s.sessioned("/"));
        s.prefixes.clear();
        assert!(s.sessioned("/"));
    }
}
