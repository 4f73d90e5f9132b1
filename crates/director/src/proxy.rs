//! The public side: one function per request, from the client's request to
//! the web server's response (or the director's own 404, 502, 503, 504).
//!
//! Per request: reserved paths are refused; a missing or repeated `Host`,
//! or one that contradicts an absolute-form target, gets `400` (RFC 9112
//! section 3.2); hop-by-hop headers, `Expect` and the client's `sticky-*`
//! headers are removed; `X-Forwarded-For`, `-Proto` (`https` over TLS)
//! and `-Host` are set (replacing whatever the client sent: the director is the edge; only a
//! peer in `trusted_proxies` has its own kept, its `X-Forwarded-For`
//! appended to); the routing table picks a server; the request is
//! sent on a pooled connection and the response streamed back, with a
//! route cookie when the client is new or moved. An HTTP/2 request (over
//! TLS) gets `Host` from `:authority` and its `Cookie` fields joined, and
//! goes to the web server as HTTP/1.1; HTTPS responses carry
//! `Strict-Transport-Security` when configured. WebSocket (and other
//! `Upgrade`) requests become a tunnel after the server's `101`.
//!
//! The rules it shares with the fast path live in `forward.rs`.
//!
//! An HTTP/2 request with no body, or a body of declared length up to the
//! fast path's limit (read whole first), is handed once readied to
//! `raw_forward.rs`, which sends it on the fast path's raw connections
//! instead of hyper's client (unless `fast_path` is off); everything below
//! is about the requests that stay here.
//!
//! Retries: a refused connection marks the server down at once and the
//! request goes to the failover target (it never reached the dead server,
//! so this holds for every method, body included). A pooled connection
//! found closed before the request went out is replaced. Any other failure
//! is retried (at most [`MAX_RETRIES`](crate::forward::MAX_RETRIES) times, each on a new connection, so a
//! server dying mid-request is soon found refusing and routed around) only
//! for idempotent requests without a body; otherwise the client gets `502` (or `504` after the
//! response timeout).
//!
//! A request body that fails while it is read from the client (a malformed
//! chunk, a connection closed mid-body) is the client's fault: `400`, the
//! connection closed, and the web server neither counted against nor its
//! idle connections dropped.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, EXPECT, HOST, SET_COOKIE, UPGRADE,
};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

use crate::backend::ActiveGuard;
use crate::body::{Body, UpstreamBody};
use crate::fast_path::MAX_BODY;
use crate::forward::{
    self, is_hop_by_hop, is_idempotent, is_reserved, unanswered, Answer, Attempts, Finish, Relayed,
    STICKY_OWNER,
};
use crate::io::{Activity, ActivityIo};
use crate::pool::{Conn, RequestBody};
use crate::raw_forward;
use crate::route_cookie::RequestCookies;
use crate::state::State;

static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
static HTTP: HeaderValue = HeaderValue::from_static("http");
static HTTPS: HeaderValue = HeaderValue::from_static("https");

/// One request's handling, as hyper's servers take it: a pointer to the
/// boxed future. hyper's HTTP/2 server runs each stream as a tokio task
/// holding this, and the task's future is moved whole several times as it
/// is spawned and as it finishes; boxed, those moves copy a pointer.
///
/// [`handle`] readies the request before any future exists and boxes the
/// one future that answers it (the raw path's or hyper's client's) with
/// nothing around it. Each `async` layer costs a copy of the layer below
/// it when it starts (rustc writes a callee's future and then moves it into
/// its caller's); three layers of ~2.5 KB did, until session 17. Under
/// `valgrind --tool=callgrind --cache-sim=yes` (`CACHESIM=N bash
/// bench/director.sh`) boxing cut the director's L1 write misses per
/// HTTP/2 request from 600 to 350, and dropping the layers (figures in
/// `docs/benchmarks.md`, session 17) cut them further.
pub(crate) struct Handling(Pin<Box<dyn Future<Output = Response<Body>> + Send>>);

impl Future for Handling {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().0.as_mut().poll(cx).map(Ok)
    }
}

/// Answers one client request (`tls`: it came over the TLS listener).
pub(crate) fn handle(
    shared: &Arc<State>,
    peer: SocketAddr,
    forwarded_for: &HeaderValue,
    trusted: bool,
    tls: bool,
    req: Request<Incoming>,
) -> Handling {
    let finish = Finish {
        tls,
        started: Instant::now(),
    };
    shared.stats.requests.fetch_add(1, Ordering::Relaxed);
    let shared = Arc::clone(shared);
    match ready(&shared, forwarded_for, trusted, tls, req) {
        Err(answer) => {
            let resp = finish.answer(&shared, answer.response(&shared));
            Handling(Box::pin(std::future::ready(resp)))
        }
        Ok(Readied::Raw(parts, incoming)) => Handling(Box::pin(raw_forward::forward(
            shared, peer, parts, incoming, finish,
        ))),
        Ok(Readied::Hyper(parts, incoming, client_upgrade)) => Handling(Box::pin(proxy(
            shared,
            peer,
            parts,
            incoming,
            client_upgrade,
            finish,
        ))),
    }
}

/// A request readied for its web server, and the path it takes there.
enum Readied {
    /// HTTP/2 with no body or a small one of declared length: forwarded
    /// on a raw connection, without hyper's client (`raw_forward.rs`).
    Raw(http::request::Parts, Incoming),
    /// Everything else, on hyper's client; with the client's side of an
    /// upgrade, if it asked for one.
    Hyper(http::request::Parts, Incoming, Option<OnUpgrade>),
}

/// Checks and readies a request, or the answer refusing it.
fn ready(
    shared: &State,
    forwarded_for: &HeaderValue,
    trusted: bool,
    tls: bool,
    req: Request<Incoming>,
) -> Result<Readied, Answer> {
    if is_reserved(req.uri().path()) {
        shared
            .stats
            .reserved_rejected
            .fetch_add(1, Ordering::Relaxed);
        return Err(Answer::NotFound);
    }
    if req.method() == Method::CONNECT {
        return Err(Answer::ConnectNotAllowed);
    }
    if !host_is_sound(&req) {
        return Err(Answer::BadHost);
    }
    let (mut parts, incoming) = req.into_parts();
    if parts.version == http::Version::HTTP_2 {
        from_h2(&mut parts);
    }
    // Seen before every `sticky-*` header is dropped.
    if !shared.relay_peers.is_empty()
        && parts
            .headers
            .contains_key(sticky_proto::control::RELAYED_HEADER)
    {
        parts.extensions.insert(Relayed);
    }
    let upgrade = upgrade_protocol(&parts.headers);
    let client_upgrade = match upgrade {
        Some(_) => parts.extensions.remove::<OnUpgrade>(),
        None => None,
    };
    let proto = if tls { &HTTPS } else { &HTTP };
    prepare_request_headers(
        &mut parts.headers,
        forwarded_for.clone(),
        trusted,
        proto,
        upgrade,
    );
    if parts.version == http::Version::HTTP_2 && client_upgrade.is_none() && shared.config.fast_path
    {
        let small = incoming.is_end_stream()
            || incoming
                .size_hint()
                .exact()
                .is_some_and(|n| n <= MAX_BODY as u64);
        if small {
            return Ok(Readied::Raw(parts, incoming));
        }
    }
    Ok(Readied::Hyper(parts, incoming, client_upgrade))
}

/// Sends a readied request through hyper's client and answers the client.
async fn proxy(
    shared: Arc<State>,
    peer: SocketAddr,
    mut parts: http::request::Parts,
    incoming: Incoming,
    client_upgrade: Option<OnUpgrade>,
    finish: Finish,
) -> Response<Body> {
    let shared = &shared;
    let uri = origin_form(&parts.uri);
    let bodiless = incoming.is_end_stream();
    let replayable = bodiless && is_idempotent(&parts.method);
    let body_failed = Arc::new(AtomicBool::new(false));
    let mut body = Some(if bodiless {
        RequestBody::Empty
    } else {
        RequestBody::Request(incoming, Arc::clone(&body_failed))
    });

    let config = &shared.config;
    let stats = &shared.stats;
    let mut attempts = Attempts::new(shared);
    if parts.extensions.get::<Relayed>().is_some() {
        attempts.came_relayed();
    }
    let resp = loop {
        let cookies =
            RequestCookies::find(&parts.headers, &config.route_cookie, &config.session_cookie);
        let (backend, set_cookie) = match attempts.next(shared, &cookies, peer.ip()) {
            Ok(next) => next,
            Err(answer) => break answer.response(shared),
        };
        let active = ActiveGuard::new(Arc::clone(&backend));
        // Before connecting: a mark-down from here on ends the wait.
        let downs = active.downs();
        let connecting = if attempts.take_fresh(&backend) {
            backend.pool().connect(attempts.connect_limit()).await
        } else {
            backend.pool().get(attempts.connect_limit()).await
        };
        let mut conn = match connecting {
            Ok(conn) => conn,
            Err(e) => match attempts.connect_failed(shared, &backend, e) {
                Ok(()) => continue,
                Err(failure) => break failure.response(shared),
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
        // The fencing token (the server refuses the request if it fenced
        // itself since it reported that epoch), and the others.
        attempts
            .control_headers(shared, &backend)
            .insert(upstream.headers_mut());
        backend.requests.fetch_add(1, Ordering::Relaxed);

        let abort = conn.abort_handle();
        let sent = backend
            .answer(
                downs,
                config.response_timeout,
                conn.sender.try_send_request(upstream),
            )
            .await;
        let refused = match &sent {
            Ok(Ok(resp)) => forward::Refusal::of(resp.headers()),
            _ => None,
        };
        match sent {
            Ok(Ok(_)) if refused.is_some() => {
                // The server refused the request untouched. Fenced (its
                // cache is gone) after the epoch this request carried:
                // still routable here, it fenced on its own (we moved none
                // of its sessions), so it is sent the request again with
                // the new epoch; otherwise (marked down while the request
                // was on its way) like a refused connection: the client
                // goes to the failover target. Shutting down: marked down,
                // the client goes to the failover target. Either way only
                // if the body is unspent.
                if let Some(refusal) = refused {
                    forward::refused_untouched(shared, &backend, refusal);
                }
                conn.abort();
                if !bodiless {
                    break Answer::Unavailable.response(shared);
                }
                if let Err(answer) = attempts.rerouted(shared) {
                    break answer.response(shared);
                }
                body = Some(RequestBody::Empty);
                continue;
            }
            Ok(Ok(resp))
                if resp.status() == StatusCode::MISDIRECTED_REQUEST
                    && resp.headers().contains_key(&STICKY_OWNER) =>
            {
                // Another server holds the session's live lease; this one
                // processed nothing. Re-sent there once, if the body is
                // unspent (a streamed body is gone: 503 with the owner's
                // route cookie, so the client's retry goes there).
                let owner = resp
                    .headers()
                    .get(&STICKY_OWNER)
                    .map(|v| v.as_bytes().to_vec())
                    .unwrap_or_default();
                conn.abort();
                if !bodiless {
                    break attempts.misdirected_spent(shared, &backend, &owner);
                }
                if let Err(answer) = attempts.misdirected(shared, &backend, &owner) {
                    break answer.response(shared);
                }
                body = Some(RequestBody::Empty);
                continue;
            }
            Ok(Ok(resp)) => {
                attempts.answered(shared);
                let set_cookie = set_cookie.then(|| backend.set_cookie.clone());
                break respond(shared, resp, conn, active, set_cookie, client_upgrade);
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
                if body_failed.load(Ordering::Relaxed) {
                    // The client's body broke off (a malformed chunk, a
                    // connection closed mid-body): its fault, so the web
                    // server is not counted against, nor its pool emptied.
                    tracing::debug!(server = %backend.name, error = %error, "client's request body failed");
                    conn.abort();
                    let mut resp = Answer::BadBody.response(shared);
                    resp.headers_mut()
                        .insert(CONNECTION, HeaderValue::from_static("close"));
                    break resp;
                }
                stats.upstream_send_failed.fetch_add(1, Ordering::Relaxed);
                backend.errors.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(server = %backend.name, error = %error, replayable, "request to web server failed");
                // Its other idle connections are likely dead too.
                backend.clear_pools();
                if attempts.retry(shared, replayable) {
                    body = Some(RequestBody::Empty);
                    continue;
                }
                break Answer::BadGateway.response(shared);
            }
            Err(why) => {
                abort.abort();
                break unanswered(shared, &backend, why).response(shared);
            }
        }
    };
    finish.answer(shared, resp)
}

/// RFC 9112 section 3.2: an HTTP/1.1 request has a `Host`; no request
/// has two; and with an absolute-form target, the `Host` (if any) names
/// the same authority (ignoring letter case). False answers `400`.
fn host_is_sound<B>(req: &Request<B>) -> bool {
    let mut hosts = req.headers().get_all(HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return false;
    }
    match (req.uri().authority(), host) {
        (Some(authority), Some(host)) => authority
            .as_str()
            .as_bytes()
            .eq_ignore_ascii_case(host.as_bytes()),
        (None, Some(_)) => true,
        // HTTP/2 names the host in `:authority` (RFC 9113 section 8.3.1).
        (Some(_), None) if req.version() == http::Version::HTTP_2 => true,
        (_, None) => req.version() < http::Version::HTTP_11,
    }
}

/// An HTTP/2 request readied for an HTTP/1.1 web server: `Host` from
/// `:authority` when absent, and the `Cookie` fields HTTP/2 may split
/// joined into one (RFC 9113 section 8.2.3).
fn from_h2(parts: &mut http::request::Parts) {
    if !parts.headers.contains_key(HOST) {
        if let Some(value) = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        {
            parts.headers.insert(HOST, value);
        }
    }
    let mut cookies = parts.headers.get_all(COOKIE).iter();
    if cookies.next().is_some() && cookies.next().is_some() {
        let joined: Vec<&[u8]> = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        if let Ok(value) = HeaderValue::from_bytes(&joined.join(&b"; "[..])) {
            parts.headers.insert(COOKIE, value);
        }
    }
}

/// Turns the web server's response into the client's.
fn respond(
    shared: &Arc<State>,
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
        parts.headers.remove(&STICKY_OWNER);
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
    parts.headers.remove(&STICKY_OWNER);
    if let Some(c) = set_cookie {
        parts.headers.append(SET_COOKIE, c);
    }
    Response::from_parts(
        parts,
        Body::Response(Box::new(UpstreamBody::new(incoming, conn, active))),
    )
}

/// Copies bytes both ways between the client and the web server after a
/// `101`, until either side closes or nothing moves for the idle timeout.
async fn tunnel(shared: Arc<State>, client: OnUpgrade, upstream: OnUpgrade, active: ActiveGuard) {
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
            // As HAProxy's `on-marked-down shutdown-sessions`: the client
            // reconnects, and is routed where its session moves.
            () = active.marked_down() => {
                tracing::debug!(server = %active.backend().name, "web server marked down: tunnel closed");
                break;
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

/// Readies a client's headers for the web server. From a `trusted` proxy
/// the `X-Forwarded-*` headers it sent are kept, the peer's address
/// appended to `X-Forwarded-For`; from anyone else they are replaced.
fn prepare_request_headers(
    h: &mut HeaderMap,
    forwarded_for: HeaderValue,
    trusted: bool,
    proto: &HeaderValue,
    upgrade: Option<HeaderValue>,
) {
    remove_hop_by_hop(h, true);
    let chain = if trusted {
        let sent: Vec<&[u8]> = h
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        if sent.is_empty() {
            None
        } else {
            let mut chain = sent.join(&b", "[..]);
            chain.extend_from_slice(b", ");
            chain.extend_from_slice(forwarded_for.as_bytes());
            HeaderValue::from_bytes(&chain).ok()
        }
    } else {
        None
    };
    h.insert(X_FORWARDED_FOR.clone(), chain.unwrap_or(forwarded_for));
    if !(trusted && h.contains_key(&X_FORWARDED_PROTO)) {
        h.insert(X_FORWARDED_PROTO.clone(), proto.clone());
    }
    if !(trusted && h.contains_key(&X_FORWARDED_HOST)) {
        match h.get(HOST).cloned() {
            Some(host) => {
                h.insert(X_FORWARDED_HOST.clone(), host);
            }
            None => {
                h.remove(&X_FORWARDED_HOST);
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use http::header::TE;

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
        prepare_request_headers(&mut h, forwarded_for(peer), false, &HTTP, None);
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
            false,
            &HTTPS,
            up,
        );
        assert_eq!(
            h.get("x-forwarded-proto").map(|v| v.as_bytes()),
            Some(&b"https"[..]),
            "over TLS the web server is told https"
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
    fn http2_requests_get_host_and_one_cookie_field() {
        let req = Request::builder()
            .version(http::Version::HTTP_2)
            .uri("https://shop.example:8443/cart")
            .header(COOKIE, "sticky.route=a")
            .header(COOKIE, "sticky.sid=b")
            .body(())
            .unwrap_or_default();
        assert!(host_is_sound(&req), ":authority stands for Host in HTTP/2");
        let (mut parts, ()) = req.into_parts();
        from_h2(&mut parts);
        assert_eq!(
            parts.headers.get(HOST).map(|v| v.as_bytes()),
            Some(&b"shop.example:8443"[..])
        );
        let cookies: Vec<&[u8]> = parts
            .headers
            .get_all(COOKIE)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        assert_eq!(cookies, [&b"sticky.route=a; sticky.sid=b"[..]]);
        let h1 = Request::builder()
            .uri("https://shop.example/")
            .body(())
            .unwrap_or_default();
        assert!(!host_is_sound(&h1), "HTTP/1.1 still needs Host");
    }

    #[test]
    fn absolute_form_becomes_origin_form() {
        let u: Uri = "http://shop.example/cart?x=1".parse().unwrap_or_default();
        assert_eq!(origin_form(&u), "/cart?x=1");
        let u: Uri = "/a?b".parse().unwrap_or_default();
        assert_eq!(origin_form(&u), "/a?b");
    }
}
