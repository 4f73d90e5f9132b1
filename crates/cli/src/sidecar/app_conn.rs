//! The sidecar's HTTP/1.1 client to the app: loopback TCP
//! (`http://HOST:PORT`) or a Unix socket (`unix:/PATH`), with a small pool
//! of keep-alive connections.
//!
//! The exchange runs in the request's own task, on a connection it takes
//! from the pool: the request head is written in one system call (with
//! the body when it is already there), the answer's head is parsed in
//! place with `httparse`, and a small answer's body is read into the
//! connection's own buffer, which stays with it in the pool. No
//! connection task and no channels between tasks (hyper's pooled client,
//! used before, handed each request to its connection task and the answer
//! and its body back), and few allocations of 1 KiB or more per request:
//! at a steady rate those made glibc's malloc consolidate its bins on
//! nearly every request, a sixth of the sidecar's CPU
//! (`docs/benchmarks.md`, session 10).
//!
//! Framing of the app's answers (RFC 9112 §6.3): no body for `HEAD` and
//! for `204` and `304`; `Transfer-Encoding` ending in `chunked` (decoded
//! here; the client gets the body re-framed by the server side);
//! `Content-Length`; otherwise the body ends when the app closes. An
//! answer with both `Transfer-Encoding` and `Content-Length`, or lengths
//! that differ, is refused. Interim `1xx` heads are dropped; `101` is
//! refused (upgrades are not supported). A connection goes back to the
//! pool only after an answer that ended exactly where its framing said,
//! on HTTP/1.1 without `Connection: close`.
//!
//! A pooled connection the app closed meanwhile is noticed when it is
//! taken (a read that would block: alive; end of file or data: dropped).
//! If the app closes one just after that, an idempotent request that has
//! not sent a byte of body yet and got no byte of answer is sent once
//! more on a new connection; any other failure is the caller's 502.
//!
//! A Unix socket skips the TCP stack on both sides of the app hop (no
//! segments, acknowledgements or loopback routing per message).

use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Version};
use http_body_util::BodyExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// Longest wait for a connection to the app.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Idle connections kept for reuse.
const MAX_IDLE: usize = 64;

/// An idle connection older than this is closed rather than reused.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Most headers in an answer of the app.
const MAX_HEADERS: usize = 128;

/// Request bytes gathered before they are written to the app.
const WRITE_AT: usize = 64 << 10;

/// Bytes asked for in one read.
const READ_SIZE: usize = 16 << 10;

/// Largest chunk-size line or trailer section accepted from the app.
const MAX_CHUNK_META: usize = 16 << 10;

/// Where the app listens.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// `host:port`, by TCP.
    Tcp(String),
    /// The path of a Unix socket.
    Unix(PathBuf),
}

/// The client: where the app is, and the idle connections to it.
pub(crate) struct AppClient {
    target: Target,
    /// The `Host` a request without one gets.
    host: HeaderValue,
    /// Largest answer head accepted.
    max_head: usize,
    idle: Arc<Pool>,
}

/// Idle keep-alive connections, the most recent last, each with its read
/// buffer (empty; its memory is reused once the last answer read into it
/// has been sent on).
#[derive(Default)]
struct Pool {
    conns: Mutex<Vec<(Conn, BytesMut, Instant)>>,
}

impl Pool {
    /// The most recent idle connection the app has not closed.
    fn take(&self) -> Option<(Conn, BytesMut)> {
        loop {
            let (conn, buf, since) = self
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .pop()?;
            if since.elapsed() < IDLE_TIMEOUT && conn.idle_and_open() {
                return Some((conn, buf));
            }
        }
    }

    /// Keeps `conn` for the next request, and drops stale ones.
    fn put(&self, conn: Conn, buf: BytesMut) {
        let mut conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
        conns.retain(|(_, _, since)| since.elapsed() < IDLE_TIMEOUT);
        if conns.len() < MAX_IDLE {
            conns.push((conn, buf, Instant::now()));
        }
    }
}

/// A connection to the app.
enum Conn {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Conn {
    /// An idle connection is usable: nothing to read, not closed.
    fn idle_and_open(&self) -> bool {
        let mut probe = [0u8; 1];
        let read = match self {
            Conn::Tcp(s) => s.try_read(&mut probe),
            Conn::Unix(s) => s.try_read(&mut probe),
        };
        matches!(read, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_flush(cx),
            Conn::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// How the answer's body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// After this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
    /// When the app closes the connection.
    Close,
}

/// An answer whose head has arrived; its body is still to be read.
pub(crate) struct Answer {
    /// Status, version and headers (hop-by-hop ones included).
    pub(crate) parts: http::response::Parts,
    /// How the body ends.
    pub(crate) framing: Framing,
    conn: Conn,
    /// Body bytes read with the head.
    buf: BytesMut,
    keep_alive: bool,
    pool: Arc<Pool>,
}

fn invalid(msg: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

/// Why a request failed, and whether it may be sent again.
struct Failed {
    error: io::Error,
    /// Nothing of the request's body was consumed and nothing of an
    /// answer arrived: sending it again on a new connection is safe.
    retry: bool,
}

impl AppClient {
    /// A client of the app at `target`; answers' heads up to `max_head`
    /// bytes.
    pub(crate) fn new(target: Target, max_head: usize) -> Self {
        let host = match &target {
            Target::Tcp(authority) => HeaderValue::from_str(authority).ok(),
            Target::Unix(_) => None,
        }
        .unwrap_or_else(|| HeaderValue::from_static("localhost"));
        Self {
            target,
            host,
            max_head,
            idle: Arc::default(),
        }
    }

    async fn connect(&self) -> io::Result<Conn> {
        let connecting = async {
            Ok::<_, io::Error>(match &self.target {
                Target::Tcp(addr) => {
                    let s = TcpStream::connect(addr.as_str()).await?;
                    s.set_nodelay(true)?;
                    Conn::Tcp(s)
                }
                Target::Unix(path) => Conn::Unix(UnixStream::connect(path).await?),
            })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(c) => c,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connecting to the app timed out",
            )),
        }
    }

    /// Sends `req` (its target's path and query, its headers as they are;
    /// the caller removed the hop-by-hop ones), with more header lines
    /// that `extra` appends (each ending in CRLF, about `extra_len` bytes
    /// in all), and reads the answer's head.
    pub(crate) async fn send(
        &self,
        req: Request<Body>,
        extra_len: usize,
        extra: impl FnOnce(&mut Vec<u8>),
    ) -> io::Result<Answer> {
        let (parts, mut body) = req.into_parts();
        let head_only = parts.method == Method::HEAD;
        // RFC 9110 §9.2.2: only an idempotent request is sent again.
        let idempotent = [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ]
        .contains(&parts.method);
        let (head, chunked) = self.request_head(
            &parts.method,
            &parts.uri,
            &parts.headers,
            extra_len,
            extra,
            &body,
        );
        let mut pooled = self.idle.take();
        let mut retried = false;
        loop {
            let (conn, buf, reused) = match pooled.take() {
                Some((c, buf)) => (c, buf, true),
                None => (
                    self.connect().await?,
                    BytesMut::with_capacity(READ_SIZE),
                    false,
                ),
            };
            match self
                .exchange(conn, buf, &head, &mut body, chunked, head_only)
                .await
            {
                Ok(answer) => return Ok(answer),
                Err(f) if f.retry && idempotent && reused && !retried => {
                    tracing::debug!(error = %f.error, "a pooled connection to the app failed; once more on a new one");
                    retried = true;
                }
                Err(f) => return Err(f.error),
            }
        }
    }

    /// The request's head, and whether its body goes chunked.
    fn request_head(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        extra_len: usize,
        extra: impl FnOnce(&mut Vec<u8>),
        body: &Body,
    ) -> (Vec<u8>, bool) {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let mut head = Vec::with_capacity(256 + headers.len() * 64 + target.len() + extra_len);
        head.extend_from_slice(method.as_str().as_bytes());
        head.push(b' ');
        head.extend_from_slice(target.as_bytes());
        head.extend_from_slice(b" HTTP/1.1\r\n");
        if !headers.contains_key(HOST) {
            put_header(&mut head, HOST.as_str(), self.host.as_bytes());
        }
        for (name, value) in headers {
            if name != CONTENT_LENGTH {
                put_header(&mut head, name.as_str(), value.as_bytes());
            }
        }
        extra(&mut head);
        let size = http_body::Body::size_hint(body);
        let chunked = match size.exact() {
            Some(0) if !headers.contains_key(CONTENT_LENGTH) => false,
            Some(n) => {
                put_header(&mut head, CONTENT_LENGTH.as_str(), n.to_string().as_bytes());
                false
            }
            None => {
                put_header(&mut head, TRANSFER_ENCODING.as_str(), b"chunked");
                true
            }
        };
        head.extend_from_slice(b"\r\n");
        (head, chunked)
    }

    /// One try of a request on `conn`: the head and body out, the answer's
    /// head in.
    async fn exchange(
        &self,
        mut conn: Conn,
        mut buf: BytesMut,
        head: &[u8],
        body: &mut Body,
        chunked: bool,
        head_only: bool,
    ) -> Result<Answer, Failed> {
        let mut consumed = false;
        let sent = async {
            if http_body::Body::is_end_stream(body) {
                return conn.write_all(head).await;
            }
            let mut out = BytesMut::from(head);
            loop {
                // Frames already there go out with the head in one write.
                let frame = match std::future::poll_fn(|cx| {
                    Poll::Ready(http_body::Body::poll_frame(Pin::new(&mut *body), cx))
                })
                .await
                {
                    Poll::Ready(f) => f,
                    Poll::Pending => {
                        conn.write_all(&out).await?;
                        out.clear();
                        body.frame().await
                    }
                };
                let Some(frame) = frame else { break };
                consumed = true;
                let frame =
                    frame.map_err(|e| io::Error::other(format!("the client's body: {e}")))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if data.is_empty() {
                    continue;
                }
                if chunked {
                    out.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    out.extend_from_slice(&data);
                    out.extend_from_slice(b"\r\n");
                } else {
                    out.extend_from_slice(&data);
                }
                if out.len() >= WRITE_AT {
                    conn.write_all(&out).await?;
                    out.clear();
                }
            }
            if chunked {
                out.extend_from_slice(b"0\r\n\r\n");
            }
            conn.write_all(&out).await
        }
        .await;
        // An app may answer (and close) before it read the whole body: its
        // answer counts, if it sent one.
        let read = self.read_head(&mut conn, &mut buf, head_only).await;
        match (sent, read) {
            (_, Ok((parts, framing, keep_alive))) => Ok(Answer {
                parts,
                framing,
                conn,
                buf,
                keep_alive,
                pool: self.idle.clone(),
            }),
            (Err(error), Err(_)) | (Ok(()), Err(error)) => Err(Failed {
                retry: !consumed && buf.is_empty() && is_closed(&error),
                error,
            }),
        }
    }

    /// Reads and parses the answer's head (interim `1xx` heads skipped).
    async fn read_head(
        &self,
        conn: &mut Conn,
        buf: &mut BytesMut,
        head_only: bool,
    ) -> io::Result<(http::response::Parts, Framing, bool)> {
        loop {
            if !buf.is_empty() {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut res = httparse::Response::new(&mut headers);
                match res.parse(buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let code = res.code.unwrap_or(0);
                        if code == 101 {
                            return Err(invalid("the app switched protocols"));
                        }
                        if (100..200).contains(&code) {
                            buf.advance(len);
                            continue;
                        }
                        // Parsed again from the frozen head, so that header
                        // values are slices of it, not copies.
                        let head = buf.split_to(len).freeze();
                        let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                        let mut res = httparse::Response::new(&mut headers);
                        if !matches!(res.parse(&head), Ok(httparse::Status::Complete(_))) {
                            return Err(invalid("the app's answer head is malformed"));
                        }
                        return parse_answer(&res, &head, head_only);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(_) => return Err(invalid("the app's answer head is malformed")),
                }
            }
            if buf.len() >= self.max_head {
                return Err(invalid("the app's answer head is too large"));
            }
            buf.reserve(READ_SIZE);
            if conn.read_buf(buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the app closed the connection before answering",
                ));
            }
        }
    }
}

/// The connection broke or closed: what a pooled connection the app
/// closed meanwhile looks like.
fn is_closed(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
    )
}

/// Appends the header line `name: value` and its CRLF.
pub(crate) fn put_header(head: &mut Vec<u8>, name: &str, value: &[u8]) {
    head.extend_from_slice(name.as_bytes());
    head.extend_from_slice(b": ");
    head.extend_from_slice(value);
    head.extend_from_slice(b"\r\n");
}

/// The answer's status, headers, framing and whether its connection may
/// be kept.
fn parse_answer(
    res: &httparse::Response<'_, '_>,
    head: &Bytes,
    head_only: bool,
) -> io::Result<(http::response::Parts, Framing, bool)> {
    let status = StatusCode::from_u16(res.code.unwrap_or(0))
        .map_err(|_| invalid("the app's status is not valid"))?;
    let version = if res.version == Some(1) {
        Version::HTTP_11
    } else {
        Version::HTTP_10
    };
    let mut headers = HeaderMap::with_capacity(res.headers.len());
    let mut length: Option<u64> = None;
    let mut chunked = None;
    let mut close = version != Version::HTTP_11;
    for h in res.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| invalid("the app sent a header name that is not valid"))?;
        let value = HeaderValue::from_maybe_shared(head.slice_ref(h.value))
            .map_err(|_| invalid("the app sent a header value that is not valid"))?;
        if name == CONTENT_LENGTH {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| invalid("the app's Content-Length is not a number"))?;
            if length.is_some_and(|l| l != n) {
                return Err(invalid("the app sent differing Content-Lengths"));
            }
            length = Some(n);
        } else if name == TRANSFER_ENCODING {
            // Only the last coding counts.
            let last = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.rsplit(',').next())
                .map(str::trim);
            chunked = Some(last.is_some_and(|c| c.eq_ignore_ascii_case("chunked")));
        } else if name == CONNECTION {
            let tokens = std::str::from_utf8(h.value).unwrap_or("");
            for t in tokens.split(',').map(str::trim) {
                if t.eq_ignore_ascii_case("close") {
                    close = true;
                } else if t.eq_ignore_ascii_case("keep-alive") && version == Version::HTTP_10 {
                    close = false;
                }
            }
        }
        headers.append(name, value);
    }
    let framing =
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            Framing::Length(0)
        } else {
            match (chunked, length) {
                (Some(_), Some(_)) => {
                    return Err(invalid(
                        "the app sent both Transfer-Encoding and Content-Length",
                    ))
                }
                (Some(true), None) => Framing::Chunked,
                (Some(false), None) | (None, None) => Framing::Close,
                (None, Some(n)) => Framing::Length(n),
            }
        };
    if framing == Framing::Close {
        close = true;
    }
    let mut parts = http::Response::new(()).into_parts().0;
    parts.status = status;
    parts.version = version;
    parts.headers = headers;
    Ok((parts, framing, !close))
}

impl Answer {
    /// Reads a body of `Framing::Length` whole (the caller checked its
    /// length) and puts the connection back in the pool.
    pub(crate) async fn read_whole(mut self) -> io::Result<(http::response::Parts, Bytes)> {
        let Framing::Length(n) = self.framing else {
            return Err(invalid("not an answer of known length"));
        };
        let n = usize::try_from(n).map_err(|_| invalid("the app's answer is too long"))?;
        while self.buf.len() < n {
            self.buf.reserve((n - self.buf.len()).min(READ_SIZE * 4));
            if self.conn.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the app's answer broke off",
                ));
            }
        }
        let body = self.buf.split_to(n).freeze();
        if self.keep_alive && self.buf.is_empty() {
            self.pool.put(self.conn, self.buf);
        }
        Ok((self.parts, body))
    }

    /// The head, and the body as a stream; the connection goes back to the
    /// pool when the body has ended as its framing said.
    pub(crate) fn into_streaming(self) -> (http::response::Parts, Body) {
        let Answer {
            parts,
            framing,
            conn,
            buf,
            keep_alive,
            pool,
        } = self;
        let state = Streaming {
            conn: Some(conn),
            buf,
            keep_alive,
            pool,
            phase: match framing {
                Framing::Length(n) => Phase::Length(n),
                Framing::Chunked => Phase::ChunkSize,
                Framing::Close => Phase::Close,
            },
        };
        let stream = futures_util::stream::try_unfold(state, |mut s| async move {
            let next = s.next().await?;
            Ok::<_, io::Error>(next.map(|data| (data, s)))
        });
        (parts, Body::from_stream(stream))
    }
}

/// Where a streamed body is.
enum Phase {
    /// This many bytes left.
    Length(u64),
    /// Before a chunk-size line.
    ChunkSize,
    /// In a chunk: this many bytes left.
    ChunkData(u64),
    /// The CRLF after a chunk's data.
    ChunkEnd,
    /// The trailer section after the last chunk.
    Trailers,
    /// Until the app closes.
    Close,
    /// Ended.
    Done,
}

struct Streaming {
    /// `None` once it went back to the pool.
    conn: Option<Conn>,
    buf: BytesMut,
    keep_alive: bool,
    pool: Arc<Pool>,
    phase: Phase,
}

impl Streaming {
    /// More bytes from the app; `Ok(0)` at its end of file.
    async fn fill(&mut self) -> io::Result<usize> {
        let Some(conn) = self.conn.as_mut() else {
            return Ok(0);
        };
        self.buf.reserve(READ_SIZE);
        conn.read_buf(&mut self.buf).await
    }

    async fn fill_or_fail(&mut self) -> io::Result<()> {
        if self.fill().await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the app's answer broke off",
            ));
        }
        Ok(())
    }

    /// The body ended where its framing said.
    fn finish(&mut self) -> Option<Bytes> {
        self.phase = Phase::Done;
        if self.keep_alive && self.buf.is_empty() {
            if let Some(conn) = self.conn.take() {
                self.pool.put(conn, std::mem::take(&mut self.buf));
            }
        }
        None
    }

    /// What is buffered of the next `left` bytes of the body, reading more
    /// first if nothing is (at least one byte; an error if the app closed).
    async fn up_to(&mut self, left: u64) -> io::Result<Bytes> {
        if self.buf.is_empty() {
            self.fill_or_fail().await?;
        }
        let take = self
            .buf
            .len()
            .min(usize::try_from(left).unwrap_or(usize::MAX));
        Ok(self.buf.split_to(take).freeze())
    }

    /// The next piece of the body, or `None` at its end.
    async fn next(&mut self) -> io::Result<Option<Bytes>> {
        loop {
            match self.phase {
                Phase::Done => return Ok(None),
                Phase::Length(0) => return Ok(self.finish()),
                Phase::Length(left) => {
                    let piece = self.up_to(left).await?;
                    self.phase = Phase::Length(left - piece.len() as u64);
                    return Ok(Some(piece));
                }
                Phase::Close => {
                    if self.buf.is_empty() && self.fill().await? == 0 {
                        self.phase = Phase::Done;
                        return Ok(None);
                    }
                    return Ok(Some(self.buf.split().freeze()));
                }
                Phase::ChunkSize => match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete((len, size))) => {
                        self.buf.advance(len);
                        self.phase = if size == 0 {
                            Phase::Trailers
                        } else {
                            Phase::ChunkData(size)
                        };
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() > MAX_CHUNK_META {
                            return Err(invalid("the app's chunk-size line is too long"));
                        }
                        self.fill_or_fail().await?;
                    }
                    Err(_) => return Err(invalid("the app's chunk size is malformed")),
                },
                Phase::ChunkData(left) => {
                    let piece = self.up_to(left).await?;
                    let left = left - piece.len() as u64;
                    self.phase = if left == 0 {
                        Phase::ChunkEnd
                    } else {
                        Phase::ChunkData(left)
                    };
                    return Ok(Some(piece));
                }
                Phase::ChunkEnd => {
                    if self.buf.len() < 2 {
                        self.fill_or_fail().await?;
                        continue;
                    }
                    if &self.buf[..2] != b"\r\n" {
                        return Err(invalid("the app's chunk does not end with CRLF"));
                    }
                    self.buf.advance(2);
                    self.phase = Phase::ChunkSize;
                }
                Phase::Trailers => {
                    // Trailer fields are dropped; an empty line ends them.
                    match self.buf.windows(2).position(|w| w == b"\r\n") {
                        Some(0) => {
                            self.buf.advance(2);
                            return Ok(self.finish());
                        }
                        Some(at) => self.buf.advance(at + 2),
                        None => {
                            if self.buf.len() > MAX_CHUNK_META {
                                return Err(invalid("the app's trailers are too large"));
                            }
                            self.fill_or_fail().await?;
                        }
                    }
                }
            }
        }
    }
}
