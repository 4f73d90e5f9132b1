//! The control endpoints under `/.sticky/` (see `docs/protocol.md`):
//! health, fence, adopt (a dead server's sessions), whether a session is
//! held in memory here (asked by a takeover, `crate::holders`), and
//! Prometheus metrics. Each answers only with the admin token.

use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use sticky_metrics::Handle;
use sticky_proto::control::{
    AdoptRequest, HealthAsker, ADOPT_PATH, FENCE_PATH, HEALTH_PATH, HOLDS_PATH,
};

use crate::id::SessionId;
use crate::state::SessionManager;

#[derive(Clone)]
struct Ctl {
    manager: SessionManager,
    metrics: Option<Handle>,
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

async fn health(State(ctl): State<Ctl>, RawQuery(query): RawQuery, headers: HeaderMap) -> Response {
    if !authorized(&ctl, &headers) {
        return denied();
    }
    match HealthAsker::of_query(query.as_deref()) {
        Some(HealthAsker::Director) => ctl.manager.director_checked(),
        // Before the report: a server that lets its sessions go answers
        // with its new epoch, which proves the old one gone to the prober.
        Some(HealthAsker::Peer) => ctl.manager.probed_by_peer(),
        None => {}
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

async fn holds(State(ctl): State<Ctl>, headers: HeaderMap, Path(key): Path<String>) -> Response {
    if !authorized(&ctl, &headers) {
        return denied();
    }
    match SessionId::from_hex(&key) {
        Some(id) => Json(ctl.manager.holds(&id)).into_response(),
        None => (StatusCode::BAD_REQUEST, "not a session key\n").into_response(),
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

/// The counters without labels the library keeps, registered at zero when
/// a recorder is given, so that each is in the metrics from the start (a
/// dashboard's `rate()` and an alert's `increase()` see 0, not no data).
/// A unit test checks this list against the `counter!` calls in `src/`.
const COUNTERS: [&str; 31] = [
    "sticky_acks_after_lease_total",
    "sticky_adopted_total",
    "sticky_async_copy_failures_total",
    "sticky_cache_hits_total",
    "sticky_claim_retries_total",
    "sticky_claim_timeouts_total",
    "sticky_claims_from_own_copy_total",
    "sticky_claims_held_for_peers_total",
    "sticky_claims_of_gone_owners_total",
    "sticky_claims_released_on_hint_total",
    "sticky_claims_with_forgetful_stores_total",
    "sticky_fences_total",
    "sticky_invalid_cookies_total",
    "sticky_kept_after_failed_writes_total",
    "sticky_lease_renewals_short_total",
    "sticky_misdirected_total",
    "sticky_not_serving_total",
    "sticky_owner_gone_total",
    "sticky_rate_limit_forgotten_total",
    "sticky_reclaimed_total",
    "sticky_released_unreached_total",
    "sticky_recopies_total",
    "sticky_sessions_expired_total",
    "sticky_sessions_not_found_total",
    "sticky_stale_refusals_total",
    "sticky_takeover_no_quorum_total",
    "sticky_takeovers_total",
    "sticky_tombstone_retries_total",
    "sticky_too_large_total",
    "sticky_write_hedges_total",
    "sticky_write_no_quorum_total",
];

/// The gauges the library keeps, registered (at zero unless already set)
/// with [`COUNTERS`].
const GAUGES: [&str; 8] = [
    "sticky_adoption_pending",
    "sticky_reclaim_pending",
    "sticky_recopy_pending",
    "sticky_replication_lag_seconds",
    "sticky_replication_queue",
    "sticky_session_bytes_hosted",
    "sticky_sessions_hosted",
    "sticky_stores_live",
];

impl SessionManager {
    /// The `/.sticky/` control routes. Merge them into the app *outside* the
    /// [`SessionLayer`](crate::SessionLayer), so they never open a session.
    /// `metrics` renders `/.sticky/metrics` when given; the library's
    /// counters are then registered at zero.
    pub fn control_routes(&self, metrics: Option<Handle>) -> Router {
        if metrics.is_some() {
            for name in COUNTERS {
                metrics::counter!(name).increment(0);
            }
            for name in GAUGES {
                // Registering is enough: a gauge already set keeps its value.
                let _ = metrics::gauge!(name);
            }
        }
        Router::new()
            .route(HEALTH_PATH, get(health))
            .route(FENCE_PATH, post(fence))
            .route(ADOPT_PATH, post(adopt))
            .route(&format!("{HOLDS_PATH}/{{key}}"), get(holds))
            .route("/.sticky/metrics", get(self::metrics))
            .with_state(Ctl {
                manager: self.clone(),
                metrics,
            })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeSet;

    /// The names of `kind!("NAME")` calls without labels in the crate's
    /// sources.
    fn unlabeled(kind: &str) -> BTreeSet<String> {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut out = BTreeSet::new();
        let open = format!("{kind}!(\"");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            // rustfmt may break a call after its opening parenthesis.
            let text = text.replace(&format!("{kind}!(\n"), &format!("{kind}!("));
            let text: String = text
                .split(&format!("{kind}!("))
                .enumerate()
                .map(|(i, part)| {
                    if i == 0 {
                        part.to_owned()
                    } else {
                        format!("{kind}!({}", part.trim_start())
                    }
                })
                .collect();
            for part in text.split(&open).skip(1) {
                let Some((name, rest)) = part.split_once('"') else {
                    continue;
                };
                if name.starts_with("sticky_") && rest.trim_start().starts_with(')') {
                    out.insert(name.to_owned());
                }
            }
        }
        out
    }

    #[test]
    fn the_registered_counters_and_gauges_are_the_ones_the_library_keeps() {
        let counters: BTreeSet<String> = super::COUNTERS.iter().map(|s| s.to_string()).collect();
        assert_eq!(counters, unlabeled("counter"));
        let gauges: BTreeSet<String> = super::GAUGES.iter().map(|s| s.to_string()).collect();
        assert_eq!(gauges, unlabeled("gauge"));
    }
}
