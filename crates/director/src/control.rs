//! One control request to a web server (`GET /.sticky/health` or `POST
//! /.sticky/fence`) on its health-check connection, and why it failed
//! ([`CheckError`]).

use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, HOST};
use http::{HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Limited};
use sticky_proto::control::HealthReport;
use tokio::time::timeout_at;

use crate::backend::Backend;
use crate::pool::{ConnectError, RequestBody};

/// Largest health or fence answer read.
const MAX_REPORT: usize = 64 << 10;

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CheckError {
    #[error("{0}")]
    Connect(#[from] ConnectError),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    #[error("request failed: {0}")]
    Send(#[source] hyper::Error),
    #[error("answered HTTP {0}")]
    Status(StatusCode),
    #[error("unreadable answer: {0}")]
    Body(String),
    #[error("answer is not a health report: {0}")]
    Json(#[source] serde_json::Error),
    #[error("reports the name {0:?}: another server listens at this address")]
    WrongServer(String),
    /// The server reports that it is shutting down (`stopping`).
    #[error("shutting down")]
    Stopping,
}

/// One control request (`GET /.sticky/health` or `POST /.sticky/fence`)
/// within `limit`. A connection that misses the deadline is closed.
pub(crate) async fn control(
    backend: &Backend,
    token: &HeaderValue,
    method: Method,
    path: &'static str,
    limit: Duration,
) -> Result<HealthReport, CheckError> {
    let deadline = tokio::time::Instant::now() + limit;
    let timed_out = || CheckError::Timeout(limit);
    let mut conn = timeout_at(deadline, backend.health_pool.get(None))
        .await
        .map_err(|_| timed_out())??;
    let abort = conn.abort_handle();
    let build = || {
        let mut req = Request::new(RequestBody::Empty);
        *req.method_mut() = method.clone();
        *req.uri_mut() = http::Uri::from_static(path);
        let h = req.headers_mut();
        h.insert(AUTHORIZATION, token.clone());
        if let Ok(host) = HeaderValue::from_str(&backend.addr.to_string()) {
            h.insert(HOST, host);
        }
        if method == Method::POST {
            h.insert(CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        req
    };
    let exchange = async {
        let resp = match conn.sender.try_send_request(build()).await {
            Ok(resp) => resp,
            Err(mut e) => {
                if e.take_message().is_none() {
                    return Err(CheckError::Send(e.into_error()));
                }
                // The pooled connection was closed before the request
                // went out: one new connection.
                conn = backend.health_pool.connect(None).await?;
                conn.sender
                    .try_send_request(build())
                    .await
                    .map_err(|e| CheckError::Send(e.into_error()))?
            }
        };
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_REPORT)
            .collect()
            .await
            .map_err(|e| CheckError::Body(e.to_string()))?
            .to_bytes();
        Ok::<(StatusCode, Bytes), CheckError>((status, body))
    };
    let (status, body) = match timeout_at(deadline, exchange).await {
        Ok(result) => result?,
        Err(_) => {
            abort.abort();
            return Err(timed_out());
        }
    };
    backend.health_pool.put(conn);
    if status != StatusCode::OK {
        return Err(CheckError::Status(status));
    }
    let report: HealthReport = serde_json::from_slice(&body).map_err(CheckError::Json)?;
    if report.name != backend.name {
        return Err(CheckError::WrongServer(
            report.name.chars().take(64).collect(),
        ));
    }
    Ok(report)
}
