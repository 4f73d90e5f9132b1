//! Reading a connection without the empty read per request.
//!
//! Tokio's sockets are edge-triggered: readiness is cleared only when a read
//! fails with `WouldBlock`, so a request/reply client costs three syscalls
//! per request (read, write, and a read that finds nothing), where Redis
//! needs two. When a read returns less than the room it was given, the
//! kernel buffer was empty at that moment, so we clear readiness ourselves
//! through `try_io` (tokio keeps any readiness that arrived meanwhile, by
//! its tick) and save the empty read.

use std::io;
use std::task::{ready, Context, Poll};

use bytes::BytesMut;
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Room guaranteed for one read.
const MIN_ROOM: usize = 4 * 1024;
/// What is reserved when the room runs low.
const RESERVE: usize = 16 * 1024;

/// Appends what one read gives to `buf`; `Ok(0)` at end of stream.
///
/// Waits through the socket's own reader slot (`poll_read_ready`), which
/// keeps the task's waker from one read to the next, rather than through
/// `readable()`, whose future joins and leaves a waiter list on every read.
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
        let room = buf.capacity() - buf.len();
        match stream.try_read_buf(buf) {
            Ok(n) => {
                if n > 0 && n < room {
                    // Drained: mark not-readable without a syscall.
                    let _ = stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                    });
                }
                return Poll::Ready(Ok(n));
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Poll::Ready(Err(e)),
        }
    }
}
