//! The control endpoints under `/.sticky/` (see `docs/protocol.md`):
//! health, fence, adopt (a dead server's sessions), and Prometheus metrics. Each answers
//! only with the admin token.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use metrics_exporter_prometheus::PrometheusHandle;
use sticky_proto::control::{AdoptRequest, ADOPT_PATH, FENCE_PATH, HEALTH_PATH};

use crate::state::SessionManager;

#[derive(Clone)]
struct Ctl {
    manager: SessionManager,
    metrics: Option<PrometheusHandle>,
}

fn denied() -> Response {
    (StatusCode::UNAUTHORIZED, "admin token required\n").into_response()
}

fn authorized(ctl: &Ctl, headers: &HeaderMap) -> bool {
    ctl.manager.authorized(
        headers
            .get(http::header::AUTHORIZATION)
            .map(|v| v.as_bytes()),
    )
}

async fn health(State(ctl): State<Ctl>, headers: HeaderMap) -> Response {
    if !authorized(&ctl, &headers) {
        return denied();
    }
    Json(ctl.manager.health()).into_response()
}

async fn fence(State(ctl): State<Ctl>, headers: HeaderMap) -> Response {
    if !authorized(&ctl, &headers) {
        return denied();
    }
    ctl.manager.fence("asked by the director");
    Json(ctl.manager.health()).into_response()
}

async fn adopt(State(ctl): State<Ctl>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    if !authorized(&ctl, &headers) {
        return denied();
    }
    let req: AdoptRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return (StatusCode::BAD_REQUEST, format!("bad adopt request: {e}\n")).into_response()
        }
    };
    match ctl.manager.adopt(req) {
        Ok(()) => (StatusCode::ACCEPTED, "adopting\n").into_response(),
        Err(crate::SessionError::Data(m)) => {
            (StatusCode::BAD_REQUEST, format!("bad adopt request: {m}\n")).into_response()
        }
        Err(e) => (e.status(), format!("{e}\n")).into_response(),
    }
}

async fn metrics(State(ctl): State<Ctl>, headers: HeaderMap) -> Response {
    if !authorized(&ctl, &headers) {
        return denied();
    }
    match &ctl.metrics {
        Some(h) => h.render().into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics recorder installed\n").into_response(),
    }
}

impl SessionManager {
    /// The `/.sticky/` control routes. Merge them into the app *outside* the
    /// [`SessionLayer`](crate::SessionLayer), so they never open a session.
    /// `metrics` renders `/.sticky/metrics` when given.
    pub fn control_routes(&self, metrics: Option<PrometheusHandle>) -> Router {
        Router::new()
            .route(HEALTH_PATH, get(health))
            .route(FENCE_PATH, post(fence))
            .route(ADOPT_PATH, post(adopt))
            .route("/.sticky/metrics", get(self::metrics))
            .with_state(Ctl {
                manager: self.clone(),
                metrics,
            })
    }
}
