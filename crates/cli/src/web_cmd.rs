//! `sticky web`: a web server running the demo app on the session library,
//! configured from the cluster file.

use std::future::IntoFuture as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use sticky_config::ClusterFile;
use sticky_session::{Config, IpNet, Peer, SessionManager, StoreSpec};

/// `sticky web` options.
#[derive(Debug, Args)]
pub(crate) struct WebArgs {
    /// The cluster file.
    #[arg(long, env = "STICKY_CONFIG")]
    config: PathBuf,
    /// This server's `[[web]]` entry.
    #[arg(long, env = "STICKY_WEB_NAME")]
    name: String,
    /// Listen here instead of the entry's `listen`.
    #[arg(long, env = "STICKY_WEB_LISTEN", value_parser = crate::values::addr)]
    listen: Option<SocketAddr>,
    /// Worker threads (the demo: one event loop each, connections dealt out
    /// in turn) [default: one per core; with --app, one].
    #[arg(long, allow_negative_numbers = true, env = "STICKY_WEB_THREADS", value_parser = crate::values::whole::<usize>(1, 1024))]
    threads: Option<usize>,
    /// Serve Prometheus metrics on this address (http://ADDR/metrics, no
    /// credentials), instead of the entry's `metrics` [default: none].
    #[arg(long, env = "STICKY_WEB_METRICS", value_parser = crate::values::addr)]
    metrics: Option<SocketAddr>,
    /// Run as a sidecar in front of the app at this address
    /// (`http://127.0.0.1:PORT`, or a Unix socket: `unix:/PATH`) instead of
    /// the bundled demo: the app gets
    /// each request's session in a header and changes it in its answer's
    /// headers (docs/sidecar.md).
    #[arg(long, value_name = "URL")]
    app: Option<String>,
    /// With --app: only requests whose path starts with this get a session
    /// (repeatable) [default: every path].
    #[arg(long = "session-prefix", value_name = "PATH", requires = "app")]
    session_prefix: Vec<String>,
    /// With --app: the largest session (its JSON: bytes, or a size such as
    /// 64KiB) the app may set; larger is refused with 413 and nothing is
    /// stored. Also capped by `[session] max_size`.
    #[arg(long, value_name = "SIZE", default_value_t = crate::sidecar::DEFAULT_MAX_SESSION, value_parser = crate::values::size, requires = "app")]
    app_max_session: usize,
    /// With --app: how long the app may take to send its answer's headers
    /// (the session stays locked meanwhile), e.g. 30s (a plain number:
    /// milliseconds).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = crate::values::duration_or_millis, requires = "app")]
    app_timeout_ms: Duration,
}

/// Builds the library's settings from the cluster file.
pub(crate) fn session_config(
    file: &ClusterFile,
    path: &std::path::Path,
    name: &str,
) -> anyhow::Result<Config> {
    let Some(entry) = file.web(name) else {
        let names: Vec<_> = file.web.iter().map(|w| w.name.as_str()).collect();
        bail!(
            "no [[web]] named {name:?} in {} (it has: {})",
            path.display(),
            names.join(", ")
        );
    };
    if file.store.is_empty() {
        bail!(
            "{} lists no [[store]]: web servers need at least one",
            path.display()
        );
    }
    let secret = file.secret(path)?;
    let stores = file
        .store
        .iter()
        .map(|s| StoreSpec {
            name: s.name.clone(),
            addr: s.client_addr(),
        })
        .collect();
    let s = &file.session;
    let mut c = Config::new(name, secret.into_bytes(), stores);
    c.replicas = file.replicas;
    c.mode = file.mode;
    c.cookie_name = s.cookie_name.clone();
    c.cookie_path = s.cookie_path.clone();
    c.cookie_domain = s.cookie_domain.clone();
    c.cookie_secure = s.cookie_secure;
    c.idle_timeout = Duration::from_secs(s.idle_timeout_secs.max(1));
    c.absolute_timeout = Duration::from_secs(s.absolute_timeout_secs.max(1));
    c.max_size = usize::try_from(s.max_size.0).context("[session] max_size is too large")?;
    c.lease = Duration::from_millis(s.lease_ms.max(100));
    c.claim_timeout = Duration::from_millis(s.claim_timeout_ms.max(10));
    c.store_timeout = Duration::from_millis(s.store_timeout_ms.max(10));
    c.slow_store = (s.slow_store_ms > 0).then(|| Duration::from_millis(s.slow_store_ms));
    c.peers = file
        .web
        .iter()
        .filter(|w| w.name != name)
        .map(|w| Peer {
            name: w.name.clone(),
            addr: connectable(w.listen),
        })
        .collect();
    if s.release_when_unreached {
        // When every director has marked it down, and so sends its users
        // elsewhere.
        let d = file.director.clone().unwrap_or_default();
        c.release_unreached_after = Some(Duration::from_millis(
            d.health_interval_ms
                .saturating_mul(u64::from(d.fall.max(1)))
                .saturating_add(d.health_timeout_ms),
        ));
    }
    c.async_queue = s.async_queue.max(1);
    c.async_max_lag = Duration::from_millis(s.async_max_lag_ms);
    c.recopy_rate = s.recopy_rate.max(1);
    c.store_password = s.store_password.clone();
    c.store_tls_ca = s.store_tls_ca.clone();
    c.standby = entry.standby;
    c.max_sessions = s.max_sessions;
    c.max_bytes = s.max_bytes.0;
    c.new_sessions_per_ip = s.new_sessions_per_ip;
    c.new_sessions_burst = s.new_sessions_burst.max(1);
    c.new_session_ttl = Duration::from_secs(s.new_session_ttl_secs.max(1));
    c.trusted_proxies = s
        .trusted_proxies
        .iter()
        .map(|p| p.parse::<IpNet>())
        .collect::<Result<_, _>>()
        .with_context(|| format!("[session] trusted_proxies in {}", path.display()))?;
    Ok(c)
}

/// `addr` as a peer connects to it: an unspecified address (`0.0.0.0`,
/// `::`) is reached on loopback.
fn connectable(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    std::net::SocketAddr::new(ip, addr.port())
}

/// Serves `handle`'s metrics on `http://addr/metrics`, without credentials
/// (they hold no session data or secrets), until the process ends: for
/// Prometheus, which then needs no admin token (docs/deploy.md,
/// "Monitoring").
async fn serve_metrics(addr: SocketAddr, handle: sticky_metrics::Handle) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (metrics)"))?;
    let bound = listener.local_addr().unwrap_or(addr);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let handle = handle.clone();
            async move { handle.render() }
        }),
    );
    tracing::info!(addr = %bound, "metrics on http://{bound}/metrics");
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "the metrics listener failed");
        }
    });
    Ok(())
}

/// Runs the demo web server (or, with `--app`, the sidecar) until SIGINT
/// or SIGTERM.
pub(crate) fn run(args: WebArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.app {
        crate::sidecar::app_addr(url)?;
    }
    let file = ClusterFile::load(&args.config)?;
    let config = session_config(&file, &args.config, &args.name)?;
    let entry = file.web(&args.name).context("web entry vanished")?;
    let listen = args.listen.unwrap_or(entry.listen);
    let metrics_addr = args.metrics.or(entry.metrics);
    let drain = Duration::from_millis(file.session.drain_timeout_ms);
    if args.app.is_none() {
        let threads = args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        return run_per_thread(
            &args.name,
            config,
            listen,
            metrics_addr,
            threads.max(1),
            drain,
        );
    }
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    // A sidecar shares its machine with the app, which needs the cores
    // more: one event loop keeps up with an app's rate, and a second only
    // adds wake-ups between threads (Express behind it, `bench/sidecar.sh`
    // on 2 cores: 50 µs of the sidecar's CPU per request with one thread,
    // 66 with two; docs/benchmarks.md).
    let threads = args.threads.or(args.app.is_some().then_some(1));
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let (listener, metrics) = listen_with_metrics(listen, metrics_addr).await?;
        let manager = SessionManager::start(config).await?;
        let app = match &args.app {
            None => crate::demo::app(&manager),
            Some(url) => crate::sidecar::routes(
                &manager,
                crate::sidecar::SidecarConfig {
                    app: url.clone(),
                    session_prefixes: args.session_prefix.clone(),
                    max_session: args.app_max_session,
                    app_timeout: args.app_timeout_ms.max(Duration::from_millis(1)),
                },
            )?,
        };
        let app = app.merge(manager.control_routes(metrics));
        match &args.app {
            None => tracing::info!(server = %args.name, addr = %listen, epoch = manager.epoch(), "web server listening"),
            Some(url) => tracing::info!(server = %args.name, addr = %listen, app = %url, epoch = manager.epoch(), "sidecar web server listening"),
        }
        // The peer address, for the per-address limit of new sessions.
        let app = app.into_make_service_with_connect_info::<SocketAddr>();
        // A sidecar streams the app's answer: its head may leave before
        // the body has arrived from the app, and without TCP_NODELAY the
        // body would wait for the client's delayed ACK (40 ms on Linux).
        let nodelay = args.app.is_some();
        let listener = axum::serve::ListenerExt::tap_io(listener, move |tcp| {
            if nodelay {
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "cannot set TCP_NODELAY");
                }
            }
        });
        // On SIGINT/SIGTERM: stop serving sessions and release the lease
        // first, then close the listener and drain (docs/safety.md §2), at
        // most `drain` (the connections still open are closed with the
        // runtime).
        let stopping = manager.clone();
        let (stopped_tx, stopped) = tokio::sync::watch::channel(false);
        let serve = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                crate::shutdown::shutdown_signal().await;
                stopping.stop().await;
                let _ = stopped_tx.send(true);
            })
            .into_future();
        drain_within(serve, stopped, drain)
            .await
            .context("web server failed")?;
        tracing::info!("web server stopped");
        Ok(())
    })
}

/// The web server's listener on `listen`, and the Prometheus recorder
/// (if none was installed yet), served on `metrics_addr` when given.
async fn listen_with_metrics(
    listen: SocketAddr,
    metrics_addr: Option<SocketAddr>,
) -> anyhow::Result<(tokio::net::TcpListener, Option<sticky_metrics::Handle>)> {
    let metrics = sticky_metrics::install()
        .map_err(|e| tracing::warn!(error = %e, "no metrics recorder"))
        .ok();
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    if let Some(addr) = metrics_addr {
        let Some(handle) = metrics.clone() else {
            bail!("cannot serve metrics on {addr}: no metrics recorder");
        };
        serve_metrics(addr, handle).await?;
    }
    Ok((listener, metrics))
}

/// The demo web server on `threads` event loops, one per thread, each a
/// current-thread runtime serving the connections handed to it (as the
/// director's workers do). A multi-thread runtime spends much of a
/// request's CPU at a moderate rate on its idle workers looking for work
/// to steal and parking again (docs/benchmarks.md, session 10); a
/// connection here stays on the thread that took it.
///
/// The first thread (this one) runs the store clients' connections, the
/// metrics listener and the accept loop, which deals the connections out
/// in turn; every thread serves its share with a clone of the same router.
/// The session manager's background tasks (lease renewal, pings, re-copy)
/// run on one more thread of their own, `web-bg`: a re-copy after a store
/// is lost (a snapshot of the whole cache, then batches of copies) would
/// otherwise run between the first thread's requests (`bench/scale.sh` at
/// 1,000,000 sessions: the users' p99 during the re-copy rose from 6.6 ms
/// to 26 ms with it there; docs/benchmarks.md, session 11).
fn run_per_thread(
    name: &str,
    config: sticky_session::Config,
    listen: SocketAddr,
    metrics_addr: Option<SocketAddr>,
    threads: usize,
    drain: Duration,
) -> anyhow::Result<()> {
    // Every thread here runs its own single-threaded runtime: each talks
    // to the stores on connections of its own (docs/benchmarks.md,
    // session 13: a write on a thread that did not own the shared
    // connection woke the owning thread twice per store).
    let mut config = config;
    config.store_connection_per_thread = true;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let background = Background::start()?;
    let bg = background.handle.clone();
    let served = rt.block_on(async move {
        let (listener, metrics) = listen_with_metrics(listen, metrics_addr).await?;
        let bound = listener.local_addr().unwrap_or(listen);
        let manager = SessionManager::start_with_background(config, bg).await?;
        let app = crate::demo::app(&manager).merge(manager.control_routes(metrics));
        tracing::info!(server = %name, addr = %listen, epoch = manager.epoch(), threads, "web server listening");
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut inboxes = Vec::with_capacity(threads);
        let mut workers = Vec::with_capacity(threads.saturating_sub(1));
        let (own_tx, own_rx) = tokio::sync::mpsc::unbounded_channel();
        inboxes.push(own_tx);
        for i in 1..threads {
            let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
            let (done_tx, done_rx) = tokio::sync::oneshot::channel();
            let app = app.clone();
            let stop = stop_rx.clone();
            // Built here, so that a runtime that cannot start fails the
            // start rather than leaving a thread that takes no connections.
            let thread_rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            std::thread::Builder::new()
                .name(format!("web-{i}"))
                .spawn(move || {
                    let served =
                        serve_thread(&thread_rt, Inbox { rx, addr: bound }, app, stop, drain);
                    let _ = done_tx.send(served);
                })
                .context("cannot start a web server thread")?;
            inboxes.push(tx);
            workers.push(done_rx);
        }
        let accepting = tokio::spawn(deal_out(listener, inboxes, stop_rx.clone()));
        // On SIGINT/SIGTERM: stop serving sessions and release the lease
        // first, then stop taking connections and drain every thread
        // (docs/safety.md §2). Each thread writes to the stores on its own
        // connections, so a draining thread's last writes do not need this
        // one; it still waits for them before it returns.
        let stopping = manager.clone();
        let stopped = stop_rx.clone();
        let own = serve_inbox(
            Inbox { rx: own_rx, addr: bound },
            app,
            async move {
                crate::shutdown::shutdown_signal().await;
                stopping.stop().await;
                let _ = stop_tx.send(true);
            },
            stopped,
            drain,
        );
        let mut result = own.await;
        accepting.abort();
        for w in workers {
            let r = w
                .await
                .unwrap_or_else(|_| Err(anyhow::anyhow!("a web server thread panicked")));
            if result.is_ok() {
                result = r;
            }
        }
        result?;
        tracing::info!("web server stopped");
        Ok(())
    });
    background.stop();
    served
}

/// The thread of the session manager's background tasks: a current-thread
/// runtime that runs whatever is spawned on `handle` until [`stop`](Self::stop).
struct Background {
    handle: tokio::runtime::Handle,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl Background {
    fn start() -> anyhow::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let handle = rt.handle().clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("web-bg".into())
            .spawn(move || {
                // Until stopped (or the sender is dropped): its tasks run
                // meanwhile, and are dropped with the runtime.
                let _ = rt.block_on(stopped);
            })
            .context("cannot start the background thread")?;
        Ok(Self {
            handle,
            stop,
            thread,
        })
    }

    fn stop(self) {
        let _ = self.stop.send(());
        if self.thread.join().is_err() {
            tracing::warn!("the background thread panicked");
        }
    }
}

/// Connections accepted by [`deal_out`] for one thread, registered with
/// that thread's runtime as it takes them.
struct Inbox {
    rx: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>,
    addr: SocketAddr,
}

impl axum::serve::Listener for Inbox {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Closed only once the accept loop stopped, at shutdown.
            let Some(std) = self.rx.recv().await else {
                std::future::pending::<()>().await;
                continue;
            };
            let peer = std.peer_addr();
            match (tokio::net::TcpStream::from_std(std), peer) {
                (Ok(tcp), Ok(peer)) => return (tcp, peer),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::debug!(error = %e, "dropped an accepted connection");
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}

/// Accepts connections and hands them to the threads in turn, as
/// non-blocking std sockets (each thread registers its own with its own
/// runtime), until `stop`.
async fn deal_out(
    listener: tokio::net::TcpListener,
    inboxes: Vec<tokio::sync::mpsc::UnboundedSender<std::net::TcpStream>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut next = 0usize;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => return,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // As axum's own accept loop: out of descriptors and the
                // like pass; wait a little rather than spin.
                tracing::debug!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let std = match tcp.into_std() {
            Ok(std) => std,
            Err(e) => {
                tracing::debug!(error = %e, "dropped an accepted connection");
                continue;
            }
        };
        if inboxes.is_empty() {
            return;
        }
        next = (next + 1) % inboxes.len();
        if inboxes[next].send(std).is_err() {
            tracing::warn!(
                thread = next,
                "a web server thread is gone; its connection is dropped"
            );
        }
    }
}

/// Serves the connections of `inbox` with `app` until `stop` resolves,
/// then drains them, at most `drain` after `stopped` turned true.
async fn serve_inbox(
    inbox: Inbox,
    app: axum::Router,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
    stopped: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<()> {
    // The peer address, for the per-address limit of new sessions.
    let app = app.into_make_service_with_connect_info::<SocketAddr>();
    let listener = axum::serve::ListenerExt::tap_io(inbox, |_| {});
    let serve = axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .into_future();
    drain_within(serve, stopped, drain)
        .await
        .context("web server failed")
}

/// Runs `serve` (a server with graceful shutdown) to its end, or until
/// `drain` has passed since `stopped` turned true, whichever comes first:
/// a connection that never finishes its request (a client that stopped
/// sending halfway, a stream) must not hold the exit for good. The
/// connections still open then are closed when their runtime is dropped.
async fn drain_within(
    serve: impl std::future::Future<Output = std::io::Result<()>>,
    mut stopped: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> std::io::Result<()> {
    let limit = async move {
        if stopped.wait_for(|s| *s).await.is_err() {
            // Never told to stop: only `serve` ends this.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(drain).await;
    };
    tokio::select! {
        served = serve => served,
        () = limit => {
            tracing::warn!(
                drain_timeout_ms = u64::try_from(drain.as_millis()).unwrap_or(u64::MAX),
                "drain timeout reached: closing the connections still open"
            );
            Ok(())
        }
    }
}

/// One more web server thread: its own current-thread runtime `rt`
/// serving the connections dealt to it until `stop` turns true, then
/// draining them (at most `drain`).
fn serve_thread(
    rt: &tokio::runtime::Runtime,
    inbox: Inbox,
    app: axum::Router,
    mut stop: tokio::sync::watch::Receiver<bool>,
    drain: Duration,
) -> anyhow::Result<()> {
    let stopped = stop.clone();
    rt.block_on(serve_inbox(
        inbox,
        app,
        async move {
            let _ = stop.wait_for(|s| *s).await;
        },
        stopped,
        drain,
    ))
}
