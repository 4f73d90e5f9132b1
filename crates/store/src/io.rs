//! Reading a connection.
//!
//! Tokio's sockets are edge-triggered: readiness is cleared only when a read
//! fails with `WouldBlock`, and a readiness event that arrives while we hold
//! it is kept only if nothing clears readiness on our behalf. An earlier
//! version cleared readiness itself after a short read (to save the empty
//! read a request/reply client costs); an event that arrived between the
//! short read and that clearing was then lost, and bytes already in the
//! socket were never read — the connection stalled for good (see the
//! regression test `pipelined_pings_never_stall` in `tests/server.rs`).
//! So we read until the socket itself says `WouldBlock`.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// A client connection: plain TCP, or TLS over it.
pub(crate) trait Socket: AsyncWrite + Unpin + Send {
    /// Appends what one read gives to `buf`; `Ok(0)` at end of stream.
    fn poll_read_into(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>>;
}

impl Socket for TcpStream {
    fn poll_read_into(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        poll_read_into(self, buf, cx)
    }
}

impl Socket for tokio_rustls::server::TlsStream<TcpStream> {
    /// Through `AsyncRead` (rustls decrypts into the buffer): the bytes
    /// read into are zeroed first, since no `unsafe` may hand it
    /// uninitialised memory.
    fn poll_read_into(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        let start = buf.len();
        buf.resize(start + MIN_ROOM, 0);
        let mut read = ReadBuf::new(&mut buf[start..]);
        let polled = Pin::new(&mut *self).poll_read(cx, &mut read);
        let n = read.filled().len();
        buf.truncate(start + if polled.is_ready() { n } else { 0 });
        match polled {
            Poll::Ready(Ok(())) => Poll::Ready(Ok(n)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// Room guaranteed for one read.
const MIN_ROOM: usize = 4 * 1024;
/// What is reserved when the room runs low.
const RESERVE: usize = 16 * 1024;

/// Appends what one read gives to `buf`; `Ok(0)` at end of stream.
///
/// Waits through the socket's own reader slot (`poll_read_ready`), which
/// keeps the task's waker from one read to the next, rather than through
/// `readable()`, whose future joins and leaves a waiter list on every read.
/// Readiness is cleared only by a real `WouldBlock` from the kernel
/// (`try_read_buf` does that), never by us.
pub(crate) fn poll_read_into(
    stream: &TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_ROOM {
        buf.reserve(RESERVE);
    }
    loop {
        ready!(stream.poll_read_ready(cx))?;
        match stream.try_read_buf(buf) {
            Ok(n) => return Poll::Ready(Ok(n)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}
