//! `sticky web`: a web server running the demo app on the session library,
//! configured from the cluster file.

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
    /// Worker threads [default: one per core; with --app, one].
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
    c.peers = file
        .web
        .iter()
        .filter(|w| w.name != name)
        .map(|w| Peer {
            name: w.name.clone(),
            addr: connectable(w.listen),
        })
        .collect();
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
async fn serve_metrics(
    addr: SocketAddr,
    handle: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<()> {
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

/// Runs the demo web server until SIGINT or SIGTERM.
pub(crate) fn run(args: WebArgs) -> anyhow::Result<()> {
    if let Some(url) = &args.app {
        crate::sidecar::app_addr(url)?;
    }
    let file = ClusterFile::load(&args.config)?;
    let config = session_config(&file, &args.config, &args.name)?;
    let entry = file.web(&args.name).context("web entry vanished")?;
    let listen = args.listen.unwrap_or(entry.listen);
    let metrics_addr = args.metrics.or(entry.metrics);
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
        let metrics = metrics_exporter_prometheus::PrometheusBuilder::new()
            .install_recorder()
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
        // first, then close the listener and drain (docs/safety.md §2).
        let stopping = manager.clone();
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                crate::shutdown::shutdown_signal().await;
                stopping.stop().await;
            })
            .await
            .context("web server failed")?;
        tracing::info!("web server stopped");
        Ok(())
    })
}
