//! Reading a connection.
//!
//! Tokio's sockets are edge-triggered: readiness is cleared only when a read
//! fails with `WouldBlock` — or, in the socket's own `AsyncRead`, when a read
//! returns less than the room it was given (the kernel buffer was empty at
//! that moment). Tokio clears readiness then with the *tick of the event the
//! read began from*, so an event that arrived meanwhile is kept. That saves
//! the empty read a request/reply client would cost per request (three
//! syscalls where Redis needs two).
//!
//! An earlier version cleared readiness itself after a short read, through
//! `try_io`, which clears the readiness current at *that* moment: an event
//! that arrived between the short read and the clearing was lost, and bytes
//! already in the socket were never read — the connection stalled for good
//! (the regression tests `pipelined_pings_never_stall*` in
//! `tests/server.rs`). So we never clear readiness ourselves.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use tokio::io::AsyncWrite;
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
    /// Through `AsyncRead` (rustls decrypts into the buffer's spare room).
    fn poll_read_into(
        &mut self,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        if buf.capacity() - buf.len() < MIN_ROOM {
            buf.reserve(RESERVE);
        }
        tokio_util::io::poll_read_buf(Pin::new(self), cx, buf)
    }
}

/// Room guaranteed for one read.
const MIN_ROOM: usize = 4 * 1024;
/// What is reserved when the room runs low.
const RESERVE: usize = 16 * 1024;
/// Room for a read that follows one which filled its room: a client that
/// sends large batches (16 SETs of 1 KB are 17 KB) gets them read in one
/// or two system calls, as Redis's greedy query buffer does, and only
/// such a connection holds a buffer this large.
const BIG_ROOM: usize = 64 * 1024;

/// Makes room in `buf` for the next read and returns it: at least
/// [`BIG_ROOM`] when the last read filled its room (`big`), else at least
/// `MIN_ROOM`. A read that returns exactly the room may have left more
/// in the socket.
pub(crate) fn make_room(buf: &mut BytesMut, big: bool) -> usize {
    if buf.is_empty() {
        // Every request read so far was executed, but the buffer still
        // starts where the last read ended: take back the room before it
        // (nothing to move, no allocation). The next read then gets the
        // whole allocation, and a client whose batches are larger than
        // what is left at the end (16 SETs of 1 KB are 17 KB) sends each
        // in one read, as Redis's greedy query buffer reads it, instead
        // of two. Reclaiming anything reclaims it all; without room
        // before the start, this changes nothing.
        let _ = buf.try_reclaim(buf.capacity() + 1);
    }
    let (want, reserve) = if big {
        (BIG_ROOM, BIG_ROOM)
    } else {
        (MIN_ROOM, RESERVE)
    };
    if buf.capacity() - buf.len() < want {
        buf.reserve(reserve);
    }
    buf.capacity() - buf.len()
}

/// Appends what one read gives to `buf`; `Ok(0)` at end of stream.
///
/// Reads through the socket's `AsyncRead`, which waits through its own
/// reader slot (keeping the task's waker from one read to the next) and
/// clears readiness only tick-safely (see the module's notes).
pub(crate) fn poll_read_into(
    stream: &mut TcpStream,
    buf: &mut BytesMut,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    if buf.capacity() - buf.len() < MIN_ROOM {
        buf.reserve(RESERVE);
    }
    tokio_util::io::poll_read_buf(Pin::new(stream), cx, buf)
}

#[cfg(test)]
mod tests {
    use bytes::{Buf, BytesMut};

    use super::{make_room, MIN_ROOM};

    /// A buffer whose requests were all executed gives its next read the
    /// whole allocation, not only what is left after the last read.
    #[test]
    fn an_emptied_buffer_gives_the_next_read_all_its_room() {
        let mut buf = BytesMut::with_capacity(32 * 1024);
        let whole = buf.capacity();
        buf.extend_from_slice(&[b'x'; 20 * 1024]);
        buf.advance(20 * 1024);
        assert!(buf.capacity() - buf.len() >= MIN_ROOM, "no reserve needed");
        assert_eq!(make_room(&mut buf, false), whole);
        // A partial request left over keeps its place.
        buf.extend_from_slice(&[b'y'; 10 * 1024]);
        buf.advance(9 * 1024);
        let room = make_room(&mut buf, false);
        assert_eq!(&buf[..], &[b'y'; 1024][..]);
        assert_eq!(room, buf.capacity() - buf.len());
        assert!(room >= MIN_ROOM);
    }
}
