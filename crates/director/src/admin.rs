//! The admin listener: JSON API, dashboard, Prometheus metrics.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the live dashboard (HTML, polls `/api/cluster` every second and `/api/history` every two) |
//! | `GET /api/cluster` | [`ClusterStatus`](crate::ClusterStatus) as JSON |
//! | `GET /api/history` | [`History`](crate::History): the last 15 minutes' samples and events, as JSON |
//! | `POST /api/servers/{name}/drain` | no new clients for `name` (drain, evacuate and enable are passed to every peer director: `peers.rs`) |
//! | `POST /api/servers/{name}/evacuate` | every client of `name` moves away |
//! | `POST /api/servers/{name}/enable` | back to normal (after an evacuation: once fenced) |
//! | `POST /api/reload` | re-reads the server list and, with TLS, the certificate and key (a bad new certificate is refused: `400`, the old one stays) |
//! | `GET /api/processes` | the `sticky up` supervisor's process list (404 without `[director] supervisor`) |
//! | `POST /api/processes/{name}/{kill,pause,resume,restart}` | the supervisor acts on that process |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | `ok`: the director itself is alive |
//!
//! The listener binds loopback by default: reach it through a firewall or
//! SSH. Two rules keep web pages in an operator's browser from driving it
//! (see `docs/director.md`, "Operations"):
//!
//! - **Host.** Every request must name the listener in `Host`: its own
//!   address forms (`localhost:PORT`, `127.0.0.1:PORT`, `[::1]:PORT`, the
//!   bound address) or one of `[director] admin_hosts`. A page that
//!   rebinds its own name to 127.0.0.1 (DNS rebinding) sends its own name:
//!   `403`.
//! - **Token.** Every request other than `GET` and `HEAD` (`POST`, `PUT`,
//!   `DELETE`, ...) must carry `Authorization: Bearer TOKEN`: `[director]
//!   admin_token`, or else the admin token derived from the cluster
//!   secret; `401` otherwise. A cross-origin page cannot send that header
//!   without a CORS preflight, which this listener never grants, and does
//!   not know the token. The dashboard (served here, readable only by a
//!   same-origin page) embeds the derived token; a configured
//!   `admin_token` it asks the operator for instead.
//!
//! A `POST` carrying an `Origin` that does not match its `Host` is also
//! refused, as before.

use std::net::SocketAddr;
use std::sync::Arc;

use http::header::{AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use sticky_proto::control::ProcessAction;

use crate::body::Body;
use crate::history::EventKind;
use crate::state::State;
use crate::status::AdminState;
use crate::DirectorError;

const DASHBOARD: &str = include_str!("dashboard.html");

/// On an admin state change's answer: the peer directors it could not be
/// passed to (comma-separated names).
const PEERS_FAILED: &str = "sticky-peers-failed";

/// Where the dashboard's script learns the token (`null`: it asks).
const TOKEN_SLOT: &str = "/*STICKY_ADMIN_TOKEN*/null";

/// Who may use the admin listener: the `Host` values it answers to and
/// the token state-changing requests must carry.
pub(crate) struct Access {
    /// Lower-case.
    hosts: Vec<String>,
    token: String,
    /// The dashboard, with the token embedded unless it was configured.
    dashboard: String,
}

impl Access {
    /// The rules for an admin listener bound to `local`.
    pub(crate) fn new(shared: &State, local: SocketAddr) -> Self {
        let port = local.port();
        let mut hosts = vec![
            format!("localhost:{port}"),
            format!("127.0.0.1:{port}"),
            format!("[::1]:{port}"),
            local.to_string(),
        ];
        hosts.extend(
            shared
                .config
                .admin_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase()),
        );
        let (token, dashboard) = match &shared.config.admin_token {
            Some(t) => (t.clone(), DASHBOARD.to_owned()),
            None => {
                // Hex: nothing to escape inside the script.
                let t = sticky_proto::control::admin_token(shared.config.secret());
                let dashboard = DASHBOARD.replacen(TOKEN_SLOT, &format!("\"{t}\""), 1);
                (t, dashboard)
            }
        };
        Self {
            hosts,
            token,
            dashboard,
        }
    }

    fn host_allowed<B>(&self, req: &Request<B>) -> bool {
        let mut values = req.headers().get_all(HOST).iter();
        let (Some(host), None) = (values.next(), values.next()) else {
            return false;
        };
        self.hosts
            .iter()
            .any(|h| h.as_bytes().eq_ignore_ascii_case(host.as_bytes()))
    }

    fn token_ok<B>(&self, req: &Request<B>) -> bool {
        let mut values = req.headers().get_all(AUTHORIZATION).iter();
        match (values.next(), values.next()) {
            (Some(v), None) => sticky_proto::control::authorized(Some(v.as_bytes()), &self.token),
            _ => false,
        }
    }
}

/// Answers one admin request.
pub(crate) async fn handle(
    shared: Arc<State>,
    access: &Access,
    req: Request<Incoming>,
) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if !access.host_allowed(&req) {
        return json_error(
            StatusCode::FORBIDDEN,
            "Host is not a name of this admin listener: add it to [director] admin_hosts",
        );
    }
    // GET and HEAD change nothing; every other method may.
    if method != Method::GET && method != Method::HEAD {
        if !same_origin(&req) {
            return json_error(StatusCode::FORBIDDEN, "cross-origin request refused");
        }
        if !access.token_ok(&req) {
            let mut resp = json_error(
                StatusCode::UNAUTHORIZED,
                "this request needs Authorization: Bearer <admin token>",
            );
            resp.headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return resp;
        }
    }
    let passed = req.headers().contains_key(crate::peers::PASSED_HEADER);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, [""]) => html(access.dashboard.clone()),
        (&Method::GET, ["api", "cluster"]) => json(StatusCode::OK, &shared.status()),
        (&Method::GET, ["api", "history"]) => json(StatusCode::OK, &shared.history.snapshot()),
        (&Method::GET, ["metrics"]) => {
            let mut resp = Response::new(Body::full(crate::metrics::render(&shared)));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        (&Method::GET, ["healthz"]) => crate::forward::text_response(StatusCode::OK, "ok\n"),
        (&Method::POST, ["api", "servers", name, action]) => {
            let state = match *action {
                "drain" => AdminState::Draining,
                "evacuate" => AdminState::Evacuating,
                "enable" => AdminState::Enabled,
                _ => {
                    return json_error(
                        StatusCode::NOT_FOUND,
                        "unknown action: use drain, evacuate or enable",
                    )
                }
            };
            match shared.set_admin(name, state) {
                Ok(status) => {
                    // Asked here first: every other director too.
                    let failed = if passed || shared.config.peers.is_empty() {
                        Vec::new()
                    } else {
                        crate::peers::pass_on(&shared, &path, &access.token).await
                    };
                    let mut resp = json(StatusCode::OK, &status);
                    if let Ok(v) = HeaderValue::from_str(&failed.join(",")) {
                        if !failed.is_empty() {
                            resp.headers_mut().insert(PEERS_FAILED, v);
                        }
                    }
                    resp
                }
                Err(e @ DirectorError::UnknownServer(_)) => {
                    json_error(StatusCode::NOT_FOUND, &e.to_string())
                }
                Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            }
        }
        (&Method::GET, ["api", "processes"]) => {
            processes(&shared, Method::GET, "/api/processes".into()).await
        }
        (&Method::POST, ["api", "processes", name, action]) => {
            if !crate::supervisor::valid_name(name) || action.parse::<ProcessAction>().is_err() {
                return json_error(
                    StatusCode::NOT_FOUND,
                    "unknown process or action: use kill, pause, resume or restart",
                );
            }
            let path = format!("/api/processes/{name}/{action}");
            let resp = processes(&shared, Method::POST, path).await;
            if resp.status().is_success() {
                shared.history.event(
                    EventKind::Process,
                    name,
                    format!("{action}: done by the sticky up supervisor (asked on the admin API)"),
                );
            }
            resp
        }
        (&Method::POST, ["api", "reload"]) => {
            // The certificate first: a bad one is refused (the old one
            // stays) whatever becomes of the server list, and both say so.
            let tls = shared.reload_tls();
            let servers = if shared.has_reloader() || shared.tls.is_none() {
                shared.reload().map(Some)
            } else {
                Ok(None)
            };
            match (tls, servers) {
                (Ok(tls_reloaded), Ok(summary)) => {
                    let mut summary = summary.unwrap_or_default();
                    summary.tls_reloaded = tls_reloaded;
                    if summary.servers == 0 {
                        summary.servers = shared.backends().len();
                    }
                    json(StatusCode::OK, &summary)
                }
                (tls, servers) => {
                    let errors: Vec<String> = [tls.err(), servers.err()]
                        .into_iter()
                        .flatten()
                        .map(|e| e.to_string())
                        .collect();
                    let message = errors.join("; ");
                    tracing::warn!(error = %message, "reload requested over the admin API failed");
                    json_error(StatusCode::BAD_REQUEST, &message)
                }
            }
        }
        (
            _,
            [""]
            | ["api", "cluster"]
            | ["api", "history"]
            | ["metrics"]
            | ["healthz"]
            | ["api", "reload"]
            | ["api", "processes"],
        )
        | (_, ["api", "servers" | "processes", _, _]) => {
            json_error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => json_error(StatusCode::NOT_FOUND, "not found"),
    }
}

/// Forwards a control request to the `sticky up` supervisor, if there is one.
async fn processes(shared: &State, method: Method, path: String) -> Response<Body> {
    match shared.config.supervisor {
        Some(addr) => crate::supervisor::forward(addr, &shared.token, method, &path).await,
        None => json_error(
            StatusCode::NOT_FOUND,
            "no supervisor: this cluster was not started by `sticky up`",
        ),
    }
}

/// False when the request carries an `Origin` whose host differs from the
/// `Host` it was sent to.
fn same_origin(req: &Request<Incoming>) -> bool {
    let Some(origin) = req.headers().get(ORIGIN) else {
        return true;
    };
    let host = req.headers().get(HOST).map(HeaderValue::as_bytes);
    let origin = origin.as_bytes();
    let origin_host = origin
        .strip_prefix(b"http://")
        .or_else(|| origin.strip_prefix(b"https://"));
    matches!((origin_host, host), (Some(o), Some(h)) if o.eq_ignore_ascii_case(h))
}

fn html(page: String) -> Response<Body> {
    let mut resp = Response::new(Body::full(page));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(value) {
        Ok(mut bytes) => {
            bytes.push(b'\n');
            let mut resp = Response::new(Body::full(bytes));
            *resp.status_mut() = status;
            let h = resp.headers_mut();
            h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot serialize an admin answer");
            crate::forward::text_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "serialization failed\n",
            )
        }
    }
}

fn json_error(status: StatusCode, message: &str) -> Response<Body> {
    #[derive(Serialize)]
    struct Error<'a> {
        error: &'a str,
    }
    json(status, &Error { error: message })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Everything the dashboard shows comes from the cluster (names,
    /// errors, event messages): it is put in with `textContent` and
    /// attributes, never parsed as HTML.
    #[test]
    fn the_dashboard_never_parses_cluster_text_as_html() {
        for sink in [
            "innerHTML",
            "outerHTML",
            "insertAdjacentHTML",
            "document.write",
            "DOMParser",
            "createContextualFragment",
            "eval(",
            "new Function",
        ] {
            assert!(!DASHBOARD.contains(sink), "the dashboard uses {sink}");
        }
        assert!(DASHBOARD.contains("textContent"));
    }

    /// The page works offline: nothing is loaded from elsewhere.
    #[test]
    fn the_dashboard_loads_nothing_from_elsewhere() {
        for external in ["<script src", "<link", "@import", "https://", "//cdn"] {
            assert!(
                !DASHBOARD.contains(external),
                "the dashboard loads {external}"
            );
        }
        assert_eq!(DASHBOARD.matches(TOKEN_SLOT).count(), 1, "one token slot");
        assert!(DASHBOARD.contains("/api/history"));
    }
}
