//! HTTP/2 client connections (ALPN `h2` on the TLS listener) served with
//! the `h2` crate directly, not hyper's server.
//!
//! hyper's HTTP/2 server spawns a task per stream, moves the request's
//! future into it, wraps the stream's body in a channel-backed `Incoming`
//! and pipes the response through its own body adapter. Here every
//! stream's exchange runs inside the connection's own task: the streams
//! are a `FuturesUnordered` polled together with the connection (which
//! accepts new streams and moves the frames), so a request costs no task
//! spawn, no cross-task wake-ups, and its frames go out with the
//! connection's next flush.
//!
//! Each stream is handed to [`proxy::handle`] like a request of hyper's
//! server (the same rules: reserved paths, `Host`, forwarded headers,
//! routing, fencing and `421` re-sends, retries, the raw path of
//! `raw_forward.rs` for small bodies, hyper's client for the rest), its
//! body an [`H2Body`] that frees flow-control window as it is read. A
//! client that resets the stream before the answer is ready drops the
//! request's future: an abandoned request is not sent again. The answer's
//! body is sent within the stream's flow-control window, waiting for
//! capacity before each further chunk, so a slow reader holds at most one
//! chunk per stream.
//!
//! The settings are hyper's server's (1 MiB stream and connection
//! windows, 400 KiB send buffer per stream, 1024 locally caused resets),
//! with at most [`MAX_STREAMS`] streams at once and `max_header_size` as
//! the header list limit (larger heads get `431` from the `h2` crate).
//! The client preface must arrive within `header_timeout`. Shutdown sends
//! `GOAWAY`, lets the streams in progress finish, then closes.

use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt as _};
use futures_util::task::AtomicWaker;
use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, DATE, TE, TRANSFER_ENCODING,
    UPGRADE,
};
use http::{Request, Response};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::body::Body;
use crate::client_body::{ClientBody, H2Body};
use crate::io::Activity;
use crate::proxy;
use crate::state::State;

/// Most streams one client connection may have open at once.
pub(crate) const MAX_STREAMS: u32 = 128;

/// Initial flow-control window of each stream and of the connection
/// (hyper's server's).
const WINDOW: u32 = 1 << 20;

/// Most bytes buffered to send per stream (hyper's server's).
const MAX_SEND_BUFFER: usize = 400 << 10;

/// Resets the director may cause before it closes the connection
/// (hyper's server's).
const MAX_LOCAL_RESETS: usize = 1024;

/// The connection-level headers HTTP/2 forbids in a response (RFC 9113
/// section 8.2.2), besides `Connection` and those it names.
static CONNECTION_HEADERS: [HeaderName; 5] = [
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    TRANSFER_ENCODING,
    UPGRADE,
    TE,
];

/// What every stream of one connection shares.
struct Client {
    shared: Arc<State>,
    peer: SocketAddr,
    forwarded_for: HeaderValue,
    trusted: bool,
}

/// Serves one HTTP/2 connection (its TLS handshake done, ALPN `h2`)
/// until the client closes it, it idles for `idle_timeout`, a protocol
/// error, or shutdown (`GOAWAY`, then the streams in progress finish).
pub(crate) async fn serve<T>(
    shared: &Arc<State>,
    io: T,
    activity: &Activity,
    peer: SocketAddr,
    stop: &mut watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let config = &shared.config;
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_concurrent_streams(MAX_STREAMS)
        .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX))
        .max_local_error_reset_streams(Some(MAX_LOCAL_RESETS))
        .max_send_buffer_size(MAX_SEND_BUFFER);
    let handshake = tokio::time::timeout(config.header_timeout, builder.handshake::<T, Bytes>(io));
    let mut conn = match handshake.await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "HTTP/2 handshake failed");
            return;
        }
        Err(_elapsed) => {
            tracing::debug!(%peer, "HTTP/2 preface not received in time");
            return;
        }
    };
    let client = Client {
        shared: Arc::clone(shared),
        peer,
        forwarded_for: proxy::forwarded_for(peer),
        trusted: crate::forward::trusted_proxy(shared, peer.ip()),
    };
    let mut streams = FuturesUnordered::new();
    let idle = config.idle_timeout;
    let mut idle_timer = pin!(tokio::time::sleep_until(activity.deadline(idle)));
    let mut stopping = pin!(async {
        let _ = stop.wait_for(|stop| *stop).await;
    });
    let mut shutting_down = false;
    let wakes = Wakes::new();
    let streams_waker = wakes.waker(Part::Streams);
    let conn_waker = wakes.waker(Part::Conn);
    let ended = poll_fn(|cx| {
        wakes.start(cx.waker());
        loop {
            // The streams first: what they send goes out with the
            // connection's poll below, in the same flush.
            wakes.streams.store(false, Ordering::SeqCst);
            let mut streams_cx = Context::from_waker(&streams_waker);
            while let Poll::Ready(Some(())) = streams.poll_next_unpin(&mut streams_cx) {}
            // The streams' sending wakes the connection: the poll below
            // serves that wake-up, so it is forgotten here.
            wakes.conn.store(false, Ordering::SeqCst);
            let mut conn_cx = Context::from_waker(&conn_waker);
            if !shutting_down && stopping.as_mut().poll(&mut conn_cx).is_ready() {
                shutting_down = true;
                conn.graceful_shutdown();
            }
            match conn.poll_accept(&mut conn_cx) {
                Poll::Ready(Some(Ok((req, respond)))) => {
                    streams.push(exchange(&client, req, respond));
                    // Polled at the top of the loop.
                    continue;
                }
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => {}
            }
            if idle_timer.as_mut().poll(&mut conn_cx).is_ready() {
                let deadline = activity.deadline(idle);
                if tokio::time::Instant::now() >= deadline {
                    tracing::debug!(%peer, ?idle, "closing idle HTTP/2 client connection");
                    return Poll::Ready(Ok(()));
                }
                idle_timer.as_mut().reset(deadline);
                continue;
            }
            if wakes.finish() {
                return Poll::Pending;
            }
        }
    });
    if let Err(e) = ended.await {
        // Clients that went away, protocol errors: routine on a public
        // listener.
        tracing::debug!(%peer, error = %e, "HTTP/2 client connection ended");
    }
}

/// The connection task's wake-ups, split by what they are for, so that
/// one the task is about to serve anyway costs nothing: when a stream
/// sends its answer, `h2` wakes the connection to flush it; the
/// connection is polled right after the streams, so that wake-up would
/// only schedule the task again for a pass with nothing to do (hyper's
/// server pays it as a cross-task wake-up).
///
/// While the task polls (`polling`), a wake-up only marks its part; the
/// pass clears a part's mark just before polling that part, and at its
/// end polls again if a mark is set. Outside a pass (the event loop, a
/// timer, another thread), a wake-up wakes the task. The mark is set
/// before `polling` is read, and `polling` cleared before the marks are
/// read (all `SeqCst`), so a wake-up racing the end of a pass is seen by
/// one side or the other, never lost.
struct Wakes {
    polling: AtomicBool,
    /// The streams (`FuturesUnordered`) asked to be polled.
    streams: AtomicBool,
    /// The connection, the stop signal or the idle timer did.
    conn: AtomicBool,
    task: AtomicWaker,
}

/// Which part a [`PartWaker`] wakes.
#[derive(Clone, Copy)]
enum Part {
    Streams,
    Conn,
}

/// The waker a part of the connection task is polled with.
struct PartWaker {
    wakes: Arc<Wakes>,
    part: Part,
}

impl Wakes {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            polling: AtomicBool::new(false),
            streams: AtomicBool::new(false),
            conn: AtomicBool::new(false),
            task: AtomicWaker::new(),
        })
    }

    fn waker(self: &Arc<Self>, part: Part) -> Waker {
        Waker::from(Arc::new(PartWaker {
            wakes: Arc::clone(self),
            part,
        }))
    }

    /// A pass of the task begins; `task` wakes it.
    fn start(&self, task: &Waker) {
        self.task.register(task);
        self.polling.store(true, Ordering::SeqCst);
    }

    /// The pass is done: `true` to wait, `false` if a part was woken
    /// meanwhile and must be polled again (the pass goes on).
    fn finish(&self) -> bool {
        self.polling.store(false, Ordering::SeqCst);
        if self.streams.load(Ordering::SeqCst) || self.conn.load(Ordering::SeqCst) {
            self.polling.store(true, Ordering::SeqCst);
            return false;
        }
        true
    }
}

impl Wake for PartWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let wakes = &self.wakes;
        match self.part {
            Part::Streams => wakes.streams.store(true, Ordering::SeqCst),
            Part::Conn => wakes.conn.store(true, Ordering::SeqCst),
        }
        if !wakes.polling.load(Ordering::SeqCst) {
            wakes.task.wake();
        }
    }
}

/// One stream: the request handed to [`proxy::handle`], its answer sent
/// back; dropped unanswered if the client resets the stream first.
async fn exchange(
    client: &Client,
    req: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
) {
    let declared = content_length(req.headers());
    let req = req.map(|recv| ClientBody::H2(H2Body::new(recv, declared)));
    let handled = proxy::handle(
        Arc::clone(&client.shared),
        client.peer,
        client.forwarded_for.clone(),
        client.trusted,
        true,
        req,
    );
    let mut handled = pin!(handled);
    let answered = poll_fn(|cx| {
        if let Poll::Ready(resp) = handled.as_mut().poll(cx) {
            return Poll::Ready(Some(resp));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    let Some(resp) = answered else {
        tracing::debug!(peer = %client.peer, "HTTP/2 stream reset by the client before its answer");
        return;
    };
    send(&mut respond, resp).await;
}

/// A request's `content-length`: `None` when absent, or when its values
/// are not one number (the body's length is then unknown).
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let first = parse_length(values.next()?.as_bytes())?;
    values
        .all(|v| parse_length(v.as_bytes()) == Some(first))
        .then_some(first)
}

fn parse_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// Sends `resp` on the stream: its head without the headers HTTP/2
/// forbids (with `Date` if missing, and `content-length` when the body's
/// length is known), then its body within the flow-control window.
async fn send(respond: &mut h2::server::SendResponse<Bytes>, resp: Response<Body>) {
    let (mut parts, mut body) = resp.into_parts();
    // One pass over the names instead of a hashed look-up per header:
    // the paths to here already removed the connection-level headers, so
    // the strip is a safety net that rarely runs.
    let mut forbidden = false;
    let mut has_date = false;
    let mut has_length = false;
    for name in parts.headers.keys() {
        if *name == DATE {
            has_date = true;
        } else if *name == CONTENT_LENGTH {
            has_length = true;
        } else if *name == CONNECTION || CONNECTION_HEADERS.contains(name) {
            forbidden = true;
        }
    }
    if forbidden {
        strip_connection_headers(&mut parts.headers);
    }
    if !has_date {
        parts.headers.insert(DATE, date::now());
    }
    let end = body.is_end_stream();
    if !end && !has_length {
        if let Some(n) = body.size_hint().exact() {
            parts.headers.insert(CONTENT_LENGTH, HeaderValue::from(n));
        }
    }
    let head = Response::from_parts(parts, ());
    let mut tx = match respond.send_response(head, end) {
        Ok(tx) => tx,
        Err(e) => {
            tracing::debug!(error = %e, "HTTP/2 response head not sent");
            respond.send_reset(h2::Reason::INTERNAL_ERROR);
            return;
        }
    };
    if end {
        return;
    }
    if let Body::Full(whole) = &mut body {
        // Already in memory: one frame, sent as the window allows.
        let data = whole.take().unwrap_or_default();
        if let Err(e) = tx.send_data(data, true) {
            tracing::debug!(error = %e, "HTTP/2 response body not sent");
        }
        return;
    }
    if let Err(e) = pipe(&mut tx, body).await {
        tracing::debug!(error = %e, "HTTP/2 response body not sent whole");
    }
}

/// Why a streamed response body stopped.
#[derive(Debug, thiserror::Error)]
enum PipeError {
    #[error("the client reset the stream: {0:?}")]
    Reset(h2::Reason),
    #[error(transparent)]
    H2(#[from] h2::Error),
    #[error("the web server's response failed: {0}")]
    Upstream(crate::body::BodyError),
    #[error("the stream closed")]
    Closed,
}

/// Streams `body` on `tx`, each chunk after the window has room (so at
/// most about one chunk is buffered per stream); a body that fails
/// resets the stream, so the client never takes a cut body for a whole.
async fn pipe(tx: &mut h2::SendStream<Bytes>, mut body: Body) -> Result<(), PipeError> {
    loop {
        let frame = poll_fn(|cx| {
            if let Poll::Ready(reset) = tx.poll_reset(cx) {
                return Poll::Ready(Err(match reset {
                    Ok(reason) => PipeError::Reset(reason),
                    Err(e) => PipeError::H2(e),
                }));
            }
            std::pin::Pin::new(&mut body).poll_frame(cx).map(Ok)
        })
        .await?;
        let frame = match frame {
            None => {
                tx.send_data(Bytes::new(), true)?;
                return Ok(());
            }
            Some(Err(e)) => {
                tx.send_reset(h2::Reason::INTERNAL_ERROR);
                return Err(PipeError::Upstream(e));
            }
            Some(Ok(frame)) => frame,
        };
        let frame = match frame.into_data() {
            Ok(data) => {
                let end = body.is_end_stream();
                if !data.is_empty() {
                    tx.reserve_capacity(data.len());
                    while tx.capacity() == 0 {
                        match poll_fn(|cx| tx.poll_capacity(cx)).await {
                            Some(Ok(_)) => {}
                            Some(Err(e)) => return Err(e.into()),
                            None => return Err(PipeError::Closed),
                        }
                    }
                }
                tx.send_data(data, end)?;
                if end {
                    return Ok(());
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            tx.reserve_capacity(0);
            tx.send_trailers(trailers)?;
            return Ok(());
        }
    }
}

/// Removes what HTTP/2 forbids in a response (RFC 9113 section 8.2.2):
/// `Connection`, the headers it names, and the other connection-level
/// ones. The `h2` crate refuses to send a head with any of them.
fn strip_connection_headers(headers: &mut HeaderMap) {
    if let Some(listed) = headers.remove(CONNECTION) {
        if let Ok(listed) = listed.to_str() {
            for name in listed.split(',') {
                headers.remove(name.trim());
            }
        }
    }
    for name in &CONNECTION_HEADERS {
        headers.remove(name);
    }
}

/// The `Date` header value (RFC 9110 section 5.6.7), formatted once per
/// second per worker thread.
mod date {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};

    use http::HeaderValue;

    thread_local! {
        static CACHE: RefCell<Option<(u64, HeaderValue)>> = const { RefCell::new(None) };
    }

    /// Now, as an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
    pub(super) fn now() -> HeaderValue {
        let secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        CACHE.with(|cache| {
            let mut cache = cache.borrow_mut();
            match &*cache {
                Some((at, value)) if *at == secs => value.clone(),
                _ => {
                    let value = HeaderValue::from_str(&format(secs))
                        .unwrap_or(HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"));
                    *cache = Some((secs, value.clone()));
                    value
                }
            }
        })
    }

    /// `secs` since the Unix epoch as an IMF-fixdate.
    pub(super) fn format(secs: u64) -> String {
        const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let days = secs / 86_400;
        let rest = secs % 86_400;
        let weekday = DAYS[(days % 7) as usize];
        // Howard Hinnant's civil_from_days, for days since 1970-01-01.
        let z = days + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + u64::from(month <= 2);
        format!(
            "{weekday}, {day:02} {} {year} {:02}:{:02}:{:02} GMT",
            MONTHS[(month - 1) as usize],
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_imf_fixdates() {
        assert_eq!(date::format(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(date::format(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(date::format(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(date::format(1_798_761_599), "Thu, 31 Dec 2026 23:59:59 GMT");
    }

    #[test]
    fn content_lengths_are_one_number_or_unknown() {
        let mut h = HeaderMap::new();
        assert_eq!(content_length(&h), None);
        h.append(CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(content_length(&h), Some(42));
        h.append(CONTENT_LENGTH, HeaderValue::from_static("42"));
        assert_eq!(content_length(&h), Some(42), "repeated, agreeing");
        h.append(CONTENT_LENGTH, HeaderValue::from_static("7"));
        assert_eq!(content_length(&h), None, "disagreeing");
        for bad in ["", "-1", "1 2", "0x10", "99999999999999999999"] {
            let mut h = HeaderMap::new();
            h.insert(CONTENT_LENGTH, HeaderValue::from_static(bad));
            assert_eq!(content_length(&h), None, "{bad:?}");
        }
    }

    #[test]
    fn connection_level_headers_are_stripped() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, HeaderValue::from_static("close, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        h.insert(UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(TE, HeaderValue::from_static("trailers"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_connection_headers(&mut h);
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h.contains_key("x-app"));
    }
}
