//! [`ClientBody`]: a client's request body, whichever server read its
//! head: hyper's HTTP/1.1 server (`Incoming`), or the director's own
//! HTTP/2 server (`h2_server.rs`, an h2 `RecvStream`).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;

/// A client's request body.
pub(crate) enum ClientBody {
    /// Read by hyper's server.
    Hyper(Incoming),
    /// One HTTP/2 stream's data frames (and trailers).
    H2(H2Body),
}

/// Why reading a client's request body failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientBodyError {
    /// hyper's server.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// The HTTP/2 stream (reset by the client, more data than its
    /// `content-length`, the connection gone).
    #[error(transparent)]
    H2(#[from] h2::Error),
}

/// An HTTP/2 stream's request body. Each data frame handed on frees its
/// share of the flow-control window, so the client may send more: the
/// window bounds what is buffered, as with hyper's server.
pub(crate) struct H2Body {
    recv: h2::RecvStream,
    /// The declared `content-length`, less the bytes handed on.
    left: Option<u64>,
    data_done: bool,
}

impl H2Body {
    /// The body of a request whose `content-length` was `declared`.
    pub(crate) fn new(recv: h2::RecvStream, declared: Option<u64>) -> Self {
        Self {
            recv,
            left: declared,
            data_done: false,
        }
    }

    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        if !self.data_done {
            match self.recv.poll_data(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(data))) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(left) = &mut self.left {
                        *left = left.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                // RFC 9113 section 8.1: `RST_STREAM` with `NO_ERROR` ends
                // the body early without failing it.
                Poll::Ready(Some(Err(e))) if e.reason() == Some(h2::Reason::NO_ERROR) => {
                    return Poll::Ready(None);
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => self.data_done = true,
            }
        }
        match self.recv.poll_trailers(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(trailers)) => Poll::Ready(trailers.map(|t| Ok(Frame::trailers(t)))),
            Poll::Ready(Err(e)) if e.reason() == Some(h2::Reason::NO_ERROR) => Poll::Ready(None),
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e.into()))),
        }
    }
}

impl http_body::Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            ClientBody::Hyper(incoming) => Pin::new(incoming)
                .poll_frame(cx)
                .map(|f| f.map(|f| f.map_err(ClientBodyError::from))),
            ClientBody::H2(h2) => h2.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ClientBody::Hyper(incoming) => incoming.is_end_stream(),
            ClientBody::H2(h2) => h2.recv.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ClientBody::Hyper(incoming) => incoming.size_hint(),
            ClientBody::H2(h2) => match h2.left {
                Some(left) => SizeHint::with_exact(left),
                None => SizeHint::default(),
            },
        }
    }
}
