//! [`Body`]: the one body type the director answers its clients with
//! (its own answers and web servers' responses streamed), without boxing.
//! Requests go to web servers with the pool's
//! [`RequestBody`](crate::pool::RequestBody).

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use bytes::BytesMut;
use tokio::net::TcpStream;

use crate::backend::{ActiveGuard, DownWatch};
use crate::chunked::ChunkedScanner;
use crate::pool::Conn;
use crate::upstream::{Framing, UpstreamError};

/// Bytes asked for in one read of a streamed raw response body.
const READ_SIZE: usize = 16 << 10;

/// A response body.
pub(crate) enum Body {
    /// No body.
    Empty,
    /// A body the director wrote itself (error pages, admin answers).
    Full(Option<Bytes>),
    /// A web server's response body, streamed to the client.
    Response(Box<UpstreamBody>),
    /// A web server's response body read from a raw connection (HTTP/2
    /// clients, `raw_forward.rs`), too long to have come whole with the
    /// head.
    Raw(Box<RawBody>),
}

/// Why a response body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BodyError {
    /// hyper's client reading the web server's response.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// A raw connection's response.
    #[error(transparent)]
    Raw(#[from] UpstreamError),
    /// The health checks marked the web server down while the body waited
    /// for its bytes (`end_requests_on_down`).
    #[error("the web server was marked down inside the response body")]
    MarkedDown,
}

impl Body {
    /// A body with these bytes.
    pub(crate) fn full(bytes: impl Into<Bytes>) -> Self {
        Body::Full(Some(bytes.into()))
    }
}

/// A web server's response body. When it is dropped after its last byte,
/// the connection it came on goes back to the server's pool; the in-flight
/// count of the server drops with it (so least-connections counts requests
/// until their response is fully sent).
pub(crate) struct UpstreamBody {
    incoming: Incoming,
    done: bool,
    conn: Option<Conn>,
    active: ActiveGuard,
    /// Ends the body if the server is marked down while it waits.
    watch: Option<DownWatch>,
}

impl UpstreamBody {
    pub(crate) fn new(incoming: Incoming, conn: Conn, active: ActiveGuard) -> Self {
        Self {
            incoming,
            done: false,
            conn: Some(conn),
            active,
            watch: None,
        }
    }
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if self.done || http_body::Body::is_end_stream(&self.incoming) {
                self.active.backend().pool().put(conn);
            }
            // Otherwise the body was cut short: dropping the connection
            // closes it, as it cannot carry another request.
        }
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Response(up) => {
                let polled = Pin::new(&mut up.incoming).poll_frame(cx);
                if let Poll::Ready(None) = polled {
                    up.done = true;
                }
                // Waiting for bytes from a server its health checks have
                // marked down: the body ends (the connection closes with
                // it), as a request waiting for its head would.
                if polled.is_pending() && up.active.poll_marked_down(&mut up.watch, cx) {
                    return Poll::Ready(Some(Err(BodyError::MarkedDown)));
                }
                polled.map(|frame| frame.map(|f| f.map_err(BodyError::from)))
            }
            Body::Raw(raw) => raw
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(BodyError::from))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Response(up) => up.done || up.incoming.is_end_stream(),
            Body::Raw(raw) => raw.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Response(up) => up.incoming.size_hint(),
            Body::Raw(raw) => raw.size_hint(),
        }
    }
}

/// A web server's response body read from a raw connection, streamed to
/// an HTTP/2 client. The connection goes back to the worker's raw pool
/// after the last byte if the server keeps it open; a body cut short
/// closes it. The server counts as busy (least connections) until then.
pub(crate) struct RawBody {
    stream: Option<TcpStream>,
    /// Bytes read and not yet looked at.
    pending: Bytes,
    /// Where reads go.
    read: BytesMut,
    /// Decoded chunk data not yet sent.
    decoded: BytesMut,
    /// Bytes left of a `Content-Length` body.
    left: u64,
    framing: Framing,
    chunks: ChunkedScanner,
    keep_alive: bool,
    done: bool,
    active: ActiveGuard,
    /// Ends the body if the server is marked down while it waits.
    watch: Option<DownWatch>,
}

impl RawBody {
    /// The body after a response head: `pending` the bytes of it already
    /// read, the rest on `stream`.
    pub(crate) fn new(
        stream: TcpStream,
        pending: Bytes,
        framing: Framing,
        keep_alive: bool,
        active: ActiveGuard,
    ) -> Self {
        Self {
            stream: Some(stream),
            pending,
            read: BytesMut::new(),
            decoded: BytesMut::new(),
            left: match framing {
                Framing::Length(n) => n,
                _ => 0,
            },
            framing,
            chunks: ChunkedScanner::default(),
            keep_alive,
            done: false,
            active,
            watch: None,
        }
    }

    /// The body ended: the connection is pooled again if it can carry
    /// another request (nothing after the body, server keeps it open).
    fn finish(&mut self) {
        self.done = true;
        if let Some(stream) = self.stream.take() {
            if self.keep_alive && self.pending.is_empty() && self.framing != Framing::UntilClose {
                self.active.backend().raw_pool().put(stream);
            }
        }
    }

    fn fail(&mut self, e: UpstreamError) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        self.done = true;
        self.stream = None;
        let backend = self.active.backend();
        backend.errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(server = %backend.name, error = %e, "response from web server failed");
        Poll::Ready(Some(Err(e)))
    }

    pub(crate) fn is_end_stream(&self) -> bool {
        self.done
    }

    pub(crate) fn size_hint(&self) -> SizeHint {
        match self.framing {
            Framing::Length(_) => SizeHint::with_exact(self.left),
            _ => SizeHint::default(),
        }
    }

    pub(crate) fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, UpstreamError>>> {
        loop {
            if self.done {
                return Poll::Ready(None);
            }
            if !self.pending.is_empty() {
                match self.framing {
                    Framing::Empty => self.finish(),
                    Framing::Length(_) => {
                        let take = usize::try_from(self.left)
                            .unwrap_or(usize::MAX)
                            .min(self.pending.len());
                        let data = self.pending.split_to(take);
                        self.left -= take as u64;
                        if self.left == 0 {
                            self.finish();
                        }
                        if !data.is_empty() {
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                    Framing::UntilClose => {
                        let data = std::mem::take(&mut self.pending);
                        return Poll::Ready(Some(Ok(Frame::data(data))));
                    }
                    Framing::Chunked => {
                        let pending = &self.pending;
                        let decoded = &mut self.decoded;
                        let used = match self
                            .chunks
                            .feed_with(pending, |r| decoded.extend_from_slice(&pending[r]))
                        {
                            Ok(used) => used,
                            Err(e) => return self.fail(e.into()),
                        };
                        let _ = self.pending.split_to(used);
                        if self.chunks.is_done() {
                            self.finish();
                        }
                        if !self.decoded.is_empty() {
                            let data = self.decoded.split().freeze();
                            return Poll::Ready(Some(Ok(Frame::data(data))));
                        }
                    }
                }
                continue;
            }
            if self.framing == Framing::Empty {
                self.finish();
                continue;
            }
            let Some(stream) = self.stream.as_ref() else {
                return Poll::Ready(None);
            };
            match stream.poll_read_ready(cx) {
                Poll::Pending => {
                    if self.active.poll_marked_down(&mut self.watch, cx) {
                        // Counted there; the connection closes.
                        self.done = true;
                        self.stream = None;
                        return Poll::Ready(Some(Err(UpstreamError::MarkedDown)));
                    }
                    return Poll::Pending;
                }
                Poll::Ready(Err(e)) => return self.fail(e.into()),
                Poll::Ready(Ok(())) => {}
            }
            self.read.reserve(READ_SIZE);
            match stream.try_read_buf(&mut self.read) {
                Ok(0) => {
                    if self.framing == Framing::UntilClose {
                        self.done = true;
                        self.stream = None;
                        return Poll::Ready(None);
                    }
                    return self.fail(UpstreamError::Truncated);
                }
                Ok(_) => self.pending = self.read.split().freeze(),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return self.fail(e.into()),
            }
        }
    }
}
