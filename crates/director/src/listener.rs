//! The two listeners: accept loops, the connection limit, per-connection
//! timeouts, and graceful shutdown.
//!
//! Client connections are HTTP/1.1 (hyper's `server::conn::http1`, with
//! upgrades). With TLS ([`DirectorConfig::tls`]) the public listener
//! speaks TLS only: the handshake must finish within `header_timeout`,
//! then HTTP/2 or HTTP/1.1 (hyper-util's auto builder: ALPN `h2`, or the
//! client's preface) runs inside it on the general path; the fast path
//! is plain TCP only. A redirect listener, if set, answers every request
//! with a redirect to HTTPS. The request head must arrive within `header_timeout` (hyper's
//! `header_read_timeout`: slowloris clients are closed, and so are
//! keep-alive connections idle for that long); a connection with no bytes
//! moving for `idle_timeout` is closed; heads larger than
//! `max_header_size` get `431`. At `max_connections`, new connections get
//! a one-line `503` and are closed.
//!
//! The admin listener keeps at most 64 connections; at that limit a new
//! one takes the slot of the oldest connection with no request in
//! progress (which is closed), so idle connections cannot lock operators
//! out; only 64 requests in progress at once do.
//!
//! On shutdown both listeners close at once, every client connection is
//! told to finish its current request and close, and `serve` returns when
//! all have, or after `drain_timeout`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use http::header::{CONNECTION, CONTENT_LENGTH, HOST, LOCATION};
use http::{Method, Response, StatusCode};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Notify, OwnedSemaphorePermit, Semaphore};

use crate::config::DirectorConfig;
use crate::io::{Activity, ActivityIo};
use crate::state::State;
use crate::{admin, fast_path, proxy, worker};

/// Admin connections at once (it is an operator's listener). At the
/// limit, a new connection takes the slot of the oldest one that has no
/// request in progress, so idle connections can never lock operators
/// (and health checkers of `/healthz`) out.
const MAX_ADMIN_CONNECTIONS: usize = 64;

/// The admin listener's connection slots.
pub(crate) struct AdminSlots {
    max: usize,
    next: AtomicU64,
    /// Open connections by age (ids grow), each with its count of
    /// requests in progress and the signal that closes it.
    open: Mutex<BTreeMap<u64, OpenSlot>>,
}

/// An open admin connection's requests in progress and closing signal.
type OpenSlot = (Arc<AtomicUsize>, Arc<Notify>);

/// One admin connection's slot; dropping it frees the slot.
struct AdminSlot {
    slots: Arc<AdminSlots>,
    id: u64,
    busy: Arc<AtomicUsize>,
    close: Arc<Notify>,
}

impl AdminSlots {
    fn new(max: usize) -> Self {
        Self {
            max,
            next: AtomicU64::new(0),
            open: Mutex::new(BTreeMap::new()),
        }
    }

    /// A slot for a new connection: a free one, or the oldest idle
    /// connection's (which is told to close); `None` if every connection
    /// is busy with a request.
    fn admit(self: &Arc<Self>) -> Option<AdminSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if open.len() >= self.max {
            let idle = open
                .iter()
                .find(|(_, (busy, _))| busy.load(Ordering::Acquire) == 0)
                .map(|(id, _)| *id)?;
            if let Some((_, close)) = open.remove(&idle) {
                // Stored if the connection is not waiting yet: never lost.
                close.notify_one();
            }
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let busy = Arc::new(AtomicUsize::new(0));
        let close = Arc::new(Notify::new());
        open.insert(id, (Arc::clone(&busy), Arc::clone(&close)));
        Some(AdminSlot {
            slots: Arc::clone(self),
            id,
            busy,
            close,
        })
    }
}

impl Drop for AdminSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        open.remove(&self.id);
    }
}

/// Counts a request in progress on an admin connection while it lives.
struct Busy(Arc<AtomicUsize>);

impl Busy {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(count))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 53\r\nretry-after: 1\r\nconnection: close\r\n\r\n503 Service Unavailable: too many connections. Retry\n";

/// A connection handed from the acceptor (worker 0) to another worker.
pub(crate) struct Handoff {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// The inbox of a worker other than 0.
pub(crate) type Inbox = mpsc::UnboundedReceiver<Handoff>;

/// How the acceptor spreads connections over the workers: each new
/// connection goes to the worker with the fewest open connections.
struct Dispatch {
    /// One per worker; `None` for worker 0 (the acceptor keeps its own).
    senders: Vec<Option<mpsc::UnboundedSender<Handoff>>>,
    open: Vec<AtomicUsize>,
}

impl Dispatch {
    fn least_loaded(&self) -> usize {
        let mut best = 0;
        let mut best_open = usize::MAX;
        for (i, open) in self.open.iter().enumerate() {
            let n = open.load(Ordering::Relaxed);
            if n < best_open {
                best = i;
                best_open = n;
            }
        }
        best
    }
}

/// Most HTTP/2 streams one client connection may have open at once.
const MAX_H2_STREAMS: u32 = 128;

/// What every worker's listeners share.
#[derive(Clone)]
pub(crate) struct Common {
    builder: Arc<http1::Builder>,
    /// HTTP/2 or HTTP/1.1 inside TLS.
    auto: Arc<auto::Builder<TokioExecutor>>,
    limit: Arc<Semaphore>,
    admin_slots: Arc<AdminSlots>,
    dispatch: Arc<Dispatch>,
}

impl Common {
    /// The shared parts for `workers` workers, and the inboxes of workers
    /// 1 and up.
    pub(crate) fn new(config: &DirectorConfig, workers: usize) -> (Self, Vec<Inbox>) {
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_buf_size(config.max_header_size.max(8192))
            .keep_alive(true);
        let mut senders = vec![None];
        let mut inboxes = Vec::new();
        for _ in 1..workers.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.push(Some(tx));
            inboxes.push(rx);
        }
        let open = (0..senders.len()).map(|_| AtomicUsize::new(0)).collect();
        let mut auto = auto::Builder::new(TokioExecutor::new());
        auto.http1()
            .timer(TokioTimer::new())
            .header_read_timeout(config.header_timeout)
            .max_buf_size(config.max_header_size.max(8192))
            .keep_alive(true);
        auto.http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(MAX_H2_STREAMS)
            .max_header_list_size(u32::try_from(config.max_header_size).unwrap_or(u32::MAX))
            .keep_alive_interval(None);
        let common = Self {
            builder: Arc::new(builder),
            auto: Arc::new(auto),
            limit: Arc::new(Semaphore::new(config.max_connections)),
            admin_slots: Arc::new(AdminSlots::new(MAX_ADMIN_CONNECTIONS)),
            dispatch: Arc::new(Dispatch { senders, open }),
        };
        (common, inboxes)
    }
}

/// Serves `public` (and `admin`) on the current runtime until `shutdown`,
/// then drains.
pub(crate) async fn serve(
    shared: Arc<State>,
    public: TcpListener,
    admin: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) {
    let (stop_tx, stop_rx) = watch::channel(false);
    let (common, _) = Common::new(&shared.config, 1);
    let work = worker_loop(
        Arc::clone(&shared),
        Intake::Listeners { public, admin },
        common,
        stop_rx,
    );
    tokio::pin!(work);
    tokio::select! {
        () = &mut work => return,
        () = shutdown => {}
    }
    announce_shutdown(&shared);
    let _ = stop_tx.send(true);
    work.await;
}

pub(crate) fn announce_shutdown(shared: &State) {
    tracing::info!(
        connections = shared.stats.connections.load(Ordering::Relaxed),
        deadline = ?shared.config.drain_timeout,
        "shutting down: no new connections, finishing requests in flight"
    );
}

/// Where a worker's connections come from.
pub(crate) enum Intake {
    /// Worker 0: it accepts on both listeners.
    Listeners {
        public: TcpListener,
        admin: TcpListener,
    },
    /// The other workers: connections handed over by worker 0.
    Inbox(Inbox),
}

/// One worker: takes connections until `stop`, then waits for the
/// director's connections to finish, up to the drain timeout.
pub(crate) async fn worker_loop(
    shared: Arc<State>,
    intake: Intake,
    common: Common,
    mut stop: watch::Receiver<bool>,
) {
    let logs = matches!(intake, Intake::Listeners { .. });
    let worker_stop = stop.clone();
    let work = async {
        let stop = worker_stop;
        match intake {
            Intake::Listeners { public, admin } => {
                let redirect_loop = async {
                    match shared.take_redirect().map(TcpListener::from_std) {
                        Some(Ok(listener)) => {
                            accept_redirect(Arc::clone(&shared), listener, common.clone()).await;
                        }
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "cannot use the redirect listener: not serving it");
                            std::future::pending::<()>().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let relay_loop = async {
                    match shared.take_relay().map(TcpListener::from_std) {
                        Some(Ok(listener)) => {
                            accept_relay(
                                Arc::clone(&shared),
                                listener,
                                common.clone(),
                                stop.clone(),
                            )
                            .await;
                        }
                        Some(Err(e)) => {
                            tracing::error!(error = %e, "cannot use the relay listener: not serving it");
                            std::future::pending::<()>().await;
                        }
                        None => std::future::pending::<()>().await,
                    }
                };
                let public_loop =
                    accept_public(Arc::clone(&shared), public, common.clone(), stop.clone());
                let admin_loop = accept_admin(
                    Arc::clone(&shared),
                    admin,
                    Arc::clone(&common.builder),
                    Arc::clone(&common.admin_slots),
                    stop.clone(),
                );
                tokio::select! {
                    () = public_loop => {}
                    () = admin_loop => {}
                    () = redirect_loop => {}
                    () = relay_loop => {}
                }
            }
            Intake::Inbox(mut inbox) => {
                while let Some(h) = inbox.recv().await {
                    match TcpStream::from_std(h.stream) {
                        Ok(stream) => {
                            tokio::spawn(client_connection(
                                Arc::clone(&shared),
                                stream,
                                h.peer,
                                common.clone(),
                                h.permit,
                                stop.clone(),
                                shared.tls.is_some(),
                            ));
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "cannot take over a connection");
                            connection_closed(&shared, &common);
                        }
                    }
                }
            }
        }
    };
    tokio::select! {
        () = work => {}
        _ = stop.wait_for(|stop| *stop) => {}
    }
    // The accept loops are dropped here: this worker's listeners close.
    let deadline = tokio::time::Instant::now() + shared.config.drain_timeout;
    let stats = &shared.stats;
    loop {
        let open = stats.connections.load(Ordering::Relaxed)
            + stats.admin_connections.load(Ordering::Relaxed);
        if open == 0 {
            if logs {
                tracing::info!("all connections closed");
            }
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            if logs {
                tracing::warn!(
                    connections = open,
                    "drain timeout reached: closing the remaining connections"
                );
            }
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next client connection of `listener` within `max_connections`,
/// counted; those beyond it are answered `503` and closed.
async fn admit(
    shared: &State,
    listener: &TcpListener,
    common: &Common,
) -> (TcpStream, SocketAddr, OwnedSemaphorePermit) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&e).await;
                continue;
            }
        };
        let stats = &shared.stats;
        let Ok(permit) = Arc::clone(&common.limit).try_acquire_owned() else {
            stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            if !stats.at_connection_limit.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = shared.config.max_connections,
                    "connection limit reached: refusing new connections with 503"
                );
            }
            // Best effort, never blocking the accept loop.
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        if stats.at_connection_limit.swap(false, Ordering::Relaxed) {
            tracing::info!("below the connection limit again");
        }
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.connections_total.fetch_add(1, Ordering::Relaxed);
        return (stream, peer, permit);
    }
}

async fn accept_public(
    shared: Arc<State>,
    listener: TcpListener,
    common: Common,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer, permit) = admit(&shared, &listener, &common).await;
        let stats = &shared.stats;
        let dispatch = &common.dispatch;
        let target = dispatch.least_loaded();
        dispatch.open[target].fetch_add(1, Ordering::Relaxed);
        let (stream, permit) = match &dispatch.senders[target] {
            None => (stream, permit),
            Some(tx) => match stream.into_std() {
                Ok(std_stream) => {
                    let handoff = Handoff {
                        stream: std_stream,
                        peer,
                        permit,
                    };
                    match tx.send(handoff) {
                        Ok(()) => continue,
                        // That worker is gone: serve it here.
                        Err(mpsc::error::SendError(h)) => {
                            dispatch.open[target].fetch_sub(1, Ordering::Relaxed);
                            dispatch.open[0].fetch_add(1, Ordering::Relaxed);
                            match TcpStream::from_std(h.stream) {
                                Ok(s) => (s, h.permit),
                                Err(_) => {
                                    stats.connections.fetch_sub(1, Ordering::Relaxed);
                                    dispatch.open[0].fetch_sub(1, Ordering::Relaxed);
                                    continue;
                                }
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "cannot hand a connection over");
                    stats.connections.fetch_sub(1, Ordering::Relaxed);
                    dispatch.open[target].fetch_sub(1, Ordering::Relaxed);
                    continue;
                }
            },
        };
        tokio::spawn(client_connection(
            Arc::clone(&shared),
            stream,
            peer,
            common.clone(),
            permit,
            stop.clone(),
            shared.tls.is_some(),
        ));
    }
}

/// The listener for requests relayed by peer directors (`relay_listen`):
/// plain HTTP, served on this worker as the public listener serves plain
/// clients. Its connections count against `max_connections`.
async fn accept_relay(
    shared: Arc<State>,
    listener: TcpListener,
    common: Common,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer, permit) = admit(&shared, &listener, &common).await;
        // Served here, on worker 0.
        if let Some(open) = common.dispatch.open.first() {
            open.fetch_add(1, Ordering::Relaxed);
        }
        tokio::spawn(client_connection(
            Arc::clone(&shared),
            stream,
            peer,
            common.clone(),
            permit,
            stop.clone(),
            false,
        ));
    }
}

/// Bookkeeping when a client connection ends.
fn connection_closed(shared: &State, common: &Common) {
    shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
    if let Some(open) = common.dispatch.open.get(worker::current()) {
        open.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn client_connection(
    shared: Arc<State>,
    stream: TcpStream,
    peer: SocketAddr,
    common: Common,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
    tls: bool,
) {
    let _ = stream.set_nodelay(true);
    if tls {
        tls_connection(&shared, stream, peer, &common, stop).await;
        connection_closed(&shared, &common);
        drop(permit);
        return;
    }
    let mut stream = stream;
    let prefix = if shared.config.fast_path {
        match fast_path::serve(&shared, &mut stream, peer, &mut stop).await {
            fast_path::Outcome::Closed => {
                connection_closed(&shared, &common);
                drop(permit);
                return;
            }
            fast_path::Outcome::HandOver(read) => read,
        }
    } else {
        Vec::new()
    };
    let activity = Activity::new();
    let io = TokioIo::new(ActivityIo::with_prefix(
        stream,
        Arc::clone(&activity),
        prefix,
    ));
    let svc_shared = Arc::clone(&shared);
    let forwarded_for = proxy::forwarded_for(peer);
    let trusted = crate::forward::trusted_proxy(&shared, peer.ip());
    let service = service_fn(move |req| {
        proxy::handle(&svc_shared, peer, &forwarded_for, trusted, false, req)
    });
    let conn = common.builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let idle = shared.config.idle_timeout;
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Timeouts, malformed requests, clients that went away:
                    // routine on a public listener.
                    tracing::debug!(%peer, error = %e, "client connection ended");
                }
                break;
            }
            stopped = stop.wait_for(|stop| *stop), if !stopping => {
                drop(stopped);
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(activity.deadline(idle)) => {
                if tokio::time::Instant::now() >= activity.deadline(idle) {
                    tracing::debug!(%peer, ?idle, "closing idle client connection");
                    break;
                }
            }
        }
    }
    connection_closed(&shared, &common);
    drop(permit);
}

/// One client connection of the TLS listener: the handshake (within
/// `header_timeout`), then HTTP/2 or HTTP/1.1 until the client closes, the
/// connection idles for `idle_timeout`, or shutdown.
async fn tls_connection(
    shared: &Arc<State>,
    stream: TcpStream,
    peer: SocketAddr,
    common: &Common,
    mut stop: watch::Receiver<bool>,
) {
    let Some(tls) = &shared.tls else {
        return;
    };
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
    let handshake = tokio::time::timeout(shared.config.header_timeout, acceptor.accept(stream));
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        failed => {
            shared
                .stats
                .tls_handshake_failed
                .fetch_add(1, Ordering::Relaxed);
            match failed {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                _ => tracing::debug!(%peer, "TLS handshake timed out"),
            }
            return;
        }
    };
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    if h2 {
        shared.stats.h2_connections.fetch_add(1, Ordering::Relaxed);
    }
    let mut stream = stream;
    // HTTP/1.1 (by ALPN, or no ALPN) starts on the fast path, as over
    // plain TCP; what it hands over (with the bytes read so far, which may
    // also be an HTTP/2 preface sent without ALPN) goes to hyper.
    let prefix = if shared.config.fast_path && !h2 {
        match fast_path::serve(shared, &mut stream, peer, &mut stop).await {
            fast_path::Outcome::Closed => return,
            fast_path::Outcome::HandOver(read) => read,
        }
    } else {
        Vec::new()
    };
    let activity = Activity::new();
    let io = TokioIo::new(ActivityIo::with_prefix(
        stream,
        Arc::clone(&activity),
        prefix,
    ));
    let svc_shared = Arc::clone(shared);
    let forwarded_for = proxy::forwarded_for(peer);
    let trusted = crate::forward::trusted_proxy(shared, peer.ip());
    let service =
        service_fn(move |req| proxy::handle(&svc_shared, peer, &forwarded_for, trusted, true, req));
    let conn = common.auto.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let idle = shared.config.idle_timeout;
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "TLS client connection ended");
                }
                break;
            }
            stopped = stop.wait_for(|stop| *stop), if !stopping => {
                drop(stopped);
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(activity.deadline(idle)) => {
                if tokio::time::Instant::now() >= activity.deadline(idle) {
                    tracing::debug!(%peer, ?idle, "closing idle TLS client connection");
                    break;
                }
            }
        }
    }
}

/// The HTTP-to-HTTPS redirect listener: every request is answered with a
/// redirect, then the connection closes. Its connections count against
/// `max_connections`.
async fn accept_redirect(shared: Arc<State>, listener: TcpListener, common: Common) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&e).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&common.limit).try_acquire_owned() else {
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        let shared = Arc::clone(&shared);
        let builder = Arc::clone(&common.builder);
        tokio::spawn(async move {
            let https_port = shared.public_addr().map_or(443, |a| a.port());
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let resp = redirect(&req, https_port);
                async move { Ok::<_, Infallible>(resp) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let idle = shared.config.idle_timeout;
            match tokio::time::timeout(idle, conn).await {
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "redirect connection ended"),
                Err(_) => tracing::debug!(%peer, "redirect connection idle: closed"),
                Ok(Ok(())) => {}
            }
            drop(permit);
        });
    }
}

/// The redirect to HTTPS of one plain HTTP request: same host (its port
/// replaced by `https_port`, left out when 443) and path; `400` without a
/// usable `Host`.
fn redirect<B>(req: &http::Request<B>, https_port: u16) -> Response<crate::body::Body> {
    let host = req
        .headers()
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| req.uri().host())
        .and_then(host_without_port);
    let Some(host) = host else {
        let mut resp = crate::forward::text_response(
            StatusCode::BAD_REQUEST,
            "400 Bad Request: this listener redirects to HTTPS and needs a Host header\n",
        );
        resp.headers_mut()
            .insert(CONNECTION, http::HeaderValue::from_static("close"));
        return resp;
    };
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str);
    let location = if https_port == 443 {
        format!("https://{host}{path}")
    } else {
        format!("https://{host}:{https_port}{path}")
    };
    let status = if req.method() == Method::GET || req.method() == Method::HEAD {
        StatusCode::MOVED_PERMANENTLY
    } else {
        StatusCode::PERMANENT_REDIRECT
    };
    let mut resp = Response::new(crate::body::Body::Empty);
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    if let Ok(location) = http::HeaderValue::from_str(&location) {
        headers.insert(LOCATION, location);
    }
    headers.insert(CONTENT_LENGTH, http::HeaderValue::from_static("0"));
    headers.insert(CONNECTION, http::HeaderValue::from_static("close"));
    resp
}

/// The host part of a `Host` value (`shop.example:80` -> `shop.example`,
/// `[::1]:80` -> `[::1]`), if it is a plausible host name or address.
fn host_without_port(value: &str) -> Option<&str> {
    let host = if value.starts_with('[') {
        let end = value.find(']')?;
        &value[..=end]
    } else {
        value.split(':').next()?
    };
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b));
    ok.then_some(host)
}

async fn accept_admin(
    shared: Arc<State>,
    listener: TcpListener,
    builder: Arc<http1::Builder>,
    slots: Arc<AdminSlots>,
    stop: watch::Receiver<bool>,
) {
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(e) => {
            tracing::error!(error = %e, "the admin listener has no address: not serving it");
            return std::future::pending().await;
        }
    };
    let access = Arc::new(admin::Access::new(&shared, local));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&e).await;
                continue;
            }
        };
        let Some(slot) = slots.admit() else {
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        let shared = Arc::clone(&shared);
        let builder = Arc::clone(&builder);
        let access = Arc::clone(&access);
        let mut stop = stop.clone();
        shared
            .stats
            .admin_connections
            .fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            let svc_shared = Arc::clone(&shared);
            let busy = Arc::clone(&slot.busy);
            let service = service_fn(move |req| {
                let shared = Arc::clone(&svc_shared);
                let access = Arc::clone(&access);
                let busy = Busy::new(&busy);
                async move {
                    let resp = admin::handle(shared, &access, req).await;
                    drop(busy);
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let finished = tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "admin connection ended");
                    }
                    true
                }
                () = slot.close.notified() => {
                    tracing::debug!(%peer, "idle admin connection closed for a new one");
                    true
                }
                stopped = stop.wait_for(|stop| *stop) => {
                    drop(stopped);
                    conn.as_mut().graceful_shutdown();
                    false
                }
            };
            if !finished {
                let _ = conn.await;
            }
            shared
                .stats
                .admin_connections
                .fetch_sub(1, Ordering::Relaxed);
            drop(slot);
        });
    }
}

/// Accept errors are usually a full file-descriptor table: say so, and
/// give connections a moment to close instead of spinning.
async fn accept_error(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed (out of file descriptors?); pausing 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn redirects_keep_host_and_path_and_change_the_port() {
        let req = |method: &str, host: Option<&str>, target: &str| {
            let mut b = http::Request::builder().method(method).uri(target);
            if let Some(h) = host {
                b = b.header("host", h);
            }
            b.body(()).unwrap_or_default()
        };
        let location = |r: &http::Response<crate::body::Body>| {
            r.headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let r = super::redirect(&req("GET", Some("shop.example:80"), "/cart?x=1"), 443);
        assert_eq!(r.status(), 301);
        assert_eq!(
            location(&r).as_deref(),
            Some("https://shop.example/cart?x=1")
        );
        let r = super::redirect(&req("POST", Some("[::1]:8080"), "/pay"), 8443);
        assert_eq!(r.status(), 308, "a POST keeps its method");
        assert_eq!(location(&r).as_deref(), Some("https://[::1]:8443/pay"));
        let r = super::redirect(&req("GET", None, "/"), 443);
        assert_eq!(r.status(), 400, "no Host, nowhere to send");
        let r = super::redirect(&req("GET", Some("evil.example/x"), "/"), 443);
        assert_eq!(r.status(), 400, "a Host that is no host name");
    }

    #[test]
    fn the_too_many_answer_is_well_framed() {
        let text = std::str::from_utf8(super::TOO_MANY).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
