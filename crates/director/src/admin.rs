//! The admin listener: JSON API, dashboard, Prometheus metrics.
//!
//! | route | answer |
//! |---|---|
//! | `GET /` | the live dashboard (HTML, polls `/api/cluster` every second) |
//! | `GET /api/cluster` | [`ClusterStatus`](crate::ClusterStatus) as JSON |
//! | `POST /api/servers/{name}/drain` | no new clients for `name` |
//! | `POST /api/servers/{name}/evacuate` | every client of `name` moves away |
//! | `POST /api/servers/{name}/enable` | back to normal (after an evacuation: once fenced) |
//! | `POST /api/reload` | re-reads the server list |
//! | `GET /api/processes` | the `sticky up` supervisor's process list (404 without `[director] supervisor`) |
//! | `POST /api/processes/{name}/{kill,pause,resume,restart}` | the supervisor acts on that process |
//! | `GET /metrics` | Prometheus text format |
//! | `GET /healthz` | `ok`: the director itself is alive |
//!
//! The listener binds loopback by default and has no authentication of its
//! own: reach it through a firewall or SSH. A `POST` carrying an `Origin`
//! header that does not match its `Host` is refused, so a web page open in
//! an operator's browser cannot drive it (cross-site request forgery).

use std::sync::Arc;

use http::header::{CACHE_CONTROL, CONTENT_TYPE, HOST, ORIGIN};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::Serialize;
use sticky_proto::control::ProcessAction;

use crate::body::Body;
use crate::state::State;
use crate::status::AdminState;
use crate::DirectorError;

const DASHBOARD: &str = include_str!("dashboard.html");

/// Answers one admin request.
pub(crate) async fn handle(shared: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    if method == Method::POST && !same_origin(&req) {
        return json_error(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (&method, segments.as_slice()) {
        (&Method::GET, [""]) => html(DASHBOARD),
        (&Method::GET, ["api", "cluster"]) => json(StatusCode::OK, &shared.status()),
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
                Ok(status) => json(StatusCode::OK, &status),
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
            processes(&shared, Method::POST, path).await
        }
        (&Method::POST, ["api", "reload"]) => match shared.reload() {
            Ok(summary) => json(StatusCode::OK, &summary),
            Err(e) => {
                tracing::warn!(error = %e, "reload requested over the admin API failed");
                json_error(StatusCode::BAD_REQUEST, &e.to_string())
            }
        },
        (
            _,
            [""]
            | ["api", "cluster"]
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

fn html(page: &'static str) -> Response<Body> {
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
