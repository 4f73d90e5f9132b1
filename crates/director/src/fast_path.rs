//! The fast path: HTTP/1.1 requests forwarded on raw sockets.
//!
//! Most requests a session-sticky site sees are small: a head with a route
//! cookie, a short body with a `Content-Length` or none, and a response
//! framed by `Content-Length` or chunks. For those, a client connection is
//! served here, in its own task, without hyper: the head is parsed in
//! place with `httparse`, the request is written to a pooled connection to
//! the web server in one system call, the response head is parsed in
//! place, and head and body go back to the client in one system call. No
//! header map, no per-request allocation of its own, no hand-over between
//! tasks. This costs the director about a fifth less CPU per request than
//! the hyper path (`docs/benchmarks.md`). It serves plain TCP clients and
//! clients of the TLS listener that chose HTTP/1.1 (ALPN), through the
//! [`ClientStream`] trait: over TLS, `X-Forwarded-Proto` is `https` and
//! responses carry the configured `Strict-Transport-Security`, as on the
//! hyper path.
//!
//! Everything else is handed to the general path (`proxy.rs`, on hyper)
//! together with the bytes read so far, and the connection stays there:
//! a head that did not arrive in one read (slow clients, slowloris, heads
//! larger than a read), heads with `Transfer-Encoding`, `Upgrade`,
//! `Expect`, `Connection: close` or other `Connection` options, HTTP/1.0,
//! `CONNECT`, absolute-form targets, the reserved path, a missing or
//! repeated `Host`, more than [`MAX_HEADERS`] headers, a body over
//! [`MAX_BODY`] or not yet read whole, and anything `httparse` refuses.
//! So every limit, timeout and error answer of that path applies to them
//! unchanged, and this path only has to be right for the simple case.
//!
//! The request path's rules are `proxy.rs`'s, from `forward.rs`: the same
//! routing, hop-by-hop and internal headers removed, `X-Forwarded-*` set,
//! the fencing token, a refused connection re-routed, other failures
//! retried only for idempotent requests without a body, the same `502`,
//! `503` and `504` answers. Since the body is held whole, a request
//! refused by a fenced server is re-routed even with a body, and one
//! answered `421` naming the session's owner is re-sent there with it —
//! unless the client closed its connection meanwhile: an abandoned
//! request is never sent again.
//!
//! Web servers' responses: `Content-Length` bodies, chunked bodies
//! (forwarded as they are; [`ChunkedScanner`] finds their end), bodies
//! that end with the connection (the client's connection then closes
//! too), interim `1xx` heads dropped. A body longer than one read is
//! passed on as it comes: what was read goes to the client whenever the
//! server has sent nothing more yet (and every [`FLUSH_AT`] bytes), so
//! event streams are not held back; one whose server is marked down
//! while it waits ends there (`end_requests_on_down`). A response with both
//! `Transfer-Encoding` and `Content-Length`, or conflicting lengths, or a
//! malformed chunk, is never passed on as complete: `502` if nothing was
//! sent yet, else the client connection is closed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::backend::{ActiveGuard, Backend, Unanswered};
use crate::chunked::ChunkedScanner;
use crate::forward::{
    is_hop_by_hop, is_idempotent, is_reserved, refused_untouched, unanswered, Answer, Attempts,
    ControlHeaders, Refusal,
};
use crate::pool::Reuse;
use crate::route_cookie::RequestCookies;
use crate::state::State;
use crate::upstream::{Framing, UpstreamError, MAX_RESPONSE_HEAD};

/// Most headers in a request or response handled here.
pub(crate) const MAX_HEADERS: usize = 64;

/// Largest request body handled here (held whole, so it can be re-sent).
pub(crate) const MAX_BODY: usize = 64 << 10;

/// Response bytes gathered before they are written to the client.
const FLUSH_AT: usize = 64 << 10;

/// Bytes asked for in one read.
const READ_SIZE: usize = 16 << 10;

/// Buffers larger than this are freed between requests.
const KEEP_CAPACITY: usize = 2 * READ_SIZE;

/// A client connection the fast path can serve: plain TCP, or TLS over TCP.
pub(crate) trait ClientStream: AsyncRead + AsyncWrite + Unpin + Send {
    /// The client closed its side or the connection failed, as far as
    /// the kernel knows now (never waits).
    fn gone(&self) -> bool;
    /// Whether the connection is TLS (`X-Forwarded-Proto: https`, HSTS).
    const TLS: bool;
}

impl ClientStream for TcpStream {
    fn gone(&self) -> bool {
        socket_closed(self)
    }
    const TLS: bool = false;
}

impl ClientStream for tokio_rustls::server::TlsStream<TcpStream> {
    fn gone(&self) -> bool {
        // Plaintext already decrypted (a pipelined request) means the
        // client is there; otherwise ask the socket under TLS. A TLS
        // close_notify is bytes to the kernel, so a client that closed
        // cleanly counts as gone only once its FIN is in too (it follows
        // at once from every client seen).
        socket_closed(self.get_ref().0)
    }
    const TLS: bool = true;
}

/// How a client connection left the fast path.
pub(crate) enum Outcome {
    /// It is finished (closed by either side, timed out, or shut down).
    Closed,
    /// The rest of it is for the general path, starting with these bytes.
    HandOver(Vec<u8>),
}

/// Serves `client` until it closes or needs the general path.
pub(crate) async fn serve<C: ClientStream>(
    shared: &Arc<State>,
    client: &mut C,
    peer: SocketAddr,
    stop: &mut watch::Receiver<bool>,
) -> Outcome {
    let mut conn = Connection {
        shared,
        proto: if C::TLS { b"https" } else { b"http" },
        hsts: if C::TLS {
            shared.hsts.as_ref().map(|v| v.as_bytes())
        } else {
            None
        },
        peer,
        forwarded_for: peer.ip().to_canonical().to_string(),
        trusted: crate::forward::trusted_proxy(shared, peer.ip()),
        request: Vec::new(),
        response: Vec::new(),
        out: Vec::new(),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(READ_SIZE);
    loop {
        if buf.is_empty() {
            if *stop.borrow() {
                return Outcome::Closed;
            }
            buf.reserve(READ_SIZE);
            let read = tokio::select! {
                read = tokio::time::timeout(shared.config.header_timeout, client.read_buf(&mut buf)) => read,
                _ = stop.wait_for(|stop| *stop) => return Outcome::Closed,
            };
            match read {
                Ok(Ok(n)) if n > 0 => {}
                // Closed, reset, or idle for the header timeout.
                _ => return Outcome::Closed,
            }
        }
        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let Some(req) = parse_request(&buf, &mut headers) else {
            shared.stats.handovers.fetch_add(1, Ordering::Relaxed);
            return Outcome::HandOver(buf);
        };
        let consumed = req.consumed;
        let keep = conn.exchange(client, &req).await;
        drop(req);
        if !keep {
            return Outcome::Closed;
        }
        buf.drain(..consumed);
        conn.trim_buffers();
    }
}

/// A request simple enough for this path, parsed in place.
pub(crate) struct Request<'b> {
    pub(crate) method: Method,
    pub(crate) target: &'b str,
    pub(crate) headers: &'b [httparse::Header<'b>],
    pub(crate) host: &'b [u8],
    pub(crate) body: &'b [u8],
    /// Head and body.
    pub(crate) consumed: usize,
}

/// The request at the start of `buf` if it is whole and simple enough
/// (see the module's documentation), else `None`.
pub(crate) fn parse_request<'b>(
    buf: &'b [u8],
    headers: &'b mut [httparse::Header<'b>; MAX_HEADERS],
) -> Option<Request<'b>> {
    let mut req = httparse::Request::new(headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        _ => return None,
    };
    if req.version != Some(1) {
        return None;
    }
    let method = Method::from_bytes(req.method?.as_bytes()).ok()?;
    let target = req.path?;
    if method == Method::CONNECT || !target.starts_with('/') || is_reserved(target) {
        return None;
    }
    let mut host = None;
    let mut length: Option<usize> = None;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                return None;
            }
            host = Some(h.value);
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if length.is_some() || h.value.is_empty() || !h.value.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let n: usize = std::str::from_utf8(h.value).ok()?.parse().ok()?;
            if n > MAX_BODY {
                return None;
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding")
            || name.eq_ignore_ascii_case(b"upgrade")
            || name.eq_ignore_ascii_case(b"expect")
            || (name.eq_ignore_ascii_case(b"connection")
                && !h
                    .value
                    .split(|&b| b == b',')
                    .all(|t| t.trim_ascii().eq_ignore_ascii_case(b"keep-alive")))
        {
            return None;
        }
    }
    let host = host?;
    let consumed = head_len.checked_add(length.unwrap_or(0))?;
    let body = buf.get(head_len..consumed)?;
    let headers: &'b [httparse::Header<'b>] = req.headers;
    Some(Request {
        method,
        target,
        headers,
        host,
        body,
        consumed,
    })
}

/// Request headers never forwarded: hop-by-hop ones (`Transfer-Encoding`
/// never gets here: [`parse_request`] refuses it), the ones the director
/// sets itself, and the internal `sticky-*` ones.
fn dropped_request_header(name: &[u8]) -> bool {
    const SET: [&[u8]; 3] = [
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
    ];
    is_hop_by_hop(name)
        || SET.iter().any(|d| name.eq_ignore_ascii_case(d))
        || (name.len() >= 7 && name[..7].eq_ignore_ascii_case(b"sticky-"))
}

/// A web server's response head, already rewritten for the client.
pub(crate) struct ResponseHead {
    pub(crate) status: StatusCode,
    /// Its length in the read buffer (interim heads included).
    pub(crate) len: usize,
    pub(crate) framing: Framing,
    /// The server keeps the connection open after this response.
    pub(crate) keep_alive: bool,
    /// `sticky-stopping` or `sticky-fenced` was present: the server
    /// refused the request untouched.
    pub(crate) refused: Option<Refusal>,
    /// `sticky-owner` was present (never passed on), with this value.
    pub(crate) owner: Option<Vec<u8>>,
}

struct Connection<'s> {
    shared: &'s Arc<State>,
    /// `X-Forwarded-Proto` for this client connection.
    proto: &'static [u8],
    /// The `Strict-Transport-Security` value every response gets (TLS
    /// clients, when configured).
    hsts: Option<&'s [u8]>,
    peer: SocketAddr,
    forwarded_for: String,
    /// The peer is a trusted proxy: its `X-Forwarded-*` headers are kept.
    trusted: bool,
    /// The request as sent to a web server.
    request: Vec<u8>,
    /// What is read from the web server.
    response: Vec<u8>,
    /// What goes to the client.
    out: Vec<u8>,
}

impl Connection<'_> {
    /// After a large response, gives the memory back rather than keep it
    /// for the life of a keep-alive connection.
    fn trim_buffers(&mut self) {
        for b in [&mut self.response, &mut self.out] {
            if b.capacity() > KEEP_CAPACITY {
                *b = Vec::new();
            }
        }
    }

    /// Forwards one request and its response; false if the client
    /// connection must close.
    async fn exchange<C: ClientStream>(&mut self, client: &mut C, req: &Request<'_>) -> bool {
        let started = Instant::now();
        let shared = self.shared;
        let stats = &shared.stats;
        stats.requests.fetch_add(1, Ordering::Relaxed);
        stats.fast_path_requests.fetch_add(1, Ordering::Relaxed);
        let cookies = RequestCookies::find_in(
            req.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("cookie"))
                .map(|h| h.value),
            &shared.config.route_cookie,
            &shared.config.session_cookie,
        );
        let replayable = req.body.is_empty() && is_idempotent(&req.method);
        let is_head = req.method == Method::HEAD;
        let mut attempts = Attempts::new(shared);
        if !shared.relay_peers.is_empty()
            && req.headers.iter().any(|h| {
                h.name
                    .eq_ignore_ascii_case(sticky_proto::control::RELAYED_HEADER)
            })
        {
            attempts.came_relayed();
        }
        loop {
            let (backend, set_cookie) = match attempts.next(shared, &cookies, self.peer.ip()) {
                Ok(next) => next,
                Err(answer) => return self.answer(client, answer, started).await,
            };
            let active = ActiveGuard::new(Arc::clone(&backend));
            // Before connecting: a mark-down from here on ends the wait.
            let downs = active.downs();
            let pool = backend.raw_pool();
            let connecting = match pool.idle(
                attempts.take_fresh(&backend),
                Reuse::for_request(replayable),
            ) {
                Some(stream) => Ok((stream, true)),
                None => pool
                    .connect(attempts.connect_limit())
                    .await
                    .map(|stream| (stream, false)),
            };
            let (mut upstream, pooled) = match connecting {
                Ok(got) => got,
                Err(e) => match attempts.connect_failed(shared, &backend, e) {
                    Ok(()) => continue,
                    Err(failure) => return self.answer(client, failure, started).await,
                },
            };
            self.build_request(req, &attempts.control_headers(shared, &backend));
            backend.requests.fetch_add(1, Ordering::Relaxed);
            let set_cookie = set_cookie.then_some(&backend.set_cookie);
            let sent = backend
                .answer(
                    downs,
                    shared.config.response_timeout,
                    send(
                        &mut upstream,
                        &self.request,
                        &mut self.response,
                        is_head,
                        Added {
                            set_cookie: set_cookie.map(|v| v.as_bytes()),
                            hsts: self.hsts,
                        },
                        &mut self.out,
                    ),
                )
                .await;
            let head = match sent {
                Err(why) => {
                    let answer = unanswered(shared, &backend, why);
                    return self.answer(client, answer, started).await;
                }
                Ok(Err(e)) => {
                    if attempts.after_failed_exchange(shared, &backend, &e, pooled, replayable) {
                        continue;
                    }
                    return self.answer(client, Answer::BadGateway, started).await;
                }
                Ok(Ok(head)) => head,
            };
            if let Some(refusal) = head.refused {
                // As in `proxy.rs`: refused untouched by a server that
                // fenced itself; the body is held, so re-routed — unless
                // the client gave up meanwhile: a request nobody waits
                // for is never sent again (it could otherwise move the
                // session after its user moved on).
                refused_untouched(shared, &backend, refusal);
                if client.gone() {
                    tracing::debug!(server = %backend.name, "client gone: its request refused as fenced is not re-sent");
                    return false;
                }
                if let Err(answer) = attempts.rerouted(shared) {
                    return self.answer(client, answer, started).await;
                }
                continue;
            }
            if let Some(owner) = head.owner.as_deref() {
                if head.status == StatusCode::MISDIRECTED_REQUEST {
                    // Another server holds the session's live lease: sent
                    // there once (the body is held).
                    if let Err(answer) = attempts.misdirected(shared, &backend, owner) {
                        return self.answer(client, answer, started).await;
                    }
                    if client.gone() {
                        return false;
                    }
                    continue;
                }
            }
            attempts.answered(shared);
            stats.response_time.record(started.elapsed());
            return self.relay(client, upstream, &head, &backend, active).await;
        }
    }

    /// The request for one attempt: its head with the headers rewritten,
    /// the director's own headers (the fencing token if known), and the
    /// body.
    fn build_request(&mut self, req: &Request<'_>, control: &ControlHeaders<'_>) {
        let r = &mut self.request;
        r.clear();
        r.extend_from_slice(req.method.as_str().as_bytes());
        r.push(b' ');
        r.extend_from_slice(req.target.as_bytes());
        r.extend_from_slice(b" HTTP/1.1\r\n");
        // From a trusted proxy: its `X-Forwarded-Proto` and `-Host` kept,
        // its `X-Forwarded-For` values the start of ours.
        let (mut proto_kept, mut host_kept) = (false, false);
        for h in req.headers {
            let name = h.name.as_bytes();
            if self.trusted {
                let proto = name.eq_ignore_ascii_case(b"x-forwarded-proto");
                let host = name.eq_ignore_ascii_case(b"x-forwarded-host");
                proto_kept |= proto;
                host_kept |= host;
                if proto || host {
                    r.extend_from_slice(name);
                    r.extend_from_slice(b": ");
                    r.extend_from_slice(h.value);
                    r.extend_from_slice(b"\r\n");
                    continue;
                }
            }
            if dropped_request_header(name) {
                continue;
            }
            r.extend_from_slice(name);
            r.extend_from_slice(b": ");
            r.extend_from_slice(h.value);
            r.extend_from_slice(b"\r\n");
        }
        r.extend_from_slice(b"x-forwarded-for: ");
        if self.trusted {
            for h in req.headers {
                if h.name.eq_ignore_ascii_case("x-forwarded-for") {
                    r.extend_from_slice(h.value);
                    r.extend_from_slice(b", ");
                }
            }
        }
        r.extend_from_slice(self.forwarded_for.as_bytes());
        r.extend_from_slice(b"\r\n");
        if !proto_kept {
            r.extend_from_slice(b"x-forwarded-proto: ");
            r.extend_from_slice(self.proto);
            r.extend_from_slice(b"\r\n");
        }
        if !host_kept {
            r.extend_from_slice(b"x-forwarded-host: ");
            r.extend_from_slice(req.host);
            r.extend_from_slice(b"\r\n");
        }
        control.write(r);
        r.extend_from_slice(b"\r\n");
        r.extend_from_slice(req.body);
    }

    /// Sends the response (head already in `out`) with its body to the
    /// client; puts the connection to the web server back in the pool if
    /// it can be reused. False if the client connection must close.
    async fn relay<C: ClientStream>(
        &mut self,
        client: &mut C,
        mut upstream: TcpStream,
        head: &ResponseHead,
        backend: &Backend,
        active: ActiveGuard,
    ) -> bool {
        let idle = self.shared.config.idle_timeout;
        let downs = active.downs();
        let mut pos = head.len;
        let mut left = match head.framing {
            Framing::Length(n) => n,
            _ => 0,
        };
        let mut chunks = ChunkedScanner::default();
        let mut head_sent = false;
        let result: Result<bool, UpstreamError> = async {
            loop {
                let avail = &self.response[pos..];
                let (take, done) = match head.framing {
                    Framing::Empty => (0, true),
                    Framing::Length(_) => {
                        let take = usize::try_from(left).unwrap_or(usize::MAX).min(avail.len());
                        left -= take as u64;
                        (take, left == 0)
                    }
                    Framing::Chunked => {
                        let take = chunks.feed(avail)?;
                        (take, chunks.is_done())
                    }
                    Framing::UntilClose => (avail.len(), false),
                };
                self.out.extend_from_slice(&avail[..take]);
                pos += take;
                if done {
                    // Bytes after the response: the connection is out of
                    // step, never reused.
                    return Ok(head.keep_alive && pos == self.response.len());
                }
                if self.out.len() >= FLUSH_AT {
                    write_client(client, &self.out, idle).await?;
                    head_sent = true;
                    self.out.clear();
                }
                self.response.clear();
                pos = 0;
                self.response.reserve(READ_SIZE);
                // What the server already sent is taken without waiting;
                // when nothing more is there yet, what we hold goes to the
                // client before we wait, so a response sent in parts
                // (server-sent events, a trickling download) reaches it as
                // it comes.
                let n = match upstream.try_read_buf(&mut self.response) {
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        if !self.out.is_empty() {
                            write_client(client, &self.out, idle).await?;
                            head_sent = true;
                            self.out.clear();
                        }
                        // A body the server stops sending ends when its
                        // health checks mark it down (`end_requests_on_down`),
                        // as a request waiting for its head does.
                        let read = upstream.read_buf(&mut self.response);
                        match backend.answer(downs, idle, read).await {
                            Err(Unanswered::TimedOut) => return Err(UpstreamError::Idle),
                            Err(Unanswered::MarkedDown) => return Err(UpstreamError::MarkedDown),
                            Ok(read) => read?,
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                if n == 0 {
                    if head.framing == Framing::UntilClose {
                        return Ok(false);
                    }
                    return Err(UpstreamError::Truncated);
                }
            }
        }
        .await;
        let stats = &self.shared.stats;
        match result {
            Ok(reusable) => {
                stats.count_response(head.status);
                if reusable {
                    backend.raw_pool().put(upstream);
                }
                // The server's part is over: it no longer counts as in
                // flight there. Dropped before the client has the answer,
                // so that the client's next request, which another worker
                // may route at once, sees the server idle (least-loaded
                // routing of new clients; the other way round it favoured
                // whichever server's worker the scheduler ran last).
                drop(active);
                let sent = write_client(client, &self.out, idle).await;
                sent.is_ok() && head.framing != Framing::UntilClose
            }
            Err(e) => {
                drop(upstream);
                let answer = if matches!(e, UpstreamError::MarkedDown) {
                    unanswered(self.shared, backend, Unanswered::MarkedDown)
                } else {
                    stats.upstream_send_failed.fetch_add(1, Ordering::Relaxed);
                    backend.errors.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(server = %backend.name, error = %e, "response from web server failed");
                    Answer::BadGateway
                };
                drop(active);
                if head_sent {
                    stats.count_response(head.status);
                    return false;
                }
                // Nothing went out yet: the client gets a clear answer.
                let (status, text) = answer.counted(self.shared);
                stats.count_response(status);
                self.out.clear();
                own_answer(&mut self.out, status, text, self.hsts);
                write_client(client, &self.out, idle).await.is_ok()
            }
        }
    }

    /// Sends one of the director's own answers; false if the client
    /// connection must close.
    async fn answer<C: ClientStream>(
        &mut self,
        client: &mut C,
        answer: Answer,
        started: Instant,
    ) -> bool {
        let stats = &self.shared.stats;
        let (status, text) = answer.counted(self.shared);
        stats.count_response(status);
        stats.response_time.record(started.elapsed());
        self.out.clear();
        own_answer(&mut self.out, status, text, self.hsts);
        write_client(client, &self.out, self.shared.config.idle_timeout)
            .await
            .is_ok()
    }
}

/// Sends `request` on `upstream` and reads the response head into
/// `response` (interim heads skipped), rewriting it for the client into
/// `out`.
pub(crate) async fn send<O: HeadOut>(
    upstream: &mut TcpStream,
    request: &[u8],
    response: &mut Vec<u8>,
    is_head: bool,
    added: Added<'_>,
    out: &mut O,
) -> Result<ResponseHead, UpstreamError> {
    response.clear();
    if let Err(e) = upstream.write_all(request).await {
        return Err(closed_early(e, response));
    }
    let mut start = 0;
    loop {
        if response.len() > start {
            match rewrite_response_head(&response[start..], is_head, added, out)? {
                Parsed::Final(mut head) => {
                    head.len += start;
                    return Ok(head);
                }
                // Dropped (the client did not ask for it, and 103 hints
                // are optional); the final head follows.
                Parsed::Interim(n) => {
                    start += n;
                    continue;
                }
                Parsed::Partial => {}
            }
        }
        if response.len() - start > MAX_RESPONSE_HEAD {
            return Err(UpstreamError::HeadTooLarge);
        }
        response.reserve(READ_SIZE);
        match upstream.read_buf(response).await {
            Ok(0) => {
                return Err(if response.is_empty() {
                    UpstreamError::ClosedEarly
                } else {
                    UpstreamError::BadHead
                })
            }
            Ok(_) => {}
            Err(e) => return Err(closed_early(e, response)),
        }
    }
}

/// A connection the web server closed before a byte of its response, as
/// [`UpstreamError::ClosedEarly`] whether its closing reached us as an end
/// of stream or as a reset: a pooled connection the server had closed
/// answers the request written to it with a reset once its end of stream
/// was read, and then it is this one connection that was dead, not the
/// server's others (`send`'s callers keep those pooled).
fn closed_early(e: std::io::Error, response: &[u8]) -> UpstreamError {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    if response.is_empty() && matches!(e.kind(), ConnectionReset | BrokenPipe | ConnectionAborted) {
        UpstreamError::ClosedEarly
    } else {
        UpstreamError::Io(e)
    }
}

/// Where a rewritten response head goes: HTTP/1.1 bytes for a fast-path
/// client (`Vec<u8>`), or a head for hyper's HTTP/2 server
/// (`crate::raw_forward`).
pub(crate) trait HeadOut {
    /// Starts a new head (forgetting any earlier one).
    fn start(&mut self, status: StatusCode, reason: &[u8]);
    /// One header kept for the client.
    fn header(&mut self, name: &[u8], value: &[u8]);
    /// The head is complete; `until_close`: the body ends with the
    /// connection.
    fn finish(&mut self, until_close: bool);
}

impl HeadOut for Vec<u8> {
    fn start(&mut self, status: StatusCode, reason: &[u8]) {
        self.clear();
        let _ = write!(self, "HTTP/1.1 {} ", status.as_u16());
        self.extend_from_slice(reason);
        self.extend_from_slice(b"\r\n");
    }
    fn header(&mut self, name: &[u8], value: &[u8]) {
        self.extend_from_slice(name);
        self.extend_from_slice(b": ");
        self.extend_from_slice(value);
        self.extend_from_slice(b"\r\n");
    }
    fn finish(&mut self, until_close: bool) {
        if until_close {
            self.extend_from_slice(b"connection: close\r\n");
        }
        self.extend_from_slice(b"\r\n");
    }
}

/// Whether the client closed its connection (or it broke) while its
/// request was with a web server: a look at the socket that neither waits
/// nor consumes what it holds (a pipelined next request is not a close).
fn socket_closed(socket: &TcpStream) -> bool {
    let mut probe = [0u8; 1];
    let mut buf = tokio::io::ReadBuf::new(&mut probe);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    matches!(
        socket.poll_peek(&mut cx, &mut buf),
        std::task::Poll::Ready(Ok(0) | Err(_))
    )
}

/// Writes `bytes` to the client, giving up after `idle` without progress
/// as a whole (a client that stops reading).
/// Writes `bytes` to the client and flushes them (TLS holds written
/// records until flushed).
async fn write_client<C: ClientStream>(
    client: &mut C,
    bytes: &[u8],
    idle: Duration,
) -> Result<(), UpstreamError> {
    let written = async {
        client.write_all(bytes).await?;
        client.flush().await
    };
    match tokio::time::timeout(idle, written).await {
        Ok(written) => Ok(written?),
        Err(_) => Err(UpstreamError::Idle),
    }
}

/// One of the director's own plain-text answers, as bytes.
fn own_answer(out: &mut Vec<u8>, status: StatusCode, text: &str, hsts: Option<&[u8]>) {
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\ncontent-type: text/plain; charset=utf-8\r\ncache-control: no-store\r\n",
        status.as_u16(),
        status.canonical_reason().unwrap_or("")
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        out.extend_from_slice(b"retry-after: 1\r\n");
    }
    if let Some(hsts) = hsts {
        out.extend_from_slice(b"strict-transport-security: ");
        out.extend_from_slice(hsts);
        out.extend_from_slice(b"\r\n");
    }
    let _ = write!(out, "content-length: {}\r\n\r\n{text}", text.len());
}

/// What one response head parse found.
/// Headers the director adds to a response.
#[derive(Clone, Copy, Default)]
pub(crate) struct Added<'a> {
    /// The route cookie, when the request was (re)routed.
    pub(crate) set_cookie: Option<&'a [u8]>,
    /// `Strict-Transport-Security` (TLS clients; replaces the web
    /// server's own, as on the hyper path).
    pub(crate) hsts: Option<&'a [u8]>,
}

enum Parsed {
    /// A final head, rewritten into `out`.
    Final(ResponseHead),
    /// An interim (`1xx`) head of this many bytes, to be skipped.
    Interim(usize),
    /// More bytes needed.
    Partial,
}

/// Parses a web server's response head at the start of `bytes` and, if it
/// is a final one, writes the client's version of it into `out`: the same
/// status and headers without the hop-by-hop ones (and those its
/// `Connection` header names), with the route cookie if one is to be set,
/// and `connection: close` if the body ends with the connection.
fn rewrite_response_head<O: HeadOut>(
    bytes: &[u8],
    is_head: bool,
    added: Added<'_>,
    out: &mut O,
) -> Result<Parsed, UpstreamError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(bytes) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(Parsed::Partial),
        Err(_) => return Err(UpstreamError::BadHead),
    };
    let code = resp.code.ok_or(UpstreamError::BadHead)?;
    let status = StatusCode::from_u16(code).map_err(|_| UpstreamError::BadHead)?;
    if status == StatusCode::SWITCHING_PROTOCOLS {
        return Err(UpstreamError::UnaskedUpgrade);
    }
    if status.is_informational() {
        return Ok(Parsed::Interim(len));
    }
    let mut keep_alive = resp.version == Some(1);
    let mut length: Option<u64> = None;
    let mut chunked: Option<bool> = None;
    let mut fenced = None;
    let mut stopping = false;
    let mut owner = None;
    // Header names listed in `Connection` (hop-by-hop by declaration).
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        if name.eq_ignore_ascii_case(b"connection") {
            for token in h.value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
                if token.eq_ignore_ascii_case(b"close") {
                    keep_alive = false;
                } else if !token.is_empty() && !token.eq_ignore_ascii_case(b"keep-alive") {
                    listed.push(token);
                }
            }
        } else if name.eq_ignore_ascii_case(b"content-length") {
            let n: u64 = std::str::from_utf8(h.value)
                .ok()
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|v| v.parse().ok())
                .ok_or(UpstreamError::BadFraming)?;
            if length.is_some_and(|l| l != n) {
                return Err(UpstreamError::BadFraming);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            // Chunked only if it is the last coding of the last header.
            let last = h
                .value
                .split(|&b| b == b',')
                .next_back()
                .unwrap_or_default();
            chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(sticky_proto::control::FENCED_HEADER.as_bytes()) {
            fenced = Some(
                std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok()),
            );
        } else if name.eq_ignore_ascii_case(sticky_proto::control::STOPPING_HEADER.as_bytes()) {
            stopping = true;
        } else if name.eq_ignore_ascii_case(sticky_proto::control::OWNER_HEADER.as_bytes()) {
            owner = Some(h.value.to_vec());
        }
    }
    if chunked.is_some() && length.is_some() {
        return Err(UpstreamError::BadFraming);
    }
    let framing =
        if is_head || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Empty
        } else {
            match (chunked, length) {
                (Some(true), _) => Framing::Chunked,
                (Some(false), _) => Framing::UntilClose,
                (None, Some(n)) => Framing::Length(n),
                (None, None) => Framing::UntilClose,
            }
        };
    if framing == Framing::UntilClose {
        keep_alive = false;
    }
    out.start(status, resp.reason.unwrap_or_default().as_bytes());
    for h in resp.headers.iter() {
        let name = h.name.as_bytes();
        // `Transfer-Encoding` stays: the body is forwarded as it came.
        let hop = is_hop_by_hop(name) && !name.eq_ignore_ascii_case(b"transfer-encoding");
        let internal = name.eq_ignore_ascii_case(sticky_proto::control::OWNER_HEADER.as_bytes());
        let replaced =
            added.hsts.is_some() && name.eq_ignore_ascii_case(b"strict-transport-security");
        if hop || internal || replaced || listed.iter().any(|l| name.eq_ignore_ascii_case(l)) {
            continue;
        }
        out.header(name, h.value);
    }
    if let Some(cookie) = added.set_cookie {
        out.header(b"set-cookie", cookie);
    }
    if let Some(hsts) = added.hsts {
        out.header(b"strict-transport-security", hsts);
    }
    out.finish(framing == Framing::UntilClose);
    Ok(Parsed::Final(ResponseHead {
        status,
        len,
        framing,
        keep_alive,
        // A stopping server has fenced itself too.
        refused: if stopping {
            Some(Refusal::Stopping)
        } else {
            fenced.map(Refusal::Fenced)
        },
        owner,
    }))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nhost: shop.example\r\n\r\n";

    /// A connection whose server side is closed, as a pooled one the web
    /// server closed while idle (an end of stream); with `reset`, closed
    /// with bytes it had not read (a reset, as from a killed process),
    /// once the reset has arrived.
    async fn closed_by_the_server(reset: bool) -> TcpStream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        if reset {
            client.write_all(b"x").await.unwrap();
            let mut byte = [0u8; 1];
            assert_eq!(server.peek(&mut byte).await.unwrap(), 1);
        }
        drop(server);
        if reset {
            let deadline = Instant::now() + Duration::from_secs(10);
            while client.peek(&mut [0u8; 1]).await.is_ok() {
                assert!(Instant::now() < deadline, "no reset within 10 s");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        client
    }

    async fn send_on(mut upstream: TcpStream) -> Result<ResponseHead, UpstreamError> {
        let mut response = Vec::new();
        let mut out = Vec::new();
        let added = Added {
            set_cookie: None,
            hsts: None,
        };
        send(
            &mut upstream,
            REQUEST,
            &mut response,
            false,
            added,
            &mut out,
        )
        .await
    }

    /// Closed before a response, whether the closing reads as an end of
    /// stream or (once a reset arrived) as an error: the attempt is
    /// retried if the request allows it, and the server's other pooled
    /// connections are not thrown away for it.
    #[tokio::test]
    async fn a_connection_the_server_closed_fails_as_closed_early() {
        for reset in [false, true] {
            let r = send_on(closed_by_the_server(reset).await).await;
            assert!(
                matches!(r, Err(UpstreamError::ClosedEarly)),
                "reset {reset}: {:?}",
                r.err()
            );
        }
    }
}
