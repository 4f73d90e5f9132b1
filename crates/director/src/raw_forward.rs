//! HTTP/2 requests forwarded on the fast path's raw HTTP/1.1 connections.
//!
//! An HTTP/2 client is served by hyper's server (streams, flow control,
//! HPACK), but its requests need not go to the web server through hyper's
//! client: that costs a connection task per pooled connection, channels
//! between it and the request's task, and a set of allocations per
//! request. A request with no body, or a small one whose length the client
//! declared (`content-length`, at most
//! [`MAX_BODY`], read whole before it is sent),
//! is written here as HTTP/1.1 bytes in one system call to a connection of
//! the worker's raw pool (`Backend::raw_pool`, the fast path's), and the
//! response head is parsed in place with `httparse` by the fast path's own
//! code ([`fast_path::send`]). A body already read whole with its head
//! (the common small response) goes back as one frame and the connection
//! straight back to the pool; a longer one streams ([`RawBody`]), chunked
//! bodies decoded, and the connection returns to the pool after its last
//! byte.
//!
//! The request was readied by `proxy.rs` (reserved paths, `Host`, the
//! hop-by-hop, internal and `X-Forwarded-*` headers); the rules from here
//! on are the fast path's: routing, the fencing token, a refused
//! connection re-routed, other failures retried only for idempotent
//! requests without a body, the same `502`, `503` and `504` answers. The
//! body is held, so a request refused by a fenced server is re-routed even
//! with a body, and one answered `421` naming the session's owner is
//! re-sent there with it. A client that resets the stream meanwhile drops
//! this future: an abandoned request is never sent again.
//!
//! Requests with a body of unknown or larger length stay on `proxy.rs`'s
//! hyper client, streamed.

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_LENGTH};
use http::{Method, Response, StatusCode, Uri};
use http_body::Body as _;
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use crate::backend::ActiveGuard;
use crate::body::{Body, RawBody};
use crate::fast_path::{self, Added, HeadOut, MAX_BODY};
use crate::forward::{
    is_idempotent, refused_untouched, unanswered, Answer, Attempts, ControlHeaders, Finish, Relayed,
};
use crate::pool::Reuse;
use crate::route_cookie::RequestCookies;
use crate::state::State;
use crate::upstream::Framing;

/// Request and response buffers larger than this are not kept for reuse.
const KEEP_CAPACITY: usize = 32 << 10;

/// Spare buffers kept per worker.
const SPARES: usize = 64;

thread_local! {
    /// Buffers of finished exchanges, for the next ones on this worker
    /// thread: a fresh 16 KiB read buffer per request costs the allocator
    /// more than the rest of the exchange's allocations together.
    static SPARE: std::cell::RefCell<Vec<Vec<u8>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// An empty buffer, reused if one is spare.
fn take_buffer() -> Vec<u8> {
    SPARE
        .with(|s| s.try_borrow_mut().ok().and_then(|mut s| s.pop()))
        .unwrap_or_default()
}

/// Keeps `buf` for reuse if it is not too large and there is room.
fn give_back(mut buf: Vec<u8>) {
    if buf.capacity() > KEEP_CAPACITY {
        return;
    }
    buf.clear();
    SPARE.with(|s| {
        if let Ok(mut s) = s.try_borrow_mut() {
            if s.len() < SPARES {
                s.push(buf);
            }
        }
    });
}

/// Request and response buffers of one exchange, given back for reuse
/// however the exchange ends.
struct Buffers {
    request: Vec<u8>,
    response: Vec<u8>,
}

impl Drop for Buffers {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.request));
        give_back(std::mem::take(&mut self.response));
    }
}

/// The request, readied for the web server by `proxy.rs`.
pub(crate) struct Ready<'a> {
    pub(crate) method: &'a Method,
    /// Origin form.
    pub(crate) uri: &'a Uri,
    pub(crate) headers: &'a HeaderMap,
    /// The whole body (empty for none).
    pub(crate) body: Bytes,
}

/// Forwards a readied request and returns the client's response (the
/// director's own answer when no web server could give one), finished.
pub(crate) async fn forward(
    shared: Arc<State>,
    peer: SocketAddr,
    parts: http::request::Parts,
    incoming: Incoming,
    finish: Finish,
) -> Response<Body> {
    let shared = &shared;
    let body = if incoming.is_end_stream() {
        Bytes::new()
    } else {
        match read_small_body(shared, incoming).await {
            Ok(body) => body,
            Err(answer) => return finish.answer(shared, answer.response(shared)),
        }
    };
    let req = Ready {
        method: &parts.method,
        uri: &parts.uri,
        headers: &parts.headers,
        body,
    };
    let config = &shared.config;
    let stats = &shared.stats;
    stats.h2_raw_requests.fetch_add(1, Ordering::Relaxed);
    let cookies = RequestCookies::find(req.headers, &config.route_cookie, &config.session_cookie);
    let replayable = req.body.is_empty() && is_idempotent(req.method);
    let is_head = req.method == Method::HEAD;
    let mut attempts = Attempts::new(shared);
    if parts.extensions.get::<Relayed>().is_some() {
        attempts.came_relayed();
    }
    let mut bufs = Buffers {
        request: take_buffer(),
        response: take_buffer(),
    };
    let Buffers { request, response } = &mut bufs;
    let resp = loop {
        let (backend, set_cookie) = match attempts.next(shared, &cookies, peer.ip()) {
            Ok(next) => next,
            Err(answer) => break answer.response(shared),
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
                Err(failure) => break failure.response(shared),
            },
        };
        build_request(request, &req, &attempts.control_headers(shared, &backend));
        backend.requests.fetch_add(1, Ordering::Relaxed);
        let added = Added {
            set_cookie: set_cookie.then_some(backend.set_cookie.as_bytes()),
            // `forward::Finish` sets it, replacing the server's.
            hsts: None,
        };
        let mut out = H2Head::default();
        let sent = backend
            .answer(
                downs,
                config.response_timeout,
                fast_path::send(&mut upstream, request, response, is_head, added, &mut out),
            )
            .await;
        let head = match sent {
            Err(why) => break unanswered(shared, &backend, why).response(shared),
            Ok(Err(e)) => {
                if attempts.after_failed_exchange(shared, &backend, &e, pooled, replayable) {
                    continue;
                }
                break Answer::BadGateway.response(shared);
            }
            Ok(Ok(head)) => head,
        };
        if let Some(refusal) = head.refused {
            // As in `proxy.rs`: refused untouched by a server that fenced
            // itself; the body is held, so re-routed.
            refused_untouched(shared, &backend, refusal);
            if let Err(answer) = attempts.rerouted(shared) {
                break answer.response(shared);
            }
            continue;
        }
        if let Some(owner) = head.owner.as_deref() {
            if head.status == StatusCode::MISDIRECTED_REQUEST {
                // Another server holds the session's live lease: sent
                // there once (the body is held).
                if let Err(answer) = attempts.misdirected(shared, &backend, owner) {
                    break answer.response(shared);
                }
                continue;
            }
        }
        attempts.answered(shared);
        let rest = &response[head.len..];
        let body = match head.framing {
            Framing::Empty => {
                if head.keep_alive && rest.is_empty() {
                    pool.put(upstream);
                }
                Body::Empty
            }
            Framing::Length(n) if rest.len() as u64 >= n => {
                // `n` is at most `rest.len()`, so it fits.
                let n = usize::try_from(n).unwrap_or(rest.len());
                if head.keep_alive && rest.len() == n {
                    pool.put(upstream);
                }
                if n == 0 {
                    Body::Empty
                } else {
                    Body::full(Bytes::copy_from_slice(&rest[..n]))
                }
            }
            framing => Body::Raw(Box::new(RawBody::new(
                upstream,
                Bytes::copy_from_slice(rest),
                framing,
                head.keep_alive,
                active,
            ))),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = out.status;
        *resp.headers_mut() = out.into_headers();
        break resp;
    };
    finish.answer(shared, resp)
}

/// A request body of declared length up to [`MAX_BODY`], read whole
/// (within the response timeout, as if it were streamed to the server).
async fn read_small_body(shared: &State, incoming: Incoming) -> Result<Bytes, Answer> {
    if incoming.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limited = http_body_util::Limited::new(incoming, MAX_BODY);
    match tokio::time::timeout(shared.config.response_timeout, limited.collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) => {
            // The client's fault (a reset stream, more data than it
            // declared): the web server is not involved.
            tracing::debug!(error = %e, "client's request body failed");
            Err(Answer::BadBody)
        }
        Err(_elapsed) => Err(Answer::ResponseTimeout),
    }
}

/// The request for one attempt, as HTTP/1.1: its head with the fencing
/// token if known, and the body.
fn build_request(r: &mut Vec<u8>, req: &Ready<'_>, control: &ControlHeaders<'_>) {
    r.clear();
    r.extend_from_slice(req.method.as_str().as_bytes());
    r.push(b' ');
    r.extend_from_slice(
        req.uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .as_bytes(),
    );
    r.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in req.headers {
        r.extend_from_slice(name.as_str().as_bytes());
        r.extend_from_slice(b": ");
        r.extend_from_slice(value.as_bytes());
        r.extend_from_slice(b"\r\n");
    }
    // HTTP/2 needs no `content-length`; HTTP/1.1 does for a body (and
    // hyper's client sends `0` for methods that usually carry one).
    if !req.headers.contains_key(CONTENT_LENGTH)
        && (!req.body.is_empty()
            || matches!(*req.method, Method::POST | Method::PUT | Method::PATCH))
    {
        let _ = write!(r, "content-length: {}\r\n", req.body.len());
    }
    control.write(r);
    r.extend_from_slice(b"\r\n");
    r.extend_from_slice(&req.body);
}

/// A web server's response head as hyper's HTTP/2 server takes it. The
/// header values are gathered in one buffer and become slices of it: one
/// allocation for all of them.
struct H2Head {
    status: StatusCode,
    names: Vec<(HeaderName, std::ops::Range<usize>)>,
    values: Vec<u8>,
}

impl Default for H2Head {
    fn default() -> Self {
        Self {
            status: StatusCode::OK,
            names: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl H2Head {
    fn into_headers(self) -> HeaderMap {
        let mut headers = HeaderMap::with_capacity(self.names.len());
        let values = Bytes::from(self.values);
        for (name, range) in self.names {
            match HeaderValue::from_maybe_shared(values.slice(range)) {
                Ok(value) => {
                    headers.append(name, value);
                }
                Err(_) => tracing::debug!("dropped a response header HTTP/2 cannot carry"),
            }
        }
        headers
    }
}

impl HeadOut for H2Head {
    fn start(&mut self, status: StatusCode, _reason: &[u8]) {
        self.status = status;
        self.names.clear();
        self.values.clear();
    }

    fn header(&mut self, name: &[u8], value: &[u8]) {
        // HTTP/2 frames bodies itself (RFC 9113 section 8.2.2).
        if name.eq_ignore_ascii_case(b"transfer-encoding") {
            return;
        }
        match HeaderName::from_bytes(name) {
            Ok(name) => {
                let start = self.values.len();
                self.values.extend_from_slice(value);
                self.names.push((name, start..self.values.len()));
            }
            Err(_) => tracing::debug!("dropped a response header HTTP/2 cannot carry"),
        }
    }

    fn finish(&mut self, _until_close: bool) {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::backend::Backend;
    use crate::config::{DirectorConfig, ServerSpec};
    use crate::route_cookie::RouteSigner;
    use tokio::io::AsyncWriteExt as _;

    const SECRET: &[u8] = b"a cluster secret of at least 32 bytes!";

    /// A listener standing in for web server ws1, and its `Backend`.
    async fn one_backend() -> (tokio::net::TcpListener, Arc<Backend>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let spec = ServerSpec {
            name: "ws1".into(),
            addr: listener.local_addr().unwrap(),
            standby: false,
            weight: 1,
        };
        let config = DirectorConfig::new(SECRET, vec![spec.clone()]);
        let backend = Arc::new(Backend::new(
            &spec,
            &config,
            &RouteSigner::new(SECRET),
            Default::default(),
        ));
        (listener, backend)
    }

    /// A chunked response whose head came with part of its body: the
    /// rest is read from the connection, decoded, and the connection goes
    /// back to the pool after the last chunk.
    #[tokio::test]
    async fn chunked_bodies_stream_decoded_and_the_connection_is_pooled_again() {
        let (listener, backend) = one_backend().await;
        let client = backend.raw_pool().connect(None).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        let writer = tokio::spawn(async move {
            for piece in [
                &b"llo, \r\n"[..],
                b"6\r\nworld!\r\n",
                b"0\r\nx-t: 1\r\n\r\n",
            ] {
                server.write_all(piece).await.unwrap();
                server.flush().await.unwrap();
                tokio::task::yield_now().await;
            }
            server
        });
        let body = Body::Raw(Box::new(RawBody::new(
            client,
            Bytes::from_static(b"7\r\nhe"),
            Framing::Chunked,
            true,
            ActiveGuard::new(Arc::clone(&backend)),
        )));
        let got = body.collect().await.unwrap().to_bytes();
        assert_eq!(&got[..], b"hello, world!");
        let _server = writer.await.unwrap();
        let (_, pooled) = backend.raw_pool().get().await.unwrap();
        assert!(pooled, "the connection went back to the pool");
    }

    /// A body cut short by the server is an error, never a short success,
    /// and the connection is not reused.
    #[tokio::test]
    async fn a_truncated_body_fails() {
        let (listener, backend) = one_backend().await;
        let client = backend.raw_pool().connect(None).await.unwrap();
        let (mut server, _) = listener.accept().await.unwrap();
        server.write_all(b"abc").await.unwrap();
        drop(server);
        let body = Body::Raw(Box::new(RawBody::new(
            client,
            Bytes::new(),
            Framing::Length(10),
            true,
            ActiveGuard::new(Arc::clone(&backend)),
        )));
        assert!(body.collect().await.is_err());
    }

    #[test]
    fn requests_are_written_as_http1_with_a_length_for_bodies() {
        let mut headers = HeaderMap::new();
        headers.insert("host", HeaderValue::from_static("shop.example"));
        headers.insert("x-forwarded-proto", HeaderValue::from_static("https"));
        let uri: Uri = "/cart?x=1".parse().unwrap_or_default();
        let mut r = Vec::new();
        let req = Ready {
            method: &Method::POST,
            uri: &uri,
            headers: &headers,
            body: Bytes::from_static(b"abc"),
        };
        build_request(
            &mut r,
            &req,
            &ControlHeaders {
                epoch: 7,
                moved_from: None,
                relayed_by: None,
            },
        );
        assert_eq!(
            String::from_utf8_lossy(&r),
            "POST /cart?x=1 HTTP/1.1\r\nhost: shop.example\r\nx-forwarded-proto: https\r\n\
             content-length: 3\r\nsticky-epoch: 7\r\n\r\nabc"
        );
        let req = Ready {
            method: &Method::GET,
            uri: &uri,
            headers: &headers,
            body: Bytes::new(),
        };
        build_request(
            &mut r,
            &req,
            &ControlHeaders {
                epoch: 0,
                moved_from: None,
                relayed_by: None,
            },
        );
        assert_eq!(
            String::from_utf8_lossy(&r),
            "GET /cart?x=1 HTTP/1.1\r\nhost: shop.example\r\nx-forwarded-proto: https\r\n\r\n"
        );
    }
}
