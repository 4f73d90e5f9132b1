//! The TCP server: accept loop, connection limit, one task per connection
//! that executes pipelined requests in batches, idle timeout, active expiry
//! and graceful shutdown.

use std::future::{poll_fn, Future};
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use bytes::{Buf, BytesMut};
use smallvec::SmallVec;
use sticky_proto::resp::{parse_request_in_place, Reply};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::{Handle, RuntimeFlavor};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio_rustls::TlsAcceptor;

use crate::cmd::{self, Client};
use crate::config::StoreConfig;
use crate::io::Socket;
use crate::keyspace::Keyspace;
use crate::ownership::Leases;
use crate::shared::{Shared, Spin, PREEMPTED};
use crate::stats::{Snapshot, Stats};

/// A session store: its data and settings. Serve it with [`Store::serve`].
#[derive(Debug, Clone)]
pub struct Store {
    shared: Arc<Shared>,
    /// Clients must speak TLS with this configuration ([`Store::with_tls`]).
    tls: Option<Tls>,
}

/// The TLS acceptor of a store that speaks TLS.
#[derive(Clone)]
struct Tls(TlsAcceptor);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

/// Time a client has to finish its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Replies buffered past this size are written out before the next request
/// of the same batch is executed.
const FLUSH_AT: usize = 64 * 1024;
/// Arguments held on the stack for one request; more spill to the heap.
const MAX_INLINE_ARGS: usize = 8;
/// Argument bookkeeping a connection keeps between requests.
const MAX_KEPT_ARGS: usize = 256;
/// How often active expiry runs, and how many entries per shard it looks at.
const EXPIRY_TICK: Duration = Duration::from_millis(100);
const EXPIRY_BUDGET: usize = 64;
/// Write timeout when no idle timeout is set.
const DEFAULT_WRITE_TIMEOUT: Duration = Duration::from_secs(60);

impl Store {
    /// A new, empty store with these settings.
    pub fn new(mut config: StoreConfig) -> Self {
        if config.busy_poll.is_some() {
            // The busy poller never lets the loop sleep; napping would
            // only stall it.
            config.nap = None;
            config.pipelined_nap = None;
        }
        config.max_query_buffer = config
            .max_query_buffer
            .max(config.limits.max_bulk.saturating_mul(2));
        let stats = Arc::new(Stats::default());
        let shards = if config.shards == 0 {
            std::thread::available_parallelism().map_or(4, |n| n.get()) * 16
        } else {
            config.shards
        };
        Self {
            shared: Arc::new(Shared {
                keyspace: Keyspace::new(shards, config.max_memory, stats.clone()),
                leases: Leases::new(
                    u64::try_from(config.claim_window.as_millis()).unwrap_or(u64::MAX),
                    config.restarted,
                ),
                spin: config.busy_poll.map(|_| Spin::default()),
                config,
                stats,
                started: Instant::now(),
                run_id: crate::shared::new_run_id(),
                next_client_id: AtomicU64::new(1),
                batches_since_park: AtomicU64::new(0),
                requests_since_park: AtomicU64::new(0),
                unparked_at: AtomicU64::new(0),
            }),
            tls: None,
        }
    }

    /// The same store, serving TLS only (TLS 1.3 and 1.2, `docs/tls.md`)
    /// with the PEM certificate chain `cert` and key `key`.
    ///
    /// # Errors
    ///
    /// [`TlsError`](sticky_proto::tls::TlsError) naming the file and what
    /// is wrong with it.
    pub fn with_tls(
        mut self,
        cert: &std::path::Path,
        key: &std::path::Path,
    ) -> Result<Self, sticky_proto::tls::TlsError> {
        let config = sticky_proto::tls::server_config(cert, key, "--tls-cert", "--tls-key", &[])?;
        self.tls = Some(Tls(TlsAcceptor::from(config)));
        Ok(self)
    }

    /// The hook a single-threaded runtime serving this store should run
    /// before its thread sleeps (tokio's `Builder::on_thread_park`): it
    /// naps under load, as [`StoreConfig::nap`] says. Without it the
    /// store works the same, minus the nap. Do not install it on a
    /// multi-threaded runtime, whose idle workers would nap too.
    pub fn park_hook(&self) -> impl Fn() + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.before_park()
    }

    /// The hook that goes with [`Store::park_hook`], for tokio's
    /// `Builder::on_thread_unpark`: it marks the start of a round.
    pub fn unpark_hook(&self) -> impl Fn() + Send + Sync + 'static {
        let shared = self.shared.clone();
        move || shared.after_unpark()
    }

    /// The state shared by this store's connections.
    #[cfg(test)]
    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// Counters and keyspace figures now.
    pub fn snapshot(&self) -> Snapshot {
        self.shared.snapshot()
    }

    /// Serves clients accepted on `listener` until `shutdown` completes, then
    /// stops accepting, lets every connection finish the batch it is
    /// executing, and waits up to `shutdown_grace` for them to close.
    ///
    /// # Errors
    ///
    /// Only if the listener's local address cannot be read; accept errors
    /// (e.g. out of file descriptors) are logged and retried.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> io::Result<()> {
        let local = listener.local_addr()?;
        let shared = &self.shared;
        let limit = Arc::new(Semaphore::new(
            shared.config.max_clients.min(Semaphore::MAX_PERMITS),
        ));
        let (stop_tx, stop_rx) = watch::channel(false);
        // Every connection task holds a clone; when all are dropped, recv()
        // returns None: the mini-redis way to wait for tasks to finish.
        let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
        let expiry = tokio::spawn(active_expiry(shared.clone(), stop_rx.clone()));
        let spinner = match shared.config.busy_poll {
            Some(window) if Handle::current().runtime_flavor() == RuntimeFlavor::CurrentThread => {
                Some(tokio::spawn(busy_poll(shared.clone(), window)))
            }
            Some(_) => {
                tracing::warn!("busy polling needs a single-threaded runtime; not polling");
                None
            }
            None => None,
        };
        tracing::info!(
            addr = %local,
            tls = self.tls.is_some(),
            auth = shared.config.requirepass.is_some(),
            max_memory = shared.config.max_memory,
            "store listening"
        );
        tokio::pin!(shutdown);
        loop {
            let (socket, peer) = tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
            };
            Stats::add(&shared.stats.connections_received, 1);
            let Ok(permit) = limit.clone().try_acquire_owned() else {
                Stats::add(&shared.stats.rejected_connections, 1);
                tracing::debug!(%peer, "max clients reached; connection refused");
                tokio::spawn(refuse(socket));
                continue;
            };
            let shared = shared.clone();
            let stop = stop_rx.clone();
            let done = done_tx.clone();
            let tls = self.tls.clone();
            tokio::spawn(async move {
                // Counted down on drop, so even a panicking task is uncounted.
                let _client = ConnectedClient::new(shared.stats.clone());
                let _ = socket.set_nodelay(true);
                let served = match tls {
                    None => handle(&shared, socket, peer, stop).await,
                    Some(Tls(tls)) => {
                        match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(socket)).await
                        {
                            Ok(Ok(socket)) => handle(&shared, socket, peer, stop).await,
                            Ok(Err(e)) => Err(e),
                            Err(_) => Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "TLS handshake timed out",
                            )),
                        }
                    }
                };
                if let Err(e) = served {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                drop(permit);
                drop(done);
            });
        }
        tracing::info!("store shutting down: no new connections");
        drop(listener);
        let _ = stop_tx.send(true);
        drop(done_tx);
        if tokio::time::timeout(shared.config.shutdown_grace, done_rx.recv())
            .await
            .is_err()
        {
            tracing::warn!("connections still open after the shutdown grace period");
        }
        expiry.abort();
        if let Some(spinner) = spinner {
            spinner.abort();
        }
        Ok(())
    }
}

/// One open connection in `connected_clients`, for as long as it lives.
struct ConnectedClient(Arc<Stats>);

impl ConnectedClient {
    fn new(stats: Arc<Stats>) -> Self {
        stats.connected_clients.fetch_add(1, Ordering::Relaxed);
        Self(stats)
    }
}

impl Drop for ConnectedClient {
    fn drop(&mut self) {
        self.0.connected_clients.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn refuse(mut socket: TcpStream) {
    let _ = socket
        .write_all(b"-ERR max number of clients reached\r\n")
        .await;
}

async fn active_expiry(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(EXPIRY_TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        // Like Redis: keep going while a quarter or more of what we looked
        // at had expired, within a time budget per tick.
        shared.leases.sweep();
        let started = Instant::now();
        loop {
            let (removed, seen) = shared.keyspace.expire_cycle(EXPIRY_BUDGET);
            if removed * 4 < seen || seen == 0 || started.elapsed() > EXPIRY_TICK / 4 {
                break;
            }
            tokio::task::yield_now().await;
        }
    }
}

/// Busy polling (see [`StoreConfig::busy_poll`]): while batches keep being
/// served, yield to the scheduler, which then polls the sockets with a zero
/// timeout instead of sleeping; stop after `window` without a batch.
async fn busy_poll(shared: Arc<Shared>, window: Duration) {
    let Some(spin) = &shared.spin else { return };
    loop {
        spin.spinning.store(false, Ordering::Relaxed);
        spin.wake.notified().await;
        spin.spinning.store(true, Ordering::Relaxed);
        let mut seen = spin.batches.load(Ordering::Relaxed);
        let mut last_batch = Instant::now();
        loop {
            let before = Instant::now();
            tokio::task::yield_now().await;
            let now = Instant::now();
            let batches = spin.batches.load(Ordering::Relaxed);
            if now - before > PREEMPTED {
                break;
            }
            if batches != seen {
                seen = batches;
                last_batch = now;
            } else if now - last_batch >= window {
                break;
            }
        }
    }
}

/// What ended a wait for input.
enum Wake {
    /// This many bytes were read; 0 at end of stream.
    Input(usize),
    /// Nothing more to read now, after a read that filled its room (the
    /// replies held back for it are due).
    Drained,
    /// The store is stopping.
    Stop,
    /// The idle timer fired (the client may have sent something since).
    Idle,
}

/// Serves one connection until it closes, errs, idles out or the store stops.
///
/// Each round reads what the socket has, executes every complete request
/// in it with arguments borrowed from the input buffer (no copy, no
/// allocation per request), and writes all their replies with one write.
async fn handle<S: Socket>(
    shared: &Shared,
    mut socket: S,
    peer: SocketAddr,
    mut stop: watch::Receiver<bool>,
) -> io::Result<()> {
    let id = shared.next_client_id.fetch_add(1, Ordering::Relaxed);
    let mut client = Client::new(id, shared.config.requirepass.is_some());
    let limits = shared.config.limits;
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut output = BytesMut::with_capacity(16 * 1024);
    // Where each argument of the request being executed lies in `input`.
    let mut ranges: Vec<Range<usize>> = Vec::with_capacity(MAX_INLINE_ARGS);
    let idle = shared.config.idle_timeout;
    // A client that cannot take its replies is dropped after this long.
    let write_limit = idle.unwrap_or(DEFAULT_WRITE_TIMEOUT);
    let auth_by = (!client.authenticated).then(|| Instant::now() + shared.config.auth_timeout);
    let mut last_input = Instant::now();
    let first_deadline = match (idle, auth_by) {
        (Some(i), Some(a)) => (last_input + i).min(a),
        (Some(i), None) => last_input + i,
        (None, Some(a)) => a,
        (None, None) => last_input + Duration::from_secs(86_400),
    };
    let idle_timer = tokio::time::sleep_until(first_deadline.into());
    tokio::pin!(idle_timer);
    // `stopped` is only polled to register this task's waker; whether the
    // store is stopping is read from `stop_seen`.
    let stop_seen = stop.clone();
    let stopped = stop.changed();
    tokio::pin!(stopped);
    let mut waker_seen: Option<Waker> = None;
    // Whether the last read filled all the room it had.
    let mut full_read = false;
    loop {
        let mut executed = 0;
        let mut pos = 0;
        while pos < input.len() {
            match parse_request_in_place(&mut input[pos..], &limits, &mut ranges) {
                Ok(Some(len)) => {
                    let frame = &input[pos..pos + len];
                    pos += len;
                    if ranges.is_empty() {
                        continue;
                    }
                    let args: SmallVec<[&[u8]; MAX_INLINE_ARGS]> =
                        ranges.iter().map(|r| &frame[r.clone()]).collect();
                    if cmd::is_http(&args) {
                        Stats::add(&shared.stats.protocol_errors, 1);
                        Stats::add(&shared.stats.commands_processed, executed);
                        tracing::warn!(%peer, "an HTTP request reached the store (possible cross-protocol attack from a web page); closing the connection");
                        write_within(&mut socket, &output, write_limit).await?;
                        return Ok(());
                    }
                    if !cmd::execute_fast(shared, &client, &args, &mut output) {
                        let reply = cmd::execute(shared, &mut client, &args);
                        reply.encode(client.version, &mut output);
                    }
                    executed += 1;
                    if client.auth_failures >= cmd::MAX_AUTH_FAILURES {
                        Stats::add(&shared.stats.commands_processed, executed);
                        tracing::warn!(%peer, failures = client.auth_failures, "too many wrong passwords; closing the connection");
                        Reply::error("ERR too many failed AUTH attempts; closing the connection")
                            .encode(client.version, &mut output);
                        write_within(&mut socket, &output, write_limit).await?;
                        return Ok(());
                    }
                    if ranges.capacity() > MAX_KEPT_ARGS {
                        // A request with thousands of arguments: do not
                        // keep its bookkeeping for the connection's life.
                        ranges = Vec::with_capacity(MAX_INLINE_ARGS);
                    }
                    if client.quit {
                        break;
                    }
                    if output.len() >= FLUSH_AT {
                        write_within(&mut socket, &output, write_limit).await?;
                        output.clear();
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    Stats::add(&shared.stats.protocol_errors, 1);
                    Stats::add(&shared.stats.commands_processed, executed);
                    tracing::debug!(%peer, error = %e, "protocol error; closing the connection");
                    Reply::error(format!("ERR Protocol error: {e}"))
                        .encode(client.version, &mut output);
                    write_within(&mut socket, &output, write_limit).await?;
                    return Ok(());
                }
            }
        }
        input.advance(pos);
        Stats::add(&shared.stats.commands_processed, executed);
        if executed > 0 {
            shared.batch_served(executed);
        }
        if let Some(spin) = &shared.spin {
            spin.served();
        }
        // Between batches, so that a client that never stops sending still
        // lets a stopping store go.
        let stopping = stop_seen.has_changed().unwrap_or(true);
        // The last read filled its room, so the rest of the client's batch
        // is likely in the socket already: read it before answering, and
        // the batch gets one write, which the client reads at once. (A
        // 17 KB batch of SETs answered in two writes costs redis-benchmark
        // two wake-ups, and twice the time, per batch.)
        let read_on = full_read && !client.quit && !stopping && output.len() < FLUSH_AT;
        if !read_on {
            if !output.is_empty() {
                write_within(&mut socket, &output, write_limit).await?;
                output.clear();
            }
            if client.quit || stopping {
                return Ok(());
            }
        }
        let room = crate::io::make_room(&mut input, full_read);
        let woke = poll_fn(|cx| {
            if let Poll::Ready(read) = socket.poll_read_into(&mut input, cx) {
                return Poll::Ready(read.map(Wake::Input));
            }
            if read_on {
                return Poll::Ready(Ok(Wake::Drained));
            }
            if stop_seen.has_changed().unwrap_or(true) {
                return Poll::Ready(Ok(Wake::Stop));
            }
            let timed = idle.is_some() || auth_by.is_some();
            if timed && idle_timer.is_elapsed() {
                return Poll::Ready(Ok(Wake::Idle));
            }
            // The stop signal and the idle timer wake the waker they were
            // last polled with; poll them again only when it is not this
            // task's current one (every read would otherwise take the
            // notifier's lock and re-arm the timer entry).
            if !waker_seen.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                if stopped.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(Wake::Stop));
                }
                if timed && idle_timer.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Ok(Wake::Idle));
                }
                waker_seen = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await?;
        full_read = false;
        match woke {
            Wake::Drained => {}
            Wake::Input(0) => {
                // Replies held back for a read that found the end.
                if !output.is_empty() {
                    write_within(&mut socket, &output, write_limit).await?;
                }
                return Ok(());
            }
            Wake::Stop => return Ok(()),
            Wake::Input(n) => {
                full_read = n >= room;
                last_input = Instant::now();
                let limit = if client.authenticated {
                    shared.config.max_query_buffer
                } else {
                    shared.config.max_pre_auth_buffer
                };
                if input.len() > limit {
                    Stats::add(&shared.stats.protocol_errors, 1);
                    tracing::debug!(%peer, buffered = input.len(), "query buffer limit reached; closing");
                    Reply::error("ERR Protocol error: query buffer limit reached")
                        .encode(client.version, &mut output);
                    write_within(&mut socket, &output, write_limit).await?;
                    return Ok(());
                }
            }
            Wake::Idle => {
                let auth_by = auth_by.filter(|_| !client.authenticated);
                if auth_by.is_some_and(|at| Instant::now() >= at) {
                    tracing::debug!(%peer, "no AUTH within the auth timeout; closing");
                    return Ok(());
                }
                if idle.is_some_and(|i| last_input.elapsed() >= i) {
                    tracing::debug!(%peer, "idle client timeout");
                    return Ok(());
                }
                let next = match (idle, auth_by) {
                    (Some(i), Some(a)) => (last_input + i).min(a),
                    (Some(i), None) => last_input + i,
                    (None, Some(a)) => a,
                    (None, None) => last_input + Duration::from_secs(86_400),
                };
                idle_timer.as_mut().reset(next.into());
                // Re-armed: it must be polled to register a waker again.
                waker_seen = None;
            }
        }
    }
}

/// Writes `out` whole and flushes it, or fails once `limit` passed: a
/// client that sends requests and never reads its replies does not hold a
/// connection (and its buffers) forever. The flush matters for TLS: when
/// the socket is full, the session takes the last bytes of `out` and holds
/// back their records, and the connection then waits for the client's next
/// request while the client waits for the rest of its reply.
async fn write_within<S: Socket>(socket: &mut S, out: &[u8], limit: Duration) -> io::Result<()> {
    let write = async {
        socket.write_all(out).await?;
        socket.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client did not read its replies within the timeout",
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::time::Duration;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};
    use tokio::sync::oneshot;

    use super::Store;
    use crate::config::StoreConfig;

    /// Serves `config` on a free port; returns the address and a stop handle.
    async fn serve(
        config: StoreConfig,
    ) -> (
        std::net::SocketAddr,
        oneshot::Sender<()>,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let store = Store::new(config);
        let task = tokio::spawn(async move {
            store
                .serve(listener, async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        (addr, tx, task)
    }

    async fn read_exactly(c: &mut TcpStream, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        tokio::time::timeout(Duration::from_secs(5), c.read_exact(&mut buf))
            .await
            .expect("reply in time")
            .unwrap();
        buf
    }

    /// Requests split anywhere across writes, inline and multibulk mixed in
    /// one pipeline, quoted inline arguments: the batch loop that borrows
    /// arguments from the input buffer answers them all, in order.
    async fn pipelines_and_split_requests(config: StoreConfig) {
        let (addr, stop, task) = serve(config).await;
        let mut c = TcpStream::connect(addr).await.unwrap();
        let pipeline: &[u8] = b"PING\r\n*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$5\r\nhello\r\n\
            SET q \"a \\\"b\\\"\"\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\nGET q\r\n\r\n*1\r\n$4\r\nPING\r\n";
        let expected: &[u8] = b"+PONG\r\n+OK\r\n+OK\r\n$5\r\nhello\r\n$5\r\na \"b\"\r\n+PONG\r\n";
        c.write_all(pipeline).await.unwrap();
        assert_eq!(read_exactly(&mut c, expected.len()).await, expected);
        for cut in [1, 7, 12, 30, pipeline.len() - 1] {
            let (a, b) = pipeline.split_at(cut);
            c.write_all(a).await.unwrap();
            c.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
            c.write_all(b).await.unwrap();
            assert_eq!(
                read_exactly(&mut c, expected.len()).await,
                expected,
                "cut at {cut}"
            );
        }
        let _ = stop.send(());
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the store stops")
            .unwrap();
    }

    #[tokio::test(flavor = "current_thread")]
    async fn serves_pipelines_on_one_thread() {
        pipelines_and_split_requests(StoreConfig::default()).await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn serves_and_stops_with_busy_polling() {
        pipelines_and_split_requests(StoreConfig {
            busy_poll: Some(Duration::from_micros(200)),
            ..StoreConfig::default()
        })
        .await;
    }

    /// Batches larger than one read (40 SETs of 1 KB and 40 GETs, 43 KB
    /// in one write), from several connections at once so that the
    /// event loop naps, on a single-threaded runtime with the store's
    /// park hooks: every batch is answered whole and in order.
    #[test]
    fn large_batches_with_the_nap_hooks() {
        large_batches_with_hooks(StoreConfig {
            nap: Some(std::time::Duration::from_micros(25)),
            ..StoreConfig::default()
        });
    }

    /// The same with the default settings, whose nap follows only rounds
    /// of pipelined batches (these are 80 requests each).
    #[test]
    fn large_batches_with_the_pipelined_nap() {
        let config = StoreConfig::default();
        assert!(config.nap.is_none() && config.pipelined_nap.is_some());
        large_batches_with_hooks(config);
    }

    fn large_batches_with_hooks(config: StoreConfig) {
        let store = Store::new(config);
        let rt = tokio::runtime::Builder::new_current_thread()
            .on_thread_park(store.park_hook())
            .on_thread_unpark(store.unpark_hook())
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (stop, rx) = oneshot::channel::<()>();
            let server = tokio::spawn(async move {
                store
                    .serve(listener, async {
                        let _ = rx.await;
                    })
                    .await
                    .unwrap();
            });
            let value = vec![b'v'; 1024];
            let mut batch = Vec::new();
            let mut expected = Vec::new();
            for i in 0..40 {
                let key = format!("key:{i}");
                batch.extend_from_slice(
                    format!("*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n$1024\r\n", key.len()).as_bytes(),
                );
                batch.extend_from_slice(&value);
                batch.extend_from_slice(b"\r\n");
                expected.extend_from_slice(b"+OK\r\n");
            }
            for i in 0..40 {
                let key = format!("key:{i}");
                batch.extend_from_slice(
                    format!("*2\r\n$3\r\nGET\r\n${}\r\n{key}\r\n", key.len()).as_bytes(),
                );
                expected.extend_from_slice(b"$1024\r\n");
                expected.extend_from_slice(&value);
                expected.extend_from_slice(b"\r\n");
            }
            let (batch, expected) = (std::sync::Arc::new(batch), std::sync::Arc::new(expected));
            let clients: Vec<_> = (0..4)
                .map(|_| {
                    let (batch, expected) = (batch.clone(), expected.clone());
                    tokio::spawn(async move {
                        let mut c = TcpStream::connect(addr).await.unwrap();
                        for _ in 0..20 {
                            c.write_all(&batch).await.unwrap();
                            assert_eq!(read_exactly(&mut c, expected.len()).await, *expected);
                        }
                    })
                })
                .collect();
            for client in clients {
                client.await.unwrap();
            }
            let _ = stop.send(());
            tokio::time::timeout(Duration::from_secs(10), server)
                .await
                .expect("the store stops")
                .unwrap();
        });
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn busy_polling_is_skipped_on_many_threads() {
        pipelines_and_split_requests(StoreConfig {
            busy_poll: Some(Duration::from_micros(200)),
            ..StoreConfig::default()
        })
        .await;
    }
}
