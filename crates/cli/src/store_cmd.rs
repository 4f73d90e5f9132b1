//! `sticky store`: settings from flags, `STICKY_STORE_*` variables and the
//! cluster file, in that order of precedence.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;
use sticky_config::{ByteSize, ClusterFile};
use sticky_store::{Store, StoreConfig};

/// `sticky store` options. Unset options come from the cluster file's
/// `[[store]]` entry named by `--name`, then from the defaults.
#[derive(Debug, Args)]
pub(crate) struct StoreArgs {
    /// Cluster file to read this store's entry from.
    #[arg(long, env = "STICKY_CONFIG")]
    config: Option<PathBuf>,
    /// Name of this store's `[[store]]` entry in the cluster file.
    #[arg(long, env = "STICKY_STORE_NAME")]
    name: Option<String>,
    /// Address to listen on [default: 127.0.0.1:7379].
    #[arg(long, env = "STICKY_STORE_LISTEN", value_parser = crate::values::addr)]
    listen: Option<SocketAddr>,
    /// Password that clients must give with AUTH (prefer --requirepass-file).
    #[arg(long, env = "STICKY_STORE_REQUIREPASS", hide_env_values = true)]
    requirepass: Option<String>,
    /// File whose first line is the AUTH password.
    #[arg(long, env = "STICKY_STORE_REQUIREPASS_FILE")]
    requirepass_file: Option<PathBuf>,
    /// Refuse writes beyond this much data, e.g. 512MiB [default: no limit].
    #[arg(long, env = "STICKY_STORE_MAX_MEMORY")]
    max_memory: Option<ByteSize>,
    /// Most client connections at once.
    #[arg(long, allow_negative_numbers = true, env = "STICKY_STORE_MAX_CLIENTS", default_value_t = 10_000, value_parser = crate::values::whole::<usize>(1, 1 << 20))]
    max_clients: usize,
    /// Close clients idle this long, e.g. 5m or 300 (a plain number:
    /// seconds); 0 = never.
    #[arg(long, env = "STICKY_STORE_IDLE_TIMEOUT", default_value = "5m", value_parser = crate::values::duration_or_secs)]
    idle_timeout: Duration,
    /// Longest key or value a client may send.
    #[arg(long, env = "STICKY_STORE_MAX_BULK", default_value = "16MiB")]
    max_bulk: ByteSize,
    /// Most bytes of unparsed input per connection (at least 2x --max-bulk).
    #[arg(long, env = "STICKY_STORE_MAX_QUERY_BUFFER", default_value = "64MiB")]
    max_query_buffer: ByteSize,
    /// Most arguments in one command.
    #[arg(long, allow_negative_numbers = true, env = "STICKY_STORE_MAX_ARGS", default_value_t = 4096, value_parser = crate::values::whole::<usize>(3, 1 << 20))]
    max_args: usize,
    /// How long a SESS.DEL tombstone lives, e.g. 1m or 60 (a plain number:
    /// seconds); at least 1s.
    #[arg(long, env = "STICKY_STORE_TOMBSTONE_TTL", default_value = "1m", value_parser = crate::values::duration_or_secs)]
    tombstone_ttl: Duration,
    /// Serve Prometheus metrics on this address (http://ADDR/metrics).
    #[arg(long, env = "STICKY_STORE_METRICS", value_parser = crate::values::addr)]
    metrics: Option<SocketAddr>,
    /// Worker threads [default: one fewer than the cores, at least one:
    /// the kernel's network work needs a core too; on two cores, one event
    /// loop, like Redis's].
    #[arg(long, allow_negative_numbers = true, env = "STICKY_STORE_THREADS", value_parser = crate::values::whole::<usize>(1, 1024))]
    threads: Option<usize>,
    /// After each burst of requests, keep polling the sockets this long
    /// before sleeping, e.g. 50us (a plain number: microseconds; 0: never;
    /// at most 10ms). Trades CPU for throughput on a store with a core to
    /// itself; only with `--threads 1`.
    #[arg(long, env = "STICKY_STORE_BUSY_POLL_US", default_value = "0", value_parser = busy_poll)]
    busy_poll_us: Duration,
    /// Under load, nap this many microseconds before the event loop
    /// sleeps, so that requests sent meanwhile are read together instead
    /// of each waking the store (0, the default: never; no CPU is spent;
    /// only with `--threads 1`, and not with --busy-poll-us). Raises
    /// pipelined throughput at the cost of up to ~75 µs more latency
    /// under load (docs/benchmarks.md).
    #[arg(long, env = "STICKY_STORE_NAP_US", default_value_t = 0, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    nap_us: u64,
    /// Nap as --nap-us does, but only after rounds of pipelined requests
    /// (8 or more per batch on average; 0: never). Unpipelined clients,
    /// such as web servers, never wait for this nap (docs/benchmarks.md,
    /// session 11). Ignored with --nap-us or --busy-poll-us.
    #[arg(long, env = "STICKY_STORE_PIPELINED_NAP_US", default_value_t = 25, value_parser = clap::value_parser!(u64).range(0..=1_000))]
    pipelined_nap_us: u64,
    /// Directory for the store's run file, which tells a first start from
    /// a restart: a restarted store may have forgotten copies, takeover
    /// promises and lease records, and says so (`docs/safety.md`, §3).
    /// Without it, every start counts as a restart.
    #[arg(long, env = "STICKY_STORE_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// How long takeover promises and dead-lease records are kept, and how
    /// long a restarted store grants no lease and accepts no kill or
    /// prepare: at least twice the web servers' `claim_timeout_ms`
    /// (`docs/safety.md` §3). Default: twice the cluster file's, or 4s.
    #[arg(long, env = "STICKY_STORE_CLAIM_WINDOW", value_parser = crate::values::duration_or_secs)]
    claim_window: Option<Duration>,
    /// Serve TLS only, with this PEM certificate chain (needs --tls-key;
    /// instead of the [[store]] entry's tls_cert). Clients connect with
    /// `sticky+tls://HOST:PORT` and verify it (docs/tls.md).
    #[arg(
        long,
        env = "STICKY_STORE_TLS_CERT",
        value_name = "FILE",
        requires = "tls_key"
    )]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(
        long,
        env = "STICKY_STORE_TLS_KEY",
        value_name = "FILE",
        requires = "tls_cert"
    )]
    tls_key: Option<PathBuf>,
}

/// `--busy-poll-us`: a duration of at most 10ms (a plain number:
/// microseconds).
fn busy_poll(text: &str) -> Result<Duration, String> {
    let d = crate::values::duration_or_micros(text)?;
    if d > Duration::from_millis(10) {
        return Err(format!("{} is too long: at most 10ms", text.trim()));
    }
    Ok(d)
}

/// Whether this start is a restart (the run file in `dir` exists; no
/// directory: always). Creates the run file.
/// The worker threads: `--threads`, or one fewer than the cores (at least
/// one). The kernel's network work (softirqs, copies) needs a core too, and
/// on this project's 2-core machines two store threads lost to one on
/// every unpipelined redis-benchmark line (0.86-0.88x Redis against
/// 1.00x, `docs/benchmarks.md`): on two cores the default is one event
/// loop, like Redis's.
fn threads(args: &StoreArgs) -> usize {
    args.threads.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get().saturating_sub(1))
            .max(1)
    })
}

fn mark_run(dir: Option<&std::path::Path>) -> anyhow::Result<bool> {
    let Some(dir) = dir else {
        return Ok(true);
    };
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let file = dir.join("store.run");
    let restarted = file.exists();
    std::fs::write(&file, format!("pid {}\n", std::process::id()))
        .with_context(|| format!("cannot write the run file {}", file.display()))?;
    Ok(restarted)
}

fn read_secret(path: &PathBuf) -> anyhow::Result<String> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read password file {}", path.display()))?;
    match text.lines().next() {
        Some(line) if !line.is_empty() => Ok(line.to_owned()),
        _ => bail!("password file {} is empty", path.display()),
    }
}

/// The certificate chain and key a TLS store serves with.
type TlsFiles = Option<(PathBuf, PathBuf)>;

fn resolve(args: &StoreArgs) -> anyhow::Result<(StoreConfig, Option<SocketAddr>, TlsFiles)> {
    let mut needed_window = None;
    let entry = match (&args.config, &args.name) {
        (Some(path), Some(name)) => {
            let file = ClusterFile::load(path)?;
            needed_window = Some(Duration::from_millis(
                file.session.claim_timeout_ms.saturating_mul(2),
            ));
            let entry = file.store(name).cloned().with_context(|| {
                let names: Vec<_> = file.store.iter().map(|s| s.name.as_str()).collect();
                format!(
                    "no [[store]] named {name:?} in {} (it has: {})",
                    path.display(),
                    names.join(", ")
                )
            })?;
            Some(entry)
        }
        (Some(path), None) => bail!(
            "--config {} needs --name to pick this store's [[store]] entry",
            path.display()
        ),
        (None, _) => None,
    };
    let mut config = StoreConfig::default();
    if let Some(listen) = args.listen.or(entry.as_ref().map(|e| e.listen)) {
        config.listen = listen;
    }
    config.requirepass = match (&args.requirepass, &args.requirepass_file) {
        (Some(p), None) => Some(p.clone()),
        (None, Some(f)) => Some(read_secret(f)?),
        (Some(_), Some(_)) => bail!("give --requirepass or --requirepass-file, not both"),
        (None, None) => match entry.as_ref() {
            Some(e) => match (&e.requirepass, &e.requirepass_file) {
                (Some(p), _) => Some(p.clone()),
                (None, Some(f)) => Some(read_secret(f)?),
                (None, None) => None,
            },
            None => None,
        },
    };
    if config.requirepass.as_deref() == Some("") {
        bail!("the store password must not be empty");
    }
    if let Some(max) = args
        .max_memory
        .or(entry.as_ref().and_then(|e| e.max_memory))
    {
        config.max_memory = usize::try_from(max.0).context("--max-memory is too large")?;
    }
    config.max_clients = args.max_clients.clamp(1, 1 << 20);
    config.idle_timeout = (!args.idle_timeout.is_zero()).then_some(args.idle_timeout);
    config.limits.max_bulk = usize::try_from(args.max_bulk.0).context("--max-bulk is too large")?;
    config.limits.max_args = args.max_args.clamp(3, 1 << 20);
    config.max_query_buffer =
        usize::try_from(args.max_query_buffer.0).context("--max-query-buffer is too large")?;
    config.tombstone_ttl = args.tombstone_ttl.max(Duration::from_secs(1));
    config.busy_poll = (!args.busy_poll_us.is_zero()).then_some(args.busy_poll_us);
    config.nap = (args.nap_us > 0).then(|| Duration::from_micros(args.nap_us));
    config.pipelined_nap =
        (args.pipelined_nap_us > 0).then(|| Duration::from_micros(args.pipelined_nap_us));
    if config.busy_poll.is_some() && threads(args) != 1 {
        tracing::warn!("--busy-poll-us applies only with --threads 1; ignored");
    }
    config.claim_window = match (args.claim_window, needed_window) {
        (Some(w), Some(needed)) if w < needed => bail!(
            "--claim-window {} ms is shorter than twice the cluster file's claim_timeout_ms ({} ms): a restarted store would accept kills and prepares while claims it forgot may still run (docs/safety.md §3)",
            w.as_millis(),
            needed.as_millis()
        ),
        (Some(w), _) => w,
        (None, Some(needed)) => needed.max(Duration::from_millis(1)),
        (None, None) => config.claim_window,
    };
    let metrics = args.metrics.or(entry.as_ref().and_then(|e| e.metrics));
    // The flags win over the [[store]] entry, as a pair.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some((cert.clone(), key.clone())),
        _ => entry
            .as_ref()
            .and_then(|e| e.tls_cert.clone().zip(e.tls_key.clone())),
    };
    Ok((config, metrics, tls))
}

/// Runs a store until SIGINT or SIGTERM.
pub(crate) fn run(args: StoreArgs) -> anyhow::Result<()> {
    let (mut config, metrics, tls) = resolve(&args)?;
    config.restarted = mark_run(args.state_dir.as_deref())?;
    if config.restarted {
        tracing::info!(
            state_dir = ?args.state_dir,
            window_ms = config.claim_window.as_millis() as u64,
            "starting as a restarted store: no leases, kills or takeover promises during the recovery window, and a missing session is reported as possibly forgotten"
        );
    }
    if !config.listen.ip().is_loopback() {
        tracing::warn!(
            addr = %config.listen,
            auth = config.requirepass.is_some(),
            "listening beyond loopback: make sure a firewall and --requirepass protect this store"
        );
    }
    // One thread: a single event loop like Redis's, without the
    // work-stealing scheduler's cross-thread wake-ups.
    let threads = threads(&args);
    let mut rt = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(threads);
        b
    };
    let listen = config.listen;
    let mut store = Store::new(config);
    if let Some((cert, key)) = &tls {
        store = store.with_tls(cert, key)?;
    }
    if threads == 1 {
        // Naps under load before sleeping (`StoreConfig::nap`).
        rt.on_thread_park(store.park_hook())
            .on_thread_unpark(store.unpark_hook());
    }
    let rt = rt
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        if let Some(addr) = metrics {
            sticky_store::serve_metrics(store.clone(), addr).await?;
        }
        store
            .serve(listener, crate::shutdown::shutdown_signal())
            .await?;
        tracing::info!("store stopped");
        Ok(())
    })
}
