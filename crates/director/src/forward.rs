//! The rules both request paths obey, the hyper path (`proxy.rs`) and
//! the fast path (`fast_path.rs`): which paths are reserved, which headers
//! are hop-by-hop, which methods may be retried, how a request's attempts
//! are counted and routed ([`Attempts`]: a refused connection re-routed,
//! other failures retried at most [`MAX_RETRIES`] times), what a server
//! that refused a request untouched means ([`refused_untouched`]: fenced,
//! or shutting down), what a
//! `421 Misdirected Request` naming the session's owner means
//! ([`Attempts::misdirected`]: re-sent there once), and the director's own
//! answers ([`Answer`]).

use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{
    HeaderName, HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER, STRICT_TRANSPORT_SECURITY,
};
use http::{Method, Response, StatusCode};
use sticky_proto::control::{FENCED_HEADER, OWNER_HEADER, RESERVED_PREFIX, STOPPING_HEADER};

use crate::backend::{Backend, Unanswered};
use crate::body::Body;
use crate::fencing::adopt_epoch;
use crate::health::{mark_down_now, mark_unreachable};
use crate::pool::ConnectError;
use crate::route_cookie::RequestCookies;
use crate::state::State;
use crate::status::AdminState;
use crate::upstream::UpstreamError;

/// A web server's `421` names the session's owner in this header; it is
/// removed from every response a client gets.
pub(crate) static STICKY_OWNER: HeaderName = HeaderName::from_static(OWNER_HEADER);

/// Retries after a failure other than a refused connection (which is
/// always re-routed) or a connection found closed before use.
pub(crate) const MAX_RETRIES: usize = 2;

/// The headers the director adds to a request for one attempt, on every
/// path: the fencing token, the moved client's hint and, to a peer
/// director, the relay's name.
pub(crate) struct ControlHeaders<'s> {
    /// The epoch the server last reported (0: none yet): it refuses the
    /// request if it fenced itself since
    /// ([`EPOCH_HEADER`](sticky_proto::control::EPOCH_HEADER)).
    pub(crate) epoch: u64,
    /// [`Attempts::moved_from_header`].
    pub(crate) moved_from: Option<String>,
    /// This director's name, to a peer director relayed to
    /// ([`RELAYED_HEADER`](sticky_proto::control::RELAYED_HEADER)).
    pub(crate) relayed_by: Option<&'s str>,
}

impl ControlHeaders<'_> {
    /// Appends them to a request head being written.
    pub(crate) fn write(&self, r: &mut Vec<u8>) {
        use std::io::Write as _;
        use sticky_proto::control::{EPOCH_HEADER, MOVED_FROM_HEADER, RELAYED_HEADER};
        if self.epoch != 0 {
            let _ = write!(r, "{EPOCH_HEADER}: {}\r\n", self.epoch);
        }
        if let Some(from) = &self.moved_from {
            let _ = write!(r, "{MOVED_FROM_HEADER}: {from}\r\n");
        }
        if let Some(name) = self.relayed_by {
            let _ = write!(r, "{RELAYED_HEADER}: {name}\r\n");
        }
    }

    /// Sets them in a request's headers.
    pub(crate) fn insert(&self, h: &mut http::HeaderMap) {
        use sticky_proto::control::{MOVED_FROM_HEADER, RELAYED_HEADER};
        if self.epoch != 0 {
            h.insert(
                crate::fencing::STICKY_EPOCH.clone(),
                HeaderValue::from(self.epoch),
            );
        }
        if let Some(from) = self
            .moved_from
            .as_deref()
            .and_then(|f| HeaderValue::from_str(f).ok())
        {
            h.insert(MOVED_FROM_HEADER, from);
        }
        if let Some(name) = self.relayed_by.and_then(|n| HeaderValue::from_str(n).ok()) {
            h.insert(RELAYED_HEADER, name);
        }
    }
}

/// Marks a request (in its extensions) that came relayed by a peer
/// director ([`sticky_proto::control::RELAYED_HEADER`]): it is not relayed
/// again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Relayed;

/// Why [`Attempts::owner_named`] does not send a request to the owner a
/// `421` named.
enum Unnamed {
    /// It is down, unreachable, fencing or being evacuated here.
    Unroutable(Arc<Backend>),
    Other(&'static str),
}

impl Unnamed {
    fn why(&self) -> &'static str {
        match self {
            Unnamed::Unroutable(_) => "the 421 names a server that is not routable here",
            Unnamed::Other(why) => why,
        }
    }
}

/// How long after a `421` named an unreachable server as a session's live
/// owner its clients are relayed to a peer director without trying a
/// failover server first. Short: a `421` again (one wasted claim a second
/// per director) refreshes it, and an owner that died meanwhile costs its
/// clients one more hop (the peer routes them to their failover server).
const OWNER_SEEN_FOR_MS: u64 = 1_000;

/// Milliseconds since the director started.
fn now_ms(shared: &State) -> u64 {
    u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The director's own answers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Answer {
    /// No `Host` (HTTP/1.1), several, or one that differs from an
    /// absolute-form target's authority (RFC 9112 section 3.2).
    BadHost,
    /// The client's request body was malformed or cut short: the
    /// client's fault, not the web server's.
    BadBody,
    NotFound,
    ConnectNotAllowed,
    BadGateway,
    Unavailable,
    ConnectTimeout,
    ResponseTimeout,
    /// The health checks marked the server down while the request waited
    /// for its answer (`end_requests_on_down`).
    EndedOnDown,
}

impl Answer {
    /// Its status and text, counted as a gateway error if it is one.
    pub(crate) fn counted(self, shared: &State) -> (StatusCode, &'static str) {
        let (status, text) = match self {
            Answer::BadHost => (
                StatusCode::BAD_REQUEST,
                "400 Bad Request: a request needs exactly one Host header, matching an absolute-form target.\n",
            ),
            Answer::BadBody => (
                StatusCode::BAD_REQUEST,
                "400 Bad Request: the request body is malformed or incomplete.\n",
            ),
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
            Answer::EndedOnDown => (
                StatusCode::GATEWAY_TIMEOUT,
                "504 Gateway Timeout: the web server stopped answering its health checks before it answered this request, which it may or may not have processed. Please retry.\n",
            ),
        };
        if status.is_server_error() {
            shared.stats.gateway_errors.fetch_add(1, Ordering::Relaxed);
        }
        (status, text)
    }

    /// The hyper path's response, counted.
    pub(crate) fn response(self, shared: &State) -> Response<Body> {
        let (status, text) = self.counted(shared);
        text_response(status, text)
    }
}

/// The answer to a request its web server did not answer, counted.
pub(crate) fn unanswered(shared: &State, backend: &Backend, why: Unanswered) -> Answer {
    match why {
        Unanswered::TimedOut => {
            backend.errors.fetch_add(1, Ordering::Relaxed);
            shared
                .stats
                .upstream_timeouts
                .fetch_add(1, Ordering::Relaxed);
            tracing::debug!(server = %backend.name, timeout = ?shared.config.response_timeout, "web server did not answer in time");
            Answer::ResponseTimeout
        }
        Unanswered::MarkedDown => {
            backend.count_ended_on_down();
            tracing::debug!(server = %backend.name, "web server marked down before it answered: request ended");
            Answer::EndedOnDown
        }
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

/// A web server's refusal of a request it processed nothing of, which
/// the director may therefore send elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// `sticky-fenced` (with the server's new epoch, if readable): it
    /// fenced itself after the epoch the request carried.
    Fenced(Option<u64>),
    /// `sticky-stopping`: it is shutting down, serves no session any more
    /// and has ended (or is ending) its lease.
    Stopping,
}

impl Refusal {
    /// The refusal a response's headers carry, if any (`sticky-stopping`
    /// first: a stopping server has fenced itself too).
    pub(crate) fn of(headers: &http::HeaderMap) -> Option<Refusal> {
        if headers.contains_key(STOPPING_HEADER) {
            return Some(Refusal::Stopping);
        }
        let fenced = headers.get(FENCED_HEADER)?;
        Some(Refusal::Fenced(
            fenced.to_str().ok().and_then(|v| v.trim().parse().ok()),
        ))
    }
}

/// A web server refused a request untouched ([`Refusal`]). Fenced: if it
/// is still routable (it fenced on its own: we moved none of its
/// sessions), it is routed to with its new epoch; otherwise it is marked
/// down, like a refused connection. Stopping: it is marked down at once,
/// so its clients move to their failover servers now instead of getting
/// its `503`s until the process is gone (its next health check would say
/// so too). The caller re-sends the request if it still can.
pub(crate) fn refused_untouched(shared: &State, backend: &Arc<Backend>, refusal: Refusal) {
    backend.errors.fetch_add(1, Ordering::Relaxed);
    match refusal {
        Refusal::Stopping => mark_down_now(
            shared,
            backend,
            "shutting down: it refused a request untouched",
        ),
        Refusal::Fenced(epoch) if adopt_epoch(backend, epoch) => {
            tracing::info!(
                server = %backend.name,
                epoch,
                "web server fenced itself while up: routing to it with its new epoch"
            );
        }
        Refusal::Fenced(_) => mark_down_now(
            shared,
            backend,
            "fenced: it refused a request routed for its old epoch",
        ),
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
    /// A server answered `421` naming this one as the session's owner:
    /// every further attempt goes there (a new connection to it is fine),
    /// and anything that would route the request elsewhere answers `503`.
    owner: Option<Arc<Backend>>,
    /// Servers this request could not connect to (a timeout or an error
    /// other than a refusal, which marks the server down for everyone):
    /// where the director chooses, its next attempt goes elsewhere
    /// ([`Table::route_avoiding`](crate::routing::Table::route_avoiding)).
    unreachable: Vec<Arc<Backend>>,
    /// The current attempt's connect limit: set when the director chose
    /// its server and could send it elsewhere
    /// ([`Decision::quick_connect`](crate::routing::Decision::quick_connect)).
    connect_limit: Option<Duration>,
    /// The request may still be relayed to a peer director ([`Self::relay`]):
    /// relaying is on, and the request did not come relayed.
    may_relay: bool,
    /// Peer directors the request was relayed to so far.
    relays: usize,
}

impl Attempts {
    pub(crate) fn new(shared: &State) -> Self {
        Self {
            max: shared.table.load().entries.len() + 4,
            made: 0,
            retries: 0,
            fresh_connection: false,
            last_failure: Answer::Unavailable,
            moved_from: None,
            owner: None,
            unreachable: Vec::new(),
            connect_limit: None,
            may_relay: !shared.relay_peers.is_empty(),
            relays: 0,
        }
    }

    /// The request came relayed by a peer director
    /// ([`RELAYED_HEADER`](sticky_proto::control::RELAYED_HEADER)): it is
    /// not relayed again, so a request crosses at most two directors.
    pub(crate) fn came_relayed(&mut self) {
        self.may_relay = false;
    }

    /// The session's owner holds a live lease but cannot be reached from
    /// here (cut from this director only, while the other directors' checks
    /// reach it and so it keeps its sessions): the request goes to a peer
    /// director instead, as the owner — the peers seen answering first,
    /// each at most once. False when there is none (left), relaying is
    /// off, or the request came relayed.
    fn relay(&mut self, shared: &State) -> bool {
        if !self.may_relay {
            return false;
        }
        let peers = &shared.relay_peers;
        let seen_up = |(i, _): &&(usize, Arc<Backend>)| {
            shared
                .peers_seen
                .get(*i)
                .is_some_and(|s| s.load(Ordering::Relaxed) != crate::state::PEER_DOWN)
        };
        let next = peers
            .iter()
            .filter(seen_up)
            .chain(peers.iter().filter(|p| !seen_up(p)))
            .nth(self.relays);
        let Some((_, peer)) = next else {
            return false;
        };
        if self.relays == 0 {
            shared.stats.relayed.fetch_add(1, Ordering::Relaxed);
        }
        self.relays += 1;
        tracing::debug!(peer = %peer.name, "session owner unreachable from here: request relayed to a peer director");
        self.owner = Some(Arc::clone(peer));
        true
    }

    /// The director's own request headers for an attempt to `to`.
    pub(crate) fn control_headers<'s>(
        &self,
        shared: &'s State,
        to: &Backend,
    ) -> ControlHeaders<'s> {
        ControlHeaders {
            epoch: to.epoch_hint.load(Ordering::Acquire),
            moved_from: self.moved_from_header(to),
            relayed_by: to.is_peer().then_some(shared.config.name.as_str()),
        }
    }

    /// The server for the next attempt and whether the client gets a route
    /// cookie; `Err` with the client's answer when the attempts ran out or
    /// no server can take the request.
    pub(crate) fn next(
        &mut self,
        shared: &State,
        cookies: &RequestCookies<'_>,
        client: IpAddr,
    ) -> Result<(Arc<Backend>, bool), Answer> {
        self.made += 1;
        if self.made > self.max {
            return Err(self.last_failure);
        }
        self.connect_limit = None;
        if let Some(owner) = &self.owner {
            // Only the owner may serve the request now. If this director
            // already finds it unreachable (a health check unanswered, or
            // a connect that failed), it gets the quick connect limit: a
            // server that can be reached completes the handshake within
            // it whatever its process is doing (its kernel answers), and
            // one cut off would otherwise hold the client for the whole
            // connect timeout before the same 503.
            // (A peer director relayed to is marked unreachable by a failed
            // connect or look, until its next look answers.)
            if owner.unreachable() {
                self.connect_limit = shared.config.reroute_connect_timeout;
            }
            // The response sets the route cookie to the owner, so the
            // client's next request goes straight there; a peer director
            // relayed to sets its own.
            return Ok((Arc::clone(owner), !owner.is_peer()));
        }
        let table = shared.table.load();
        let decision = table
            .route_avoiding(
                cookies,
                client,
                &shared.signer,
                &shared.rotation,
                &self.unreachable,
            )
            .ok_or(Answer::Unavailable)?;
        if decision.quick_connect {
            self.connect_limit = shared.config.reroute_connect_timeout;
        }
        if let Some(moved) = decision.moved {
            if self.moved_from.is_none() {
                self.moved_from = moved.from.map(|i| Arc::clone(&table.entries[i].backend));
            }
            // The server the client's cookie names was lately named the
            // live owner of a session while unreachable from here: its
            // clients go to a peer director at once, rather than to a
            // failover server whose claim would find its lease live again
            // and answer 421 (a store round trip and a probe per request
            // for as long as the cut lasts). A client whose session is no
            // longer there is sent on by that peer as any other.
            let named = moved.from.is_some_and(|i| {
                table.entries[i]
                    .backend
                    .seen_as_owner_within(now_ms(shared), OWNER_SEEN_FOR_MS)
            });
            if named && self.relay(shared) {
                if let Some(peer) = &self.owner {
                    return Ok((Arc::clone(peer), false));
                }
            }
        }
        Ok((
            Arc::clone(&table.entries[decision.index].backend),
            decision.set_cookie,
        ))
    }

    /// For a client moved off the server its route cookie named, which
    /// this director found down or unreachable, that server's last epoch
    /// as `name@epoch` ([`sticky_proto::control::MOVED_FROM_HEADER`]):
    /// the server taking the session over may end that lease in its
    /// first round (after its own probe proves the process gone).
    fn moved_from_header(&self, to: &Backend) -> Option<String> {
        if to.is_peer() {
            return None;
        }
        let from = self.moved_from.as_ref()?;
        if std::ptr::eq(Arc::as_ptr(from), to) {
            return None;
        }
        let epoch = from.epoch_hint.load(Ordering::Acquire);
        if epoch == 0 || (from.health().routable() && !from.unreachable()) {
            return None;
        }
        Some(format!("{}@{epoch}", from.name))
    }

    /// How long this attempt may take to connect, if less than the
    /// configured connect timeout: another server could take the request.
    pub(crate) fn connect_limit(&self) -> Option<Duration> {
        self.connect_limit
    }

    /// Whether this attempt to `backend` must open a new connection: once
    /// asked ([`Self::replace_connection`]), and always while `backend` is
    /// marked unreachable — a request written to a pooled connection of a
    /// server cut off would wait for an answer that cannot come, where a
    /// new connection fails within the connect limit and the request goes
    /// elsewhere. Likewise always to a peer director relayed to: relays
    /// are rare (a link cut), and a connection pooled by the last one may
    /// have been cut since, nothing marking it.
    pub(crate) fn take_fresh(&mut self, backend: &Backend) -> bool {
        std::mem::take(&mut self.fresh_connection) || backend.unreachable() || backend.is_peer()
    }

    /// Counts a failed connection attempt and decides what follows:
    /// `Ok` to try again, `Err` to give up with that answer. A refused
    /// connection marks the server down at once and is always re-routed;
    /// other failures get [`MAX_RETRIES`] more tries, which pass that
    /// server over (a moved or new client: a standby cut from this
    /// director is not tried again; a client whose cookie names it fails
    /// over, and its new server claims the session or learns the owner
    /// from the stores). Either way
    /// the request never reached the server, so this is safe whatever the
    /// method.
    pub(crate) fn connect_failed(
        &mut self,
        shared: &State,
        backend: &Arc<Backend>,
        error: ConnectError,
    ) -> Result<(), Answer> {
        let stats = &shared.stats;
        backend.errors.fetch_add(1, Ordering::Relaxed);
        if backend.is_peer() {
            // Not a web server: marked unreachable only for the connect
            // limit of the next relays, until a look answers. The next
            // peer, if any.
            backend.mark_unreachable();
            tracing::debug!(peer = %backend.name, %error, "cannot connect to a peer director to relay a request");
            if self.relay(shared) {
                return Ok(());
            }
            stats.relay_failed.fetch_add(1, Ordering::Relaxed);
            self.last_failure = Answer::Unavailable;
            return Err(Answer::Unavailable);
        }
        if matches!(error, ConnectError::Refused) {
            stats.upstream_refused.fetch_add(1, Ordering::Relaxed);
            mark_down_now(shared, backend, "connection refused");
            self.last_failure = Answer::Unavailable;
            if self.owner.is_some() {
                // Not routed elsewhere: only the owner may serve it. (A
                // refused connection means its process is gone: its lease
                // ends with it, and the client's retry claims the session
                // elsewhere; a peer director would find the same.)
                stats
                    .misdirected_unavailable
                    .fetch_add(1, Ordering::Relaxed);
                return Err(Answer::Unavailable);
            }
            stats.retries.fetch_add(1, Ordering::Relaxed);
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
        // Every request passes it over where the director chooses, not only
        // this one, until a health check reaches it again: a standby cut
        // from this director would otherwise cost each moved client a
        // connect timeout until the checks mark it down. And a 421's
        // re-send to it tries it within the quick connect limit.
        if mark_unreachable(
            shared,
            backend,
            &format!("a request could not connect ({error})"),
        ) {
            shared.publish();
        }
        if self.owner.is_some() {
            // The owner a 421 named cannot be reached from here; while its
            // lease is live no other server may take the session. A peer
            // director may reach it: relayed there, else 503.
            if self.relay(shared) {
                backend.seen_as_owner(now_ms(shared));
                return Ok(());
            }
            stats
                .misdirected_unavailable
                .fetch_add(1, Ordering::Relaxed);
            return Err(Answer::Unavailable);
        }
        if self.retries < MAX_RETRIES {
            self.retries += 1;
            stats.retries.fetch_add(1, Ordering::Relaxed);
            if !self.unreachable.iter().any(|b| b.name == backend.name) {
                self.unreachable.push(Arc::clone(backend));
            }
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

    /// A request sent on a pooled connection that the server had closed
    /// (nothing came back): true if it may go again on a new connection
    /// (idempotent, no body spent). A keep-alive race, or a server that
    /// just died, so it does not use up one of [`MAX_RETRIES`]: a dying
    /// server's pooled and fresh connections could otherwise spend them
    /// all before a connection is refused and the request re-routed.
    /// Bounded: the next attempt opens a new connection, and every attempt
    /// counts against the request's most attempts.
    pub(crate) fn retry_after_pooled_close(&mut self, shared: &State, replayable: bool) -> bool {
        if !replayable {
            return false;
        }
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.replace_connection();
        true
    }

    /// An exchange with `backend` on the fast or raw path failed with
    /// `error` (`pooled`: on a connection taken from the pool): counts it,
    /// empties the server's pools unless only that pooled connection was
    /// found closed (its other idle ones are likely dead too), and decides
    /// whether the request goes again on a new connection
    /// ([`Self::retry_after_pooled_close`] or [`Self::retry`]).
    pub(crate) fn after_failed_exchange(
        &mut self,
        shared: &State,
        backend: &Backend,
        error: &UpstreamError,
        pooled: bool,
        replayable: bool,
    ) -> bool {
        shared
            .stats
            .upstream_send_failed
            .fetch_add(1, Ordering::Relaxed);
        backend.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(server = %backend.name, %error, pooled, replayable, "request to web server failed");
        let closed_while_pooled = matches!(error, UpstreamError::ClosedEarly) && pooled;
        if closed_while_pooled {
            self.retry_after_pooled_close(shared, replayable)
        } else {
            backend.clear_pools();
            self.retry(shared, replayable)
        }
    }

    /// After any other failure of a sent request: true if it may be sent
    /// again on a new connection (idempotent, no body spent, retries
    /// left).
    pub(crate) fn retry(&mut self, shared: &State, replayable: bool) -> bool {
        if !replayable || self.retries >= MAX_RETRIES {
            return false;
        }
        self.retries += 1;
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        self.replace_connection();
        true
    }

    /// The server refused the request untouched (fenced): `Ok` to route
    /// it again, `Err` when it must not be: it was sent to the owner a
    /// `421` named (routing would send it back to the server that refused
    /// it).
    pub(crate) fn rerouted(&mut self, shared: &State) -> Result<(), Answer> {
        self.last_failure = Answer::Unavailable;
        if self.owner.is_some() {
            shared
                .stats
                .misdirected_unavailable
                .fetch_add(1, Ordering::Relaxed);
            return Err(Answer::Unavailable);
        }
        shared.stats.retries.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// `from` answered `421 Misdirected Request` naming `owner` (the
    /// value of its `sticky-owner` header) as the server holding the
    /// session's live lease: it processed nothing. `Ok`: the request goes
    /// to `owner` next, once. `Err(503)` when `owner` is unknown, is
    /// `from` itself, is not routable here (down, fencing, evacuating), or
    /// when this is already the owner's answer: never a loop.
    pub(crate) fn misdirected(
        &mut self,
        shared: &State,
        from: &Backend,
        owner: &[u8],
    ) -> Result<(), Answer> {
        let stats = &shared.stats;
        self.last_failure = Answer::Unavailable;
        match self.owner_named(shared, from, owner) {
            Ok(backend) => {
                stats.misdirected_resent.fetch_add(1, Ordering::Relaxed);
                self.owner = Some(backend);
                Ok(())
            }
            // Down or unreachable here, not gone: the owner is alive as
            // far as the stores know. A peer director may reach it.
            Err(Unnamed::Unroutable(owner))
                if owner.admin() != AdminState::Evacuating && self.relay(shared) =>
            {
                owner.seen_as_owner(now_ms(shared));
                stats.misdirected_relayed.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(unnamed) => {
                let why = unnamed.why();
                stats
                    .misdirected_unavailable
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(server = %from.name, why, "misdirected request not re-sent: 503");
                Err(Answer::Unavailable)
            }
        }
    }

    /// The server a `421` from `from` names, if the request may go there.
    fn owner_named(
        &self,
        shared: &State,
        from: &Backend,
        owner: &[u8],
    ) -> Result<Arc<Backend>, Unnamed> {
        if self.owner.is_some() {
            return Err(Unnamed::Other("the owner named by a 421 answered 421 too"));
        }
        let table = shared.table.load();
        let index = table
            .index_of(owner)
            .ok_or(Unnamed::Other("the 421 names an unknown server"))?;
        let entry = &table.entries[index];
        if entry.backend.name == from.name {
            return Err(Unnamed::Other("the 421 names the server that sent it"));
        }
        if !entry.routable {
            return Err(Unnamed::Unroutable(Arc::clone(&entry.backend)));
        }
        Ok(Arc::clone(&entry.backend))
    }

    /// A `421` that cannot be re-sent (its body was streamed and is
    /// spent): counted, and the client gets `503` — with the route cookie
    /// of the owner it names when the request could have gone there, so
    /// that the client's retry goes straight to it.
    pub(crate) fn misdirected_spent(
        &mut self,
        shared: &State,
        from: &Backend,
        owner: &[u8],
    ) -> Response<Body> {
        shared
            .stats
            .misdirected_unavailable
            .fetch_add(1, Ordering::Relaxed);
        let mut resp = Answer::Unavailable.response(shared);
        if let Ok(owner) = self.owner_named(shared, from, owner) {
            resp.headers_mut()
                .append(http::header::SET_COOKIE, owner.set_cookie.clone());
        }
        resp
    }

    /// A response came: a client moved off its server is a failover
    /// (unless a peer director answered it: its owner did not change).
    pub(crate) fn answered(&self, shared: &State) {
        if self.owner.as_ref().is_some_and(|o| o.is_peer()) {
            return;
        }
        if let Some(from) = &self.moved_from {
            from.failovers.fetch_add(1, Ordering::Relaxed);
            shared.stats.failovers.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Whether `peer` is one of the configured trusted proxies, whose
/// `X-Forwarded-*` headers are kept.
pub(crate) fn trusted_proxy(shared: &State, peer: IpAddr) -> bool {
    shared
        .config
        .trusted_proxies
        .iter()
        .any(|net| net.contains(peer))
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

/// RFC 9110's idempotent methods.
pub(crate) fn is_idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

/// Whether the request target (path, with any query or fragment) reaches the
/// reserved prefix on a web server, however it
/// is spelled: percent-encoding, doubled slashes, backslashes, dot
/// segments, `;` parameters, letter case.
pub(crate) fn is_reserved(target: &str) -> bool {
    // The decision is on the path alone: a query or fragment is cut off
    // first, so `/.sticky/health?/../..` stays reserved on both paths.
    let path = target.split(['?', '#']).next().unwrap_or_default();
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

/// What every answer to a client request gets on its way out: HSTS over
/// TLS, and its count and time in the statistics.
pub(crate) struct Finish {
    pub(crate) tls: bool,
    pub(crate) started: Instant,
}

impl Finish {
    pub(crate) fn answer(self, shared: &State, mut resp: Response<Body>) -> Response<Body> {
        if self.tls {
            if let Some(hsts) = &shared.hsts {
                resp.headers_mut()
                    .insert(STRICT_TRANSPORT_SECURITY, hsts.clone());
            }
        }
        shared.stats.count_response(resp.status());
        shared.stats.response_time.record(self.started.elapsed());
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_attempt_on_an_unreachable_server_opens_a_new_connection() {
        let shared = State::for_tests();
        let backend = Arc::clone(&shared.backends()[0]);
        let mut attempts = Attempts::new(&shared);
        assert!(!attempts.take_fresh(&backend), "a pooled one will do");
        attempts.replace_connection();
        assert!(attempts.take_fresh(&backend), "asked once");
        assert!(!attempts.take_fresh(&backend));
        assert!(backend.mark_unreachable());
        assert!(attempts.take_fresh(&backend), "unreachable: a new one");
        assert!(attempts.take_fresh(&backend), "every time");
        assert!(backend.clear_unreachable());
        assert!(!attempts.take_fresh(&backend));
    }

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
            "/.sticky/health?/../..",
            "/.sticky/fence#/../..",
            "/.sticky?",
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
            "/?/.sticky/health",
            "/a#/.sticky",
        ] {
            assert!(!is_reserved(p), "{p} must not be reserved");
        }
    }
}
