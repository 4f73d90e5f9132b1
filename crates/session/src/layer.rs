//! axum/tower integration: [`SessionLayer`] opens each request's session
//! before the handler and saves it after; the [`Session`] extractor hands
//! it to handlers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::response::{IntoResponse, Response};
use http::header::{COOKIE, RETRY_AFTER, SET_COOKIE};
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use tower::{Layer, Service};

use crate::error::SessionError;
use crate::open::Source;
use crate::session::{CookieUpdate, Session};
use crate::state::SessionManager;
use sticky_proto::control::{
    EPOCH_HEADER, FENCED_HEADER, MOVED_FROM_HEADER, OWNER_HEADER, STOPPING_HEADER,
};

/// Longest `sticky-moved-from` value taken (`name@epoch`; server names are
/// short): a longer one is ignored.
const MAX_MOVED_FROM: usize = 256;

/// Adds a [`Session`] to every request of the routes it wraps.
#[derive(Debug, Clone)]
pub struct SessionLayer {
    manager: SessionManager,
}

impl SessionLayer {
    /// A layer over `manager`'s sessions.
    pub fn new(manager: SessionManager) -> Self {
        Self { manager }
    }
}

impl<S> Layer<S> for SessionLayer {
    type Service = SessionService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        SessionService {
            inner,
            manager: self.manager.clone(),
        }
    }
}

/// The service [`SessionLayer`] wraps routes in.
#[derive(Debug, Clone)]
pub struct SessionService<S> {
    inner: S,
    manager: SessionManager,
}

impl IntoResponse for SessionError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let SessionError::Fenced { epoch } = self {
            tracing::info!(
                epoch,
                "refused a request routed before this server fenced itself"
            );
            let mut resp = (status, format!("session error: {self}\n")).into_response();
            resp.headers_mut()
                .insert(FENCED_HEADER, HeaderValue::from(epoch));
            return resp;
        }
        if let SessionError::Stopping = self {
            // Logged once by the manager when it started stopping; this
            // answer is expected for every request until the exit.
            let mut resp = (status, format!("session error: {self}\n")).into_response();
            resp.headers_mut()
                .insert(STOPPING_HEADER, HeaderValue::from_static("1"));
            return resp;
        }
        if let SessionError::Misdirected { owner } = &self {
            let mut resp = (status, format!("session error: {self}\n")).into_response();
            if let Ok(v) = HeaderValue::from_str(owner) {
                resp.headers_mut().insert(OWNER_HEADER, v);
            }
            return resp;
        }
        if let SessionError::RateLimited { retry_after_secs } = self {
            let mut resp = (status, format!("session error: {self}\n")).into_response();
            resp.headers_mut()
                .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            return resp;
        }
        if status.is_server_error() && !matches!(self, SessionError::Full(_)) {
            // (A refused new session is logged, rate-limited, by admission.)
            tracing::warn!(error = %self, "session error");
        }
        (status, format!("session error: {self}\n")).into_response()
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(crate) fn cookie_value<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"'))
}

fn set_cookie(manager: &SessionManager, headers: &mut HeaderMap, update: &CookieUpdate, tls: bool) {
    if *update == CookieUpdate::Keep {
        // Most answers: nothing to build.
        return;
    }
    let c = manager.config();
    let mut attrs = format!("; Path={}; HttpOnly; SameSite=Lax", c.cookie_path);
    if let Some(d) = &c.cookie_domain {
        attrs.push_str("; Domain=");
        attrs.push_str(d);
    }
    if c.cookie_secure || tls {
        attrs.push_str("; Secure");
    }
    let text = match update {
        CookieUpdate::Keep => return,
        CookieUpdate::Set(v) => format!("{}={v}{attrs}", c.cookie_name),
        CookieUpdate::Remove => format!("{}=; Max-Age=0{attrs}", c.cookie_name),
    };
    match HeaderValue::from_str(&text) {
        Ok(v) => {
            headers.append(SET_COOKIE, v);
        }
        Err(_) => tracing::error!("session cookie attributes are not a valid header value; check cookie_path/cookie_domain"),
    }
}

impl<S> Service<Request<Body>> for SessionService<S>
where
    S: Service<Request<Body>, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<Body>) -> Self::Future {
        // The clone is not ready; the ready one handles this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let manager = self.manager.clone();
        Box::pin(async move {
            let tls = req
                .headers()
                .get("x-forwarded-proto")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
            // The cookie is read in place (no copy): the headers are only
            // borrowed until the session is open.
            let opened = {
                let headers = req.headers();
                let cookie = cookie_value(headers, &manager.config().cookie_name);
                let routed_epoch = headers
                    .get(EPOCH_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                let moved_from = headers
                    .get(MOVED_FROM_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .filter(|v| v.len() <= MAX_MOVED_FROM);
                manager
                    .load_routed_moved(cookie, routed_epoch, moved_from)
                    .await
            };
            let session = match opened {
                Ok(s) => s,
                Err(e) => return Ok(e.into_response()),
            };
            if session.source() == Source::New {
                // Counted against its client address if it gets stored.
                // Without `ConnectInfo` (not served with
                // `into_make_service_with_connect_info`) the address is
                // unknown and only the caps apply.
                if let Some(ConnectInfo(peer)) =
                    req.extensions().get::<ConnectInfo<std::net::SocketAddr>>()
                {
                    session.set_client_addr(manager.client_address(peer.ip(), req.headers()));
                }
            }
            req.extensions_mut().insert(session.clone());
            let mut response = inner.call(req).await?;
            match manager.save(&session).await {
                Ok(update) => set_cookie(&manager, response.headers_mut(), &update, tls),
                Err(e) => return Ok(e.into_response()),
            }
            Ok(response)
        })
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Session {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        _state: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Session>().cloned().ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "the Session extractor needs the SessionLayer: add .layer(SessionLayer::new(manager)) to the router",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_named_cookie_among_many() {
        let mut h = HeaderMap::new();
        h.append(COOKIE, HeaderValue::from_static("a=1; sticky.sid=abc.def"));
        h.append(COOKIE, HeaderValue::from_static("sticky.sid=second"));
        assert_eq!(cookie_value(&h, "sticky.sid"), Some("abc.def"));
        assert_eq!(cookie_value(&h, "a"), Some("1"));
        assert_eq!(cookie_value(&h, "missing"), None);
    }
}
