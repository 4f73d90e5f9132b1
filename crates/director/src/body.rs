//! [`Body`]: the one body type the director answers its clients with
//! (its own answers and web servers' responses streamed), without boxing.
//! Requests go to web servers with the pool's
//! [`RequestBody`](crate::pool::RequestBody).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

use crate::backend::ActiveGuard;
use crate::pool::Conn;

/// A response body.
pub(crate) enum Body {
    /// No body.
    Empty,
    /// A body the director wrote itself (error pages, admin answers).
    Full(Option<Bytes>),
    /// A web server's response body, streamed to the client.
    Response(UpstreamBody),
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
}

impl UpstreamBody {
    pub(crate) fn new(incoming: Incoming, conn: Conn, active: ActiveGuard) -> Self {
        Self {
            incoming,
            done: false,
            conn: Some(conn),
            active,
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
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Body::Response(up) => {
                let polled = Pin::new(&mut up.incoming).poll_frame(cx);
                if let Poll::Ready(None) = polled {
                    up.done = true;
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(bytes) => bytes.is_none(),
            Body::Response(up) => up.done || up.incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Body::Response(up) => up.incoming.size_hint(),
        }
    }
}
