//! The public side: one function per request, from the client's request to
//! the web server's response (or the director's own 404, 502, 503, 504).
//!
//! Per request: reserved paths are refused; hop-by-hop headers, `Expect`
//! and the client's `sticky-*` headers are removed; `X-Forwarded-For`,
//! `-Proto` and `-Host` are set (replacing whatever the client sent: the
//! director is the edge); the routing table picks a server; the request is
//! sent on a pooled connection and the response streamed back, with a
//! route cookie when the client is new or moved. WebSocket (and other
//! `Upgrade`) requests become a tunnel after the server's `101`.
//!
//! Retries: a refused connection marks the server down at once and the
//! request goes to the failover target (it never reached the dead server,
//! so this holds for every method, body included). A pooled connection
//! found closed before the request went out is replaced. Any other failure
//! is retried (at most [`MAX_RETRIES`] times, each on a new connection, so a
//! server dying mid-request is soon found refusing and routed around) only
//! for idempotent requests without a body; otherwise the client gets `502` (or `504` after the
//! response timeout).

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CACHE_CONTROL, CONNECTION, CONTENT_TYPE, EXPECT, HOST,
    RETRY_AFTER, SET_COOKIE, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use sticky_proto::control::RESERVED_PREFIX;

use crate::backend::{ActiveGuard, Backend};
use crate::body::{Body, UpstreamBody};
use crate::director::Shared;
use crate::health::mark_down_now;
use crate::io::{Activity, ActivityIo};
use crate::pool::{Conn, ConnectError, RequestBody};
use crate::route_cookie::RequestCookies;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static STICKY_EPOCH: HeaderName = HeaderName::from_static(sticky_proto::control::EPOCH_HEADER);
static STICKY_FENCED: HeaderName = HeaderName::from_static(sticky_proto::control::FENCED_HEADER);

/// Retries after a failure other than a refused connection (which is
/// always re-routed) or a connection found closed before use.
const MAX_RETRIES: usize = 2;

/// Answers one client request.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    peer: SocketAddr,
    forwarded_for: HeaderValue,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let resp = proxy(&shared, peer, forwarded_for, req).await;
    shared.stats.count_response(resp.status());
    shared.stats.response_time.record(started.elapsed());
    resp
}

/// The director's own answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    NotFound,
    ConnectNotAllowed,
    BadGateway,
    Unavailable,
    ConnectTimeout,
    ResponseTimeout,
}

impl Answer {
    /// Its status and text, counted as a gateway error if it is one.
    pub(crate) fn counted(self, shared: &Shared) -> (StatusCode, &'static str) {
        let (status, text) = match self {
            Answer::NotFound => (StatusCode::NOT_FOUND, "404 Not Found\n"),
            Answer::ConnectNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                "405 Method Not Allowed: this is a reverse proxy, not a forward proxy.\n",
            ),
            Answer::BadGateway => (
                StatusCode::BAD_GATEWAY,
                "502 Bad Gateway: the web server failed while answering. Please retry.\n",
            ),
            Answer::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "503 Service Unavailable: no web server is available right now. Please retry shortly.\n",
            ),
            Answer::ConnectTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "504 Gateway Timeout: the web server did not accept the connection in time.\n",
            ),
            Answer::ResponseTimeout => (
                StatusCode::GATEWAY_TIMEOUT,
                "504 Gateway Timeout: the web server did not answer in time.\n",
            ),
        };
        if status.is_server_error() {
            shared.stats.gateway_errors.fetch_add(1, Ordering::Relaxed);
        }
        (status, text)
    }

    fn response(self, shared: &Shared) -> Response<Body> {
        let (status, text) = self.counted(shared);
        text_response(status, text)
    }
}

/// A short plain-text response.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(Body::full(text));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::SERVICE_UNAVAILABLE {
        h.insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn proxy(
    shared: &Arc<Shared>,
    peer: SocketAddr,
    forwarded_for: HeaderValue,
    req: Request<Incoming>,
) -> Response<Body> {
    if is_reserved(req.uri().path()) {
        shared
            .stats
            .reserved_rejected
            .fetch_add(1, Ordering::Relaxed);
        return Answer::NotFound.response(shared);
    }
    if req.method() == Method::CONNECT {
        return Answer::ConnectNotAllowed.response(shared);
    }
    let (mut parts, incoming) = req.into_parts();
    let upgrade = upgrade_protocol(&parts.headers);
    let client_upgrade = match upgrade {
        Some(_) => parts.extensions.remove::<OnUpgrade>(),
        None => None,
    };
    prepare_request_headers(&mut parts.headers, forwarded_for, upgrade);
    let uri = origin_form(&parts.uri);
    let bodiless = incoming.is_end_stream();
    let replayable = bodiless && is_idempotent(&parts.method);
    let mut body = Some(if bodiless {
        RequestBody::Empty
    } else {
        RequestBody::Request(incoming)
    });

    let config = &shared.config;
    let stats = &shared.stats;
    let mut attempts = Attempts::new(shared);
    loop {
        let cookies =
            RequestCookies::find(&parts.headers, &config.route_cookie, &config.session_cookie);
        let (backend, set_cookie) = match attempts.next(shared, &cookies, peer.ip()) {
            Ok(next) => next,
            Err(answer) => return answer.response(shared),
        };
        let active = ActiveGuard::new(Arc::clone(&backend));
        let connecting = if attempts.take_fresh() {
            backend.pool().connect().await
        } else {
            backend.pool().get().await
        };
        let mut conn = match connecting {
            Ok(conn) => conn,
            Err(e) => match attempts.connect_failed(shared, &backend, e) {
                Ok(()) => continue,
                Err(failure) => return failure.response(shared),
            },
        };

        // Kept for a resend: a bodiless request refused by a fenced server
        // is re-routed whatever its method (it was not processed).
        let headers = if bodiless {
            parts.headers.clone()
        } else {
            std::mem::take(&mut parts.headers)
        };
        let mut upstream = Request::new(body.take().unwrap_or(RequestBody::Empty));
        *upstream.method_mut() = parts.method.clone();
        *upstream.uri_mut() = uri.clone();
        *upstream.headers_mut() = headers;
        // The fencing token: the server refuses the request if it fenced
        // itself since it reported this epoch.
        let epoch = backend.epoch_hint.load(Ordering::Acquire);
        if epoch != 0 {
            upstream
                .headers_mut()
                .insert(STICKY_EPOCH.clone(), HeaderValue::from(epoch));
        }
        backend.requests.fetch_add(1, Ordering::Relaxed);

        let abort = conn.abort_handle();
        let sent = tokio::time::timeout(
            config.response_timeout,
            conn.sender.try_send_request(upstream),
        )
        .await;
        match sent {
            Ok(Ok(resp)) if resp.headers().contains_key(&STICKY_FENCED) => {
                // The server fenced itself (its cache is gone) after the
                // epoch this request carried, and refused it untouched.
                // Still routable here: it fenced on its own (we moved none
                // of its sessions), so it is sent the request again with
                // the new epoch. Otherwise (marked down while the request
                // was on its way) like a refused connection: the client
                // goes to the failover target. Either way only if the
                // body is unspent.
                let epoch = resp
                    .headers()
                    .get(&STICKY_FENCED)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok());
                refused_as_fenced(shared, &backend, epoch);
                if !bodiless {
                    return Answer::Unavailable.response(shared);
                }
                attempts.rerouted(shared);
                body = Some(RequestBody::Empty);
                conn.abort();
                continue;
            }
            Ok(Ok(resp)) => {
                attempts.answered(shared);
                let set_cookie = set_cookie.then(|| backend.set_cookie.clone());
                return respond(shared, resp, conn, active, set_cookie, client_upgrade);
            }
            Ok(Err(mut e)) => {
                if let Some(unsent) = e.take_message() {
                    // The pooled connection closed before the request went
                    // out: nothing reached the server. Same request, new
                    // connection.
                    let (p, b) = unsent.into_parts();
                    parts.headers = p.headers;
                    body = Some(b);
                    attempts.replace_connection();
                    continue;
                }
                let error = e.into_error();
                stats.upstream_send_failed.fetch_add(1, Ordering::Relaxed);
                backend.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(server = %backend.name, error = %error, replayable, "request to web server failed");
                // Its other idle connections are likely dead too.
                backend.clear_pools();
                if attempts.retry(shared, replayable) {
                    body = Some(RequestBody::Empty);
                    continue;
                }
                return Answer::BadGateway.response(shared);
            }
            Err(_elapsed) => {
                abort.abort();
                stats.upstream_timeouts.fetch_add(1, Ordering::Relaxed);
                backend.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(server = %backend.name, timeout = ?config.response_timeout, "web server did not answer in time");
                return Answer::ResponseTimeout.response(shared);
            }
        }
    }
}

/// A web server answered `sticky-fenced` (with its new `epoch`): it
/// fenced itself after the epoch the request carried, and refused the
/// request untouched. If it is still routable (it fenced on its own: we
/// moved none of its sessions), it is routed to with the new epoch;
/// otherwise it is marked down, like a refused connection. The caller
/// re-sends the request if it still can.
pub(crate) fn refused_as_fenced(shared: &Shared, backend: &Arc<Backend>, epoch: Option<u64>) {
    backend.errors.fetch_add(1, Ordering::Relaxed);
    if backend.adopt_epoch(epoch) {
        tracing::info!(
            server = %backend.name,
            epoch,
            "web server fenced itself while up: routing to it with its new epoch"
        );
    } else {
        mark_down_now(
            shared,
            backend,
            "fenced: it refused a request routed for its old epoch",
        );
    }
}

/// The attempts of one request: where it was sent, how often it was
/// retried, and what the client gets if the attempts run out.
pub(crate) struct Attempts {
    /// Bounds the loop: each refused connection marks a server down, so a
    /// request can at most visit every server once, plus a retry and a
    /// replaced stale connection or two.
    max: usize,
    made: usize,
    retries: usize,
    fresh_connection: bool,
    last_failure: Answer,
    /// The server the client's cookie named, if it was routed elsewhere.
    moved_from: Option<Arc<Backend>>,
}

impl Attempts {
    pub(crate) fn new(shared: &Shared) -> Self {
        Self {
            max: shared.table.load().entries.len() + 4,
            made: 0,
            retries: 0,
            fresh_connection: false,
            last_failure: Answer::Unavailable,
            moved_from: None,
        }
    }

    /// The server for the next attempt and whether the client gets a route
    /// cookie; `Err` with the client's answer when the attempts ran out or
    /// no server can take the request.
    pub(crate) fn next(
        &mut self,
        shared: &Shared,
        cookies: &RequestCookies<'_>,
        client: IpAddr,
    ) -> Result<(Arc<Backend>, bool), Answer> {
        self.made += 1;
        if self.made > self.max {
            return Err(self.last_failure);
        }
        let table = shared.table.load();
        let decision = table
            .route(cookies, client, &shared.signer, &shared.rotation)
            .ok_or(Answer::Unavailable)?;
        if let Some(moved) = decision.moved {
            if self.moved_from.is_none() {
                self.moved_from = moved.from.map(|i| Arc::clone(&table.entries[i].backend));
            }
        }
        Ok((
            Arc::clone(&table.entries[decision.index].backend),
            decision.set_cookie,
        ))
    }

    /// Whether this attempt must open a new connection (once asked).
    pub(crate) fn take_fresh(&mut self) -> bool {
        std::mem::take(&mut self.fresh_connection)
    }

    /// Counts a failed connection attempt and decides what follows:
    /// `Ok` to try again, `Err` to give up with that answer. A refused
    /// connection marks the server down at once and is always re-routed;
    /// other failures get [`MAX_RETRIES`] more tries. Either way the
    /// request never reached the server, so this is safe whatever the
    /// method.
    pub(crate) fn connect_failed(
        &mut self,
        shared: &Shared,
        backend: &Arc<Backend>,
        error: ConnectError,
    ) -> Result<(), Answer> {
        let stats = &shared.stats;
        backend.errors.fetch_add(1, Ordering::Relaxed);
        if matches!(error, ConnectError::Refused) {
            stats.upstream_refused.fetch_add(1, Ordering::Relaxed);
            mark_down_now(shared, backend, "connection refused");
            stats.retries.fetch_add(1, Ordering::Relaxed);
            self.last_failure = Answer::Unavailable;
            return Ok(());
        }
        stats
            .upstream_connect_failed
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(server = %backend.name, %error, "cannot connect to web server");
        self.last_failure = match error {
            ConnectError::Timeout(_) => Answer::ConnectTimeout,
            _ => Answer::BadGateway,
        };
        if self.retries < MAX_RETRIES {
            self.retries += 1;
            stats.retries.fetch_add(1, Ordering::Relaxed);
            Ok(())
        } else {
            Err(self.last_failure)
        }
    }

    /// A pooled connection was found closed before the request went out:
    /// the same request goes again on a new connection.
    pub(crate) fn replace_connection(&mut self) {
        self.fresh_connection = true;
        self.last_failure = Answer::BadGateway;
    }

    /// After any other failure of a sent request: true if it may be sent
    /// again on a new connection (idempotent, no body spent, retries
    /// left).
    pub(crate) fn retry(&mut self, shared: &Shared, replayable: bool) -> bool {
        if !replayable || self.retries >= MAX_RETRIES {
            return false;
        }
        self.retries += 1;
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.replace_connection();
        true
    }

    /// The server refused the request untouched (fenced): it is routed
    /// again.
    pub(crate) fn rerouted(&mut self, shared: &Shared) {
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.last_failure = Answer::Unavailable;
    }

    /// A response came: a client moved off its server is a failover.
    pub(crate) fn answered(&self, shared: &Shared) {
        if let Some(from) = &self.moved_from {
            from.failovers.fetch_add(1, Ordering::Relaxed);
            shared.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Turns the web server's response into the client's.
fn respond(
    shared: &Arc<Shared>,
    mut resp: Response<Incoming>,
    conn: Conn,
    active: ActiveGuard,
    set_cookie: Option<HeaderValue>,
    client_upgrade: Option<OnUpgrade>,
) -> Response<Body> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            tracing::debug!(server = %active.backend().name, "web server switched protocols unasked");
            return Answer::BadGateway.response(shared);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        // The connection now belongs to the tunnel; never pooled again.
        drop(conn);
        let (mut parts, _) = resp.into_parts();
        let protocol = parts.headers.get(UPGRADE).cloned();
        remove_hop_by_hop(&mut parts.headers, false);
        if let Some(p) = protocol {
            parts.headers.insert(UPGRADE, p);
        }
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("upgrade"));
        if let Some(c) = set_cookie {
            parts.headers.append(SET_COOKIE, c);
        }
        tokio::spawn(tunnel(
            Arc::clone(shared),
            client_upgrade,
            upstream_upgrade,
            active,
        ));
        return Response::from_parts(parts, Body::Empty);
    }
    let (mut parts, incoming) = resp.into_parts();
    remove_hop_by_hop(&mut parts.headers, false);
    if let Some(c) = set_cookie {
        parts.headers.append(SET_COOKIE, c);
    }
    Response::from_parts(
        parts,
        Body::Response(UpstreamBody::new(incoming, conn, active)),
    )
}

/// Copies bytes both ways between the client and the web server after a
/// `101`, until either side closes or nothing moves for the idle timeout.
async fn tunnel(shared: Arc<Shared>, client: OnUpgrade, upstream: OnUpgrade, active: ActiveGuard) {
    let (client, upstream) = match tokio::try_join!(client, upstream) {
        Ok(both) => both,
        Err(e) => {
            tracing::debug!(server = %active.backend().name, error = %e, "upgrade failed");
            return;
        }
    };
    shared.stats.tunnels.fetch_add(1, Ordering::Relaxed);
    let activity = Activity::new();
    // Wrapping the client side sees traffic in both directions.
    let mut client = ActivityIo::new(TokioIo::new(client), Arc::clone(&activity));
    let mut upstream = TokioIo::new(upstream);
    let idle = shared.config.idle_timeout;
    let copy = tokio::io::copy_bidirectional(&mut client, &mut upstream);
    tokio::pin!(copy);
    loop {
        tokio::select! {
            done = &mut copy => {
                if let Err(e) = done {
                    tracing::debug!(server = %active.backend().name, error = %e, "tunnel closed with an error");
                }
                break;
            }
            () = tokio::time::sleep_until(activity.deadline(idle)) => {
                if tokio::time::Instant::now() >= activity.deadline(idle) {
                    tracing::debug!(server = %active.backend().name, "closing idle tunnel");
                    break;
                }
            }
        }
    }
    shared.stats.tunnels.fetch_sub(1, Ordering::Relaxed);
    drop(active);
}

/// `Some(protocol)` if this is an upgrade request (`Connection: upgrade`
/// and an `Upgrade` header).
fn upgrade_protocol(h: &HeaderMap) -> Option<HeaderValue> {
    let protocol = h.get(UPGRADE)?;
    let asks = h.get_all(CONNECTION).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    asks.then(|| protocol.clone())
}

/// The standard hop-by-hop headers (RFC 9110 section 7.6.1, plus the
/// non-standard `Keep-Alive` and `Proxy-Connection`), in lower case.
const HOP_BY_HOP: [&[u8]; 9] = [
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"te",
    b"trailer",
    b"transfer-encoding",
    b"upgrade",
    b"proxy-authenticate",
    b"proxy-authorization",
];

/// Whether `name` is a standard hop-by-hop header (any letter case).
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    HOP_BY_HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Removes the headers that concern only one hop: the standard ones and
/// those named in `Connection`; for a client's request also `Expect` (the
/// director's connection to the client answers it) and the internal
/// `sticky-*` headers. One pass over the names; nothing is allocated when
/// nothing has to go.
fn remove_hop_by_hop(h: &mut HeaderMap, request: bool) {
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in h.keys() {
        if is_hop_by_hop(name.as_str().as_bytes())
            || (request && (name == EXPECT || name.as_str().starts_with("sticky-")))
        {
            doomed.push(name.clone());
        }
    }
    if doomed.is_empty() {
        return;
    }
    if doomed.contains(&CONNECTION) {
        let listed = h
            .get_all(CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|t| HeaderName::from_bytes(t.trim_ascii()).ok());
        let listed: Vec<HeaderName> = listed.collect();
        doomed.extend(listed);
    }
    for name in doomed {
        h.remove(name);
    }
}

/// The per-connection part of the `X-Forwarded-For` work: the client's
/// address as a header value, computed once per connection.
pub(crate) fn forwarded_for(peer: SocketAddr) -> HeaderValue {
    HeaderValue::from_str(&peer.ip().to_canonical().to_string())
        .unwrap_or(HeaderValue::from_static("unknown"))
}

/// Readies a client's headers for the web server.
fn prepare_request_headers(
    h: &mut HeaderMap,
    forwarded_for: HeaderValue,
    upgrade: Option<HeaderValue>,
) {
    remove_hop_by_hop(h, true);
    h.insert(X_FORWARDED_FOR.clone(), forwarded_for);
    h.insert(X_FORWARDED_PROTO.clone(), HeaderValue::from_static("http"));
    match h.get(HOST).cloned() {
        Some(host) => {
            h.insert(X_FORWARDED_HOST.clone(), host);
        }
        None => {
            h.remove(&X_FORWARDED_HOST);
        }
    }
    if let Some(protocol) = upgrade {
        h.insert(UPGRADE, protocol);
        h.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// The request target as a web server expects it from a proxy: the
/// origin form (`/path?query`), also for clients that sent the absolute
/// form.
fn origin_form(uri: &Uri) -> Uri {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return uri.clone();
    }
    match uri.path_and_query() {
        Some(pq) => Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(pq.as_str().as_bytes()))
            .unwrap_or_else(|_| Uri::from_static("/")),
        None => Uri::from_static("/"),
    }
}

/// RFC 9110's idempotent methods.
pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether `path` reaches the reserved prefix on a web server, however it
/// is spelled: percent-encoding, doubled slashes, backslashes, dot
/// segments, `;` parameters, letter case.
pub(crate) fn is_reserved(path: &str) -> bool {
    let reserved = RESERVED_PREFIX.trim_matches('/').as_bytes(); // ".sticky"
    let b = path.as_bytes();
    // Every spelling of ".sticky" has a '.' or a '%'.
    if !b.iter().any(|&c| c == b'.' || c == b'%') {
        return false;
    }
    let mut decoded = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                decoded.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        decoded.push(b[i]);
        i += 1;
    }
    let mut segments: Vec<&[u8]> = Vec::new();
    for raw in decoded.split(|&c| c == b'/' || c == b'\\') {
        let seg = raw.split(|&c| c == b';').next().unwrap_or_default();
        match seg {
            b"" | b"." => {}
            b".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    segments
        .first()
        .is_some_and(|s| s.eq_ignore_ascii_case(reserved))
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::TE;

    #[test]
    fn reserved_paths_in_every_spelling() {
        for p in [
            "/.sticky/health",
            "/.sticky/fence",
            "/.sticky",
            "/.sticky/",
            "//.sticky/health",
            "/%2Esticky/health",
            "/%2esticky%2fhealth",
            "/a/../.sticky/health",
            "/./.sticky/health",
            "/.STICKY/health",
            "\\.sticky\\health",
            "/.sticky;x=1/health",
        ] {
            assert!(is_reserved(p), "{p} must be reserved");
        }
        for p in [
            "/",
            "/health",
            "/a/.sticky/health",
            "/.stickyx/health",
            "/static/app.js",
            "/%",
            "/%2",
            "/%zz",
            "/.sticky.html",
        ] {
            assert!(!is_reserved(p), "{p} must not be reserved");
        }
    }

    #[test]
    fn request_headers_are_cleaned_and_forwarded_ones_set() {
        let mut h = HeaderMap::new();
        h.insert(HOST, HeaderValue::from_static("shop.example"));
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("sticky-owner", HeaderValue::from_static("forged"));
        h.insert("Sticky-Epoch", HeaderValue::from_static("forged"));
        h.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
        h.insert(EXPECT, HeaderValue::from_static("100-continue"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        let peer = SocketAddr::from(([10, 1, 2, 3], 5555));
        prepare_request_headers(&mut h, forwarded_for(peer), None);
        assert_eq!(
            h.get("x-forwarded-for").map(|v| v.as_bytes()),
            Some(&b"10.1.2.3"[..])
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"http"[..])
        );
        assert_eq!(
            h.get("x-forwarded-host").map(|v| v.as_bytes()),
            Some(&b"shop.example"[..])
        );
        for gone in [
            "connection",
            "x-hop",
            "keep-alive",
            "te",
            "sticky-owner",
            "sticky-epoch",
            "expect",
        ] {
            assert!(!h.contains_key(gone), "{gone} must be removed");
        }
        assert!(h.contains_key("x-app"));
        assert!(h.contains_key(HOST));
    }

    #[test]
    fn upgrades_are_recognised_and_kept() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("keep-alive, Upgrade"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        let up = upgrade_protocol(&h);
        assert_eq!(up.as_ref().map(|v| v.as_bytes()), Some(&b"websocket"[..]));
        prepare_request_headers(
            &mut h,
            forwarded_for(SocketAddr::from(([127, 0, 0, 1], 1))),
            up,
        );
        assert_eq!(
            h.get(UPGRADE).map(|v| v.as_bytes()),
            Some(&b"websocket"[..])
        );
        assert_eq!(
            h.get(CONNECTION).map(|v| v.as_bytes()),
            Some(&b"upgrade"[..])
        );
        let mut plain = HeaderMap::new();
        plain.insert(UPGRADE, HeaderValue::from_static("websocket"));
        assert!(
            upgrade_protocol(&plain).is_none(),
            "Upgrade without Connection: upgrade"
        );
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let u: Uri = "http://shop.example/cart?x=1".parse().unwrap_or_default();
        assert_eq!(origin_form(&u), "/cart?x=1");
        let u: Uri = "/a?b".parse().unwrap_or_default();
        assert_eq!(origin_form(&u), "/a?b");
    }
}
