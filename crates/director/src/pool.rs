//! Keep-alive connections to one web server, and the [`RequestBody`]
//! they carry.
//!
//! Our own small pool on hyper's `client::conn::http1` rather than
//! hyper-util's legacy `Client`, for one reason: that client consumes the
//! request, so when the connection is refused the request (and its
//! streamed body) is gone. Here the connection is opened *before* the
//! request is handed over, and `try_send_request` gives the request back
//! when a pooled connection turns out to be closed, so a refused or stale
//! connection never costs the client its request: it is re-sent, body
//! included, to the failover target.
//!
//! Idle connections are kept last-in first-out (the most recently used is
//! the least likely to have been closed by the server), at most
//! `max_idle` of them, each for at most [`MAX_IDLE_AGE`].

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

/// An idle connection older than this is closed instead of reused: web
/// servers commonly close idle keep-alive connections after 30 s or more,
/// and reusing one just as the server closes it would fail a request.
pub(crate) const MAX_IDLE_AGE: Duration = Duration::from_secs(15);

/// How long a pooled connection may take to finish its previous exchange
/// before it is given up for a new one.
const READY_WAIT: Duration = Duration::from_millis(50);

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Nothing listens there (the server is dead): the request never
    /// reached it.
    #[error("connection refused")]
    Refused,
    /// The server did not accept the connection in time.
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    /// Another socket error.
    #[error("cannot connect: {0}")]
    Io(#[source] std::io::Error),
    /// The HTTP/1 client could not be set up on the socket.
    #[error("HTTP handshake failed: {0}")]
    Handshake(#[source] hyper::Error),
}

/// The body of a request sent to a web server: none (health checks,
/// fence requests, bodiless requests and their re-sends) or a client's
/// request body, streamed.
pub(crate) enum RequestBody {
    /// No body.
    Empty,
    /// A client's request body, streamed to a web server; the flag is
    /// set when reading it failed (the client's fault: a malformed chunk,
    /// a connection closed mid-body), so that the failed exchange is not
    /// blamed on the web server.
    Request(Incoming, Arc<AtomicBool>),
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Request(incoming, failed) => {
                let frame = Pin::new(incoming).poll_frame(cx);
                if let Poll::Ready(Some(Err(_))) = &frame {
                    failed.store(true, Ordering::Relaxed);
                }
                frame
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Request(incoming, _) => incoming.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Request(incoming, _) => incoming.size_hint(),
        }
    }
}

/// One HTTP/1.1 connection to a web server.
pub(crate) struct Conn {
    pub(crate) sender: http1::SendRequest<RequestBody>,
    task: AbortHandle,
}

impl Conn {
    /// Closes the connection at once, even with a request in flight.
    pub(crate) fn abort(self) {
        self.task.abort();
    }

    /// A handle that closes the connection at once (for timeouts, when the
    /// connection itself has been moved into the request's future).
    pub(crate) fn abort_handle(&self) -> AbortHandle {
        self.task.clone()
    }
}

struct Idle {
    conn: Conn,
    since: Instant,
}

/// The idle connections to one web server.
pub(crate) struct Pool {
    addr: SocketAddr,
    connect_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<Idle>>,
}

impl Pool {
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration, max_idle: usize) -> Self {
        Self {
            addr,
            connect_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Takes an idle connection: the most recently used one that is ready
    /// for a request, else (when every idle one is still finishing its
    /// previous exchange) the most recent one. Old ones are dropped first,
    /// closed ones on the way.
    ///
    /// Per request, this reads the clock once and usually looks at one
    /// connection: `idle` is in the order the connections came back, so
    /// the old ones are a prefix found by binary search, and the one to
    /// take is normally the last.
    fn take(&self) -> Option<Idle> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let fresh = idle.partition_point(|i| now.saturating_duration_since(i.since) > MAX_IDLE_AGE);
        if fresh > 0 {
            idle.drain(..fresh);
        }
        let mut i = idle.len();
        while i > 0 {
            i -= 1;
            if idle[i].conn.sender.is_closed() {
                idle.remove(i);
            } else if idle[i].conn.sender.is_ready() {
                return Some(idle.remove(i));
            }
        }
        idle.pop()
    }

    /// A connection ready for a request: a pooled one if one is alive, else
    /// a new one, within `limit` if given (never longer than the pool's
    /// connect timeout).
    pub(crate) async fn get(&self, limit: Option<Duration>) -> Result<Conn, ConnectError> {
        while let Some(mut idle) = self.take() {
            if idle.conn.sender.is_ready() {
                return Ok(idle.conn);
            }
            // Usually a matter of microseconds: the connection's task has
            // not yet seen the end of the previous response.
            match tokio::time::timeout(READY_WAIT, idle.conn.sender.ready()).await {
                Ok(Ok(())) => return Ok(idle.conn),
                _ => idle.conn.abort(),
            }
        }
        self.connect(limit).await
    }

    /// Opens a new connection, within `limit` if given (never longer than
    /// the pool's connect timeout).
    pub(crate) async fn connect(&self, limit: Option<Duration>) -> Result<Conn, ConnectError> {
        let stream = open(self.addr, within(self.connect_timeout, limit)).await?;
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(ConnectError::Handshake)?;
        let addr = self.addr;
        let task = tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%addr, error = %e, "web server connection ended with an error");
            }
        })
        .abort_handle();
        Ok(Conn { sender, task })
    }

    /// Gives back a connection whose exchange is complete.
    pub(crate) fn put(&self, conn: Conn) {
        if conn.sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push(Idle {
                conn,
                since: Instant::now(),
            });
        }
    }

    /// Closes every idle connection (the server was marked down).
    pub(crate) fn clear(&self) {
        let drained: Vec<Idle> =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(drained);
    }
}

/// Keep-alive TCP connections to one web server for the fast path
/// (`fast_path.rs`), which speaks HTTP/1.1 on them itself. Same rules as
/// [`Pool`]: last in first out, at most `max_idle`, each for at most
/// [`MAX_IDLE_AGE`], one pool per worker thread (a socket is driven by the
/// event loop it was registered with).
pub(crate) struct RawPool {
    addr: SocketAddr,
    connect_timeout: Duration,
    max_idle: usize,
    idle: Mutex<Vec<(TcpStream, Instant)>>,
}

impl RawPool {
    pub(crate) fn new(addr: SocketAddr, connect_timeout: Duration, max_idle: usize) -> Self {
        Self {
            addr,
            connect_timeout,
            max_idle,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// A pooled connection that still looks open, else a new one; `true`
    /// with a pooled one.
    #[cfg(test)]
    pub(crate) async fn get(&self) -> Result<(TcpStream, bool), ConnectError> {
        match self.idle(false, Reuse::Checked) {
            Some(stream) => Ok((stream, true)),
            None => Ok((self.connect(None).await?, false)),
        }
    }

    /// The pooled connection for one attempt of a request, checked as
    /// `reuse` says; none when the attempt asks for a new one (`fresh`:
    /// its pooled one was found closed) or none is idle, and the caller
    /// [connects](Self::connect). Not `async`: the common case, an idle
    /// connection, creates no future (each one costs its caller a copy of
    /// its state).
    pub(crate) fn idle(&self, fresh: bool, reuse: Reuse) -> Option<TcpStream> {
        if fresh {
            None
        } else {
            self.take(reuse)
        }
    }

    fn take(&self, reuse: Reuse) -> Option<TcpStream> {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let fresh =
            idle.partition_point(|(_, since)| now.saturating_duration_since(*since) > MAX_IDLE_AGE);
        if fresh > 0 {
            idle.drain(..fresh);
        }
        while let Some((stream, _)) = idle.pop() {
            if reuse == Reuse::Unchecked || looks_open(&stream) {
                return Some(stream);
            }
        }
        None
    }

    /// Opens a new connection, within `limit` if given (never longer than
    /// the pool's connect timeout).
    pub(crate) async fn connect(&self, limit: Option<Duration>) -> Result<TcpStream, ConnectError> {
        open(self.addr, within(self.connect_timeout, limit)).await
    }

    /// Gives back a connection whose exchange is complete, with nothing
    /// left unread.
    pub(crate) fn put(&self, stream: TcpStream) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < self.max_idle {
            idle.push((stream, Instant::now()));
        }
    }

    /// Closes every idle connection (the server was marked down).
    pub(crate) fn clear(&self) {
        let drained =
            std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(drained);
    }
}

/// A TCP connection to `addr`, refused, timed out or open.
/// The time allowed to connect: the pool's `timeout`, or `limit` if that
/// is shorter.
fn within(timeout: Duration, limit: Option<Duration>) -> Duration {
    limit.map_or(timeout, |l| l.min(timeout))
}

async fn open(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Err(_) => return Err(ConnectError::Timeout(timeout)),
        // Reset before the connection was ours: the handshake completed in
        // the kernel, but the listening socket closed without accepting
        // it (a server dying, with our connection in its queue). Nothing
        // listens there, exactly as when refused.
        Ok(Err(e))
            if matches!(
                e.kind(),
                std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
            ) =>
        {
            return Err(ConnectError::Refused)
        }
        Ok(Err(e)) => return Err(ConnectError::Io(e)),
        Ok(Ok(s)) => s,
    };
    // Requests and responses are written whole: no need to wait for more
    // data before sending.
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// How a pooled connection is checked before a request goes out on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reuse {
    /// Asked of the kernel ([`looks_open`], one system call): for a
    /// request that cannot be sent again once it went out (a body, or a
    /// method that is not idempotent), a dead connection must be found
    /// before the request is written to it.
    Checked,
    /// Taken as it is: for a request that may be sent again (idempotent,
    /// no body), a connection the server closed fails the exchange with
    /// nothing received, and the request goes again on a new connection
    /// (`Attempts::retry`), refused at once if the server is dead. That
    /// saves the check's system call on nearly every request, at the
    /// price of one wasted write in the rare case.
    Unchecked,
}

impl Reuse {
    /// The check a request needs: none when it may be sent again.
    pub(crate) fn for_request(replayable: bool) -> Self {
        if replayable {
            Reuse::Unchecked
        } else {
            Reuse::Checked
        }
    }
}

/// Whether an idle keep-alive connection is still open: nothing (no bytes,
/// no end of stream) may arrive on it between two exchanges.
///
/// Asks the kernel (a non-blocking `MSG_PEEK`), not tokio's readiness: the
/// event loop learns of a web server's FIN only when it next polls, and a
/// server killed just before a request would otherwise be sent that request
/// on a connection its kernel then resets — a 502 for a request that never
/// reached a live server (issue 14, item 6). One system call per reused
/// connection, so it is asked only for requests that cannot be sent
/// again ([`Reuse`]).
fn looks_open(stream: &TcpStream) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit(); 1];
    match socket2::SockRef::from(stream).peek(&mut byte) {
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        // The end of the stream, or stray bytes: not reusable.
        Ok(_) => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    /// A web server that answers every request with an empty 200, keeping
    /// connections alive.
    async fn server() -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let service = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(http::Response::new(RequestBody::Empty))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        addr
    }

    fn pool(addr: SocketAddr) -> Pool {
        Pool::new(addr, Duration::from_secs(5), 8)
    }

    async fn idle_count(pool: &Pool) -> usize {
        pool.idle.lock().unwrap().len()
    }

    /// Opens `n` connections and gives them back to the pool, in order;
    /// their task ids.
    async fn open_and_return(pool: &Pool, n: usize) -> Vec<tokio::task::Id> {
        let mut ids = Vec::new();
        for _ in 0..n {
            let conn = pool.connect(None).await.unwrap();
            ids.push(conn.task.id());
            pool.put(conn);
        }
        ids
    }

    /// Waits up to 10 s for `cond` to hold of the idle connections.
    async fn until_idle(pool: &Pool, what: &str, cond: impl Fn(&[Idle]) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !cond(&pool.idle.lock().unwrap()) {
            assert!(Instant::now() < deadline, "{what}: not within 10 s");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    #[tokio::test]
    async fn takes_the_most_recently_returned_connection() {
        let pool = pool(server().await);
        let ids = open_and_return(&pool, 3).await;
        assert_eq!(idle_count(&pool).await, 3);
        // Every connection's task has run (a new one is not ready yet).
        until_idle(&pool, "every connection ready", |idle| {
            idle.iter().all(|i| i.conn.sender.is_ready())
        })
        .await;
        let taken = pool.get(None).await.unwrap();
        assert_eq!(taken.task.id(), ids[2]);
        assert_eq!(idle_count(&pool).await, 2);
    }

    #[tokio::test]
    async fn old_idle_connections_are_dropped_not_reused() {
        let pool = pool(server().await);
        let Some(long_ago) = Instant::now().checked_sub(MAX_IDLE_AGE * 2) else {
            eprintln!("SKIPPED: the monotonic clock is younger than {MAX_IDLE_AGE:?}");
            return;
        };
        let ids = open_and_return(&pool, 3).await;
        // The first two came back long ago, the third just now.
        {
            let mut idle = pool.idle.lock().unwrap();
            idle[0].since = long_ago;
            idle[1].since = long_ago;
        }
        let taken = pool.get(None).await.unwrap();
        assert_eq!(taken.task.id(), ids[2]);
        assert_eq!(idle_count(&pool).await, 0, "the old ones were dropped");
    }

    #[tokio::test]
    async fn closed_idle_connections_are_skipped() {
        let pool = pool(server().await);
        let ids = open_and_return(&pool, 2).await;
        // The most recent one closes while idle (its task ends).
        let last = pool.idle.lock().unwrap()[1].conn.task.clone();
        last.abort();
        until_idle(&pool, "the aborted connection closed", |idle| {
            idle[1].conn.sender.is_closed()
        })
        .await;
        let taken = pool.get(None).await.unwrap();
        assert_eq!(taken.task.id(), ids[0]);
        assert_eq!(idle_count(&pool).await, 0);
    }

    #[test]
    fn a_connect_limit_only_ever_shortens_the_connect_timeout() {
        let whole = Duration::from_secs(1);
        assert_eq!(within(whole, None), whole);
        assert_eq!(
            within(whole, Some(Duration::from_millis(50))),
            Duration::from_millis(50)
        );
        assert_eq!(within(whole, Some(Duration::from_secs(5))), whole);
    }
}
