//! `sticky bench`: a session-aware HTTP load generator.
//!
//! Each virtual user has its own keep-alive HTTP/1.1 connection and its own
//! cookie jar, so every user is one session on the target. Before measuring,
//! each user can grow its session to `--session-bytes` by posting filler
//! items; then the users send a mix of reads (`GET --read-path`) and writes
//! (`POST --write-path`), either as fast as the server answers (closed loop)
//! or on a fixed schedule (`--rate`, open loop: a request sent late because
//! the previous answer came late counts its latency from when it was due,
//! so a slow server cannot hide its queueing).
//! After a warm-up, latencies of successful requests go into HDR histograms;
//! failures are counted by kind. It works against any HTTP server, so the
//! peer comparisons in `bench/` use it too. Without `--url` it targets the
//! shop of the running `sticky up`, found as `sticky status` finds it.
//!
//! `--fresh-sessions` turns the users into anonymous clients: every request
//! goes out without cookies and `Set-Cookie` answers are ignored, so every
//! write starts a new session on the target — the session-creation
//! workload. `--write-ratio 1 --warmup 0s --requests N` then creates exactly
//! N sessions (with `--warmup 0s` no request is sent before measuring
//! starts); `bench/scale.sh` loads a million sessions that way.

pub(crate) mod jar;
pub(crate) mod report;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::Args;
use http::header::{CONTENT_TYPE, COOKIE, HOST, SET_COOKIE};
use http::{HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;

use jar::CookieJar;
use report::{ErrorKind, Report, Settings, Tally};

/// Characters of one filler item (the demo app accepts up to 64).
const FILL_ITEM_LEN: usize = 60;
/// Pause after a failed connection attempt, so a dead target is not
/// hammered in a busy loop.
const CONNECT_BACKOFF: Duration = Duration::from_millis(10);

/// `sticky bench` options.
#[derive(Debug, Args)]
pub(crate) struct BenchArgs {
    /// Target base URL (http only); the paths below are appended to its
    /// path [default: the shop of the running `sticky up`, found as
    /// `sticky status` finds it].
    #[arg(long)]
    url: Option<String>,
    /// Without --url: the shop of the `sticky up` whose run dir this is
    /// [default: the latest one started by this user that runs].
    #[arg(long, value_name = "DIR", conflicts_with = "url")]
    dir: Option<PathBuf>,
    /// Virtual users: each has its own connection and cookie jar (session).
    #[arg(long, allow_negative_numbers = true, default_value_t = 64, value_parser = crate::values::whole::<usize>(1, u64::MAX))]
    users: usize,
    /// Fraction of requests that are writes (0 to 1).
    #[arg(long, allow_negative_numbers = true, default_value_t = 0.1, value_parser = crate::values::fraction)]
    write_ratio: f64,
    /// Path of reads (GET).
    #[arg(long, default_value = "/api/counter")]
    read_path: String,
    /// Path of writes (POST).
    #[arg(long, default_value = "/api/counter")]
    write_path: String,
    /// Body of every write, sent as application/json when not empty.
    #[arg(long, default_value = "")]
    write_body: String,
    /// Session payload per user (bytes, or a size such as 4KiB), put in
    /// before measuring by posting ceil(N/60) items of 60 characters as
    /// {"item": "..."} to --fill-path.
    #[arg(long, default_value_t = 0, value_parser = crate::values::size)]
    session_bytes: usize,
    /// Send every request without cookies and ignore `Set-Cookie`, so that
    /// every write starts a new session (the session-creation workload).
    /// With --write-ratio 1 --warmup 0s --requests N, exactly N sessions are
    /// created (a failed request may or may not have made one).
    #[arg(long, conflicts_with = "session_bytes")]
    fresh_sessions: bool,
    /// Path the filler items are posted to.
    #[arg(long, default_value = "/api/cart/items")]
    fill_path: String,
    /// How long to measure, e.g. 30s, 500ms, 2m (a plain number: seconds)
    /// [default: 30s unless --requests].
    #[arg(long, value_parser = parse_duration, conflicts_with = "requests")]
    duration: Option<Duration>,
    /// Measure this many requests (over all users) instead of a duration.
    #[arg(long, allow_negative_numbers = true, value_parser = crate::values::whole::<u64>(1, u64::MAX))]
    requests: Option<u64>,
    /// Fixed total rate in requests per second, shared evenly by the users,
    /// each on its own schedule (open loop) [default: as fast as possible].
    #[arg(long, allow_negative_numbers = true, value_parser = crate::values::positive)]
    rate: Option<f64>,
    /// Load before measuring (not counted).
    #[arg(long, value_parser = parse_duration, default_value = "2s")]
    warmup: Duration,
    /// Worker threads of the load generator [default: one per core].
    #[arg(long, allow_negative_numbers = true, value_parser = crate::values::whole::<usize>(1, 1024))]
    threads: Option<usize>,
    /// A request (or a connection attempt) slower than this fails as `timeout`
    /// (`connect`).
    #[arg(long, value_parser = parse_duration, default_value = "10s")]
    timeout: Duration,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No progress line on stderr.
    #[arg(long)]
    no_progress: bool,
}

/// Parses `30s`, `500ms`, `2m`, `1h`, `250us` or a plain number of
/// seconds (`sticky bench` and `sticky chaos` took seconds before units).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    crate::values::duration_or_secs(text)
}

/// The shop of the running `sticky up` (`dir`'s, or the one `sticky
/// status` would show), saying which it is and whether others run.
fn running_shop(dir: Option<&std::path::Path>) -> anyhow::Result<String> {
    let found = crate::up::state::find(dir, "pass --url")?;
    let up = &found.state;
    if !up.running || !crate::up::state::pid_alive(up.pid) {
        bail!(
            "the sticky up in {} (pid {}) is not running; start one or pass --url",
            up.dir.display(),
            up.pid
        );
    }
    let url = up.shop.trim_end_matches('/').to_owned();
    if url.starts_with("https://") {
        bail!(
            "the sticky up in {} serves its shop over HTTPS ({url}); sticky bench speaks \
             plain HTTP: pass --url http://ADDR of a web server",
            up.dir.display()
        );
    }
    eprintln!(
        "bench: {url}, the shop of the sticky up in {} (pid {})",
        up.dir.display(),
        up.pid
    );
    if let Some(note) = found.note("pick another with `sticky bench --dir DIR` or `--url URL`") {
        for line in note.lines() {
            eprintln!("bench: {line}");
        }
    }
    Ok(url)
}

/// One kind of request every user sends.
#[derive(Debug)]
struct Op {
    method: Method,
    uri: Uri,
    body: Bytes,
    json: bool,
}

/// What all users share: the target, the request kinds, and the run's phase.
#[derive(Debug)]
struct Shared {
    addr: SocketAddr,
    host: HeaderValue,
    read: Op,
    write: Op,
    fill_uri: Uri,
    write_ratio: f64,
    /// `--fresh-sessions`: no cookies sent, none kept.
    fresh_sessions: bool,
    timeout: Duration,
    /// Each user's interval between requests under `--rate`.
    interval: Option<Duration>,
    /// Set after the warm-up: requests started from then on are measured.
    measuring: AtomicBool,
    /// Set when the users must stop starting requests.
    stop: AtomicBool,
    /// Measured requests left to start, under `--requests`.
    budget: Option<AtomicU64>,
    /// Measured requests finished (for the progress line).
    done: AtomicU64,
    /// Measured requests failed (for the progress line).
    failed: AtomicU64,
}

/// The target's address and `Host`, and the base path the paths go under.
fn parse_target(url: &str) -> anyhow::Result<(String, HeaderValue, String)> {
    let uri: Uri = url
        .parse()
        .with_context(|| format!("--url {url:?} is not a URL"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some(other) => bail!("--url {url:?}: only http is supported, not {other}"),
        None => bail!("--url {url:?} needs a scheme, e.g. http://127.0.0.1:8080"),
    }
    let Some(authority) = uri.authority() else {
        bail!("--url {url:?} has no host");
    };
    let host = HeaderValue::from_str(authority.as_str())
        .context("--url host is not a valid header value")?;
    let connect_to = format!(
        "{}:{}",
        authority.host(),
        authority.port_u16().unwrap_or(80)
    );
    let base = uri.path().trim_end_matches('/').to_owned();
    Ok((connect_to, host, base))
}

fn join(base: &str, path: &str) -> anyhow::Result<Uri> {
    if !path.starts_with('/') {
        bail!("path {path:?} must start with /");
    }
    format!("{base}{path}")
        .parse()
        .with_context(|| format!("{base}{path:?} is not a valid path"))
}

/// Opens a keep-alive HTTP/1.1 connection; its driver runs as its own task.
pub(crate) async fn connect(addr: SocketAddr) -> Result<SendRequest<Full<Bytes>>, ErrorKind> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|_| ErrorKind::Connect)?;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|_| ErrorKind::Connect)?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn classify(e: &hyper::Error) -> ErrorKind {
    if e.is_timeout() {
        ErrorKind::Timeout
    } else if e.is_incomplete_message() || e.is_closed() || e.is_canceled() {
        ErrorKind::Closed
    } else {
        ErrorKind::Http
    }
}

/// One virtual user: a session, a connection, and what it measured.
struct User {
    jar: CookieJar,
    conn: Option<SendRequest<Full<Bytes>>>,
    rng: u64,
    tally: Tally,
}

impl User {
    fn new(index: usize, seed: u64) -> Self {
        Self {
            jar: CookieJar::default(),
            conn: None,
            rng: seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            tally: Tally::default(),
        }
    }

    /// A uniform number in [0, 1) (splitmix64).
    fn random(&mut self) -> f64 {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Sends one request (connecting first if needed) and reads the whole
    /// answer. Returns the body length; a 4xx or 5xx answer is an error.
    /// `sink` receives the body, if given.
    async fn send(
        &mut self,
        shared: &Shared,
        op: &Op,
        sink: Option<&mut Vec<u8>>,
    ) -> Result<u64, ErrorKind> {
        if self.conn.as_ref().is_none_or(SendRequest::is_closed) {
            self.conn = None;
            match tokio::time::timeout(shared.timeout, connect(shared.addr)).await {
                Ok(Ok(c)) => self.conn = Some(c),
                Ok(Err(kind)) => {
                    tokio::time::sleep(CONNECT_BACKOFF).await;
                    return Err(kind);
                }
                Err(_) => return Err(ErrorKind::Connect),
            }
        }
        let result = tokio::time::timeout(shared.timeout, self.exchange(shared, op, sink)).await;
        let result = result.unwrap_or(Err(ErrorKind::Timeout));
        match result {
            Ok((status, len)) if !(status.is_client_error() || status.is_server_error()) => Ok(len),
            // The answer was read in full: the connection stays usable.
            Ok((status, _)) => Err(ErrorKind::Status(status.as_u16())),
            Err(kind) => {
                self.conn = None;
                Err(kind)
            }
        }
    }

    async fn exchange(
        &mut self,
        shared: &Shared,
        op: &Op,
        mut sink: Option<&mut Vec<u8>>,
    ) -> Result<(StatusCode, u64), ErrorKind> {
        let Some(sender) = self.conn.as_mut() else {
            return Err(ErrorKind::Closed);
        };
        sender.ready().await.map_err(|e| classify(&e))?;
        let mut req = Request::new(Full::new(op.body.clone()));
        op.method.clone_into(req.method_mut());
        op.uri.clone_into(req.uri_mut());
        let headers = req.headers_mut();
        headers.insert(HOST, shared.host.clone());
        if !shared.fresh_sessions {
            if let Some(cookie) = self.jar.header() {
                headers.insert(COOKIE, cookie.clone());
            }
        }
        if op.json {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let response = sender.send_request(req).await.map_err(|e| classify(&e))?;
        if !shared.fresh_sessions {
            for value in response.headers().get_all(SET_COOKIE) {
                self.jar.set(value.as_bytes());
            }
        }
        let status = response.status();
        let mut body = response.into_body();
        let mut len = 0u64;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| classify(&e))?;
            if let Some(data) = frame.data_ref() {
                len += data.len() as u64;
                if let Some(sink) = sink.as_deref_mut() {
                    sink.extend_from_slice(data);
                }
            }
        }
        Ok((status, len))
    }

    /// Grows the session by `items` filler items before the run.
    async fn fill(
        mut self,
        shared: Arc<Shared>,
        index: usize,
        items: usize,
    ) -> anyhow::Result<Self> {
        for k in 0..items {
            let mut item = format!("user{index}-item{k}-");
            while item.len() < FILL_ITEM_LEN {
                item.push('x');
            }
            let op = Op {
                method: Method::POST,
                uri: shared.fill_uri.clone(),
                body: Bytes::from(format!("{{\"item\":\"{item}\"}}")),
                json: true,
            };
            let mut answer = Vec::new();
            if let Err(kind) = self.send(&shared, &op, Some(&mut answer)).await {
                let answer = String::from_utf8_lossy(&answer[..answer.len().min(300)]).into_owned();
                bail!(
                    "filling the session of user {index}: POST {} (item {} of {items}) failed: {kind} {}",
                    op.uri,
                    k + 1,
                    answer.trim()
                );
            }
        }
        Ok(self)
    }

    /// Sends requests until told to stop; returns what was measured.
    async fn run(mut self, shared: Arc<Shared>, offset: Duration) -> Tally {
        let mut next = tokio::time::Instant::now() + offset;
        while !shared.stop.load(Ordering::Relaxed) {
            let due = match shared.interval {
                Some(interval) => {
                    // Behind schedule (the previous answer came late): the
                    // delay is the server's, so latency counts from when the
                    // request was due. Ahead: wait, and count from the
                    // wake-up, since the timer's lateness (up to 1 ms in
                    // tokio) is not the server's.
                    let due = if next > tokio::time::Instant::now() {
                        tokio::time::sleep_until(next).await;
                        Instant::now()
                    } else {
                        next.into_std()
                    };
                    next += interval;
                    if shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    due
                }
                None => Instant::now(),
            };
            let measured = shared.measuring.load(Ordering::Acquire);
            if measured {
                if let Some(budget) = &shared.budget {
                    if budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_err()
                    {
                        shared.stop.store(true, Ordering::Relaxed);
                        break;
                    }
                }
            }
            let write = self.random() < shared.write_ratio;
            let op = if write { &shared.write } else { &shared.read };
            let result = self.send(&shared, op, None).await;
            if !measured {
                continue;
            }
            let micros = u64::try_from(due.elapsed().as_micros()).unwrap_or(u64::MAX);
            match result {
                Ok(len) => {
                    let h = if write {
                        &mut self.tally.writes
                    } else {
                        &mut self.tally.reads
                    };
                    h.saturating_record(micros.max(1));
                    self.tally.body_bytes += len;
                }
                Err(kind) => {
                    self.tally.error(kind);
                    shared.failed.fetch_add(1, Ordering::Relaxed);
                }
            }
            shared.done.fetch_add(1, Ordering::Relaxed);
        }
        self.tally
    }
}

/// Sleeps for `d`, or less if the run is stopped meanwhile (Ctrl-C, or the
/// request budget is spent).
async fn sleep_unless_stopped(shared: &Shared, d: Duration) {
    let deadline = Instant::now() + d;
    while !shared.stop.load(Ordering::Relaxed) {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
}

/// Prints a progress line on stderr until `finished` is set: rewritten in
/// place on a terminal, one line every 5 s otherwise.
async fn progress(shared: Arc<Shared>, finished: Arc<AtomicBool>) {
    use std::io::IsTerminal;
    let tty = std::io::stderr().is_terminal();
    let every = if tty {
        Duration::from_millis(250)
    } else {
        Duration::from_secs(5)
    };
    let started = Instant::now();
    let mut measure_start: Option<Instant> = None;
    let (mut last_done, mut last_at) = (0u64, Instant::now());
    loop {
        tokio::time::sleep(every).await;
        if finished.load(Ordering::Relaxed) {
            break;
        }
        let now = Instant::now();
        let line = if shared.measuring.load(Ordering::Relaxed) {
            let m0 = *measure_start.get_or_insert(now);
            let done = shared.done.load(Ordering::Relaxed);
            let rate =
                (done - last_done) as f64 / now.duration_since(last_at).as_secs_f64().max(1e-3);
            (last_done, last_at) = (done, now);
            format!(
                "bench: {:6.1} s  {done} requests  {rate:.0} req/s  {} errors",
                now.duration_since(m0).as_secs_f64(),
                shared.failed.load(Ordering::Relaxed)
            )
        } else {
            last_at = now;
            format!(
                "bench: warming up {:.1} s",
                now.duration_since(started).as_secs_f64()
            )
        };
        if tty {
            eprint!("\r{line:<70}");
        } else {
            eprintln!("{line}");
        }
    }
    if tty {
        eprint!("\r{:<70}\r", "");
    }
}

/// Runs the load generator and prints its report.
pub(crate) fn run(args: BenchArgs) -> anyhow::Result<()> {
    if args.users == 0 {
        bail!("--users must be at least 1");
    }
    if !(0.0..=1.0).contains(&args.write_ratio) {
        bail!(
            "--write-ratio must be between 0 and 1, not {}",
            args.write_ratio
        );
    }
    if let Some(rate) = args.rate {
        if !(rate.is_finite() && rate > 0.0) {
            bail!("--rate must be a positive number of requests per second");
        }
    }
    if args.requests == Some(0) {
        bail!("--requests must be at least 1");
    }
    let duration = match (args.duration, args.requests) {
        (Some(d), _) => Some(d),
        (None, Some(_)) => None,
        (None, None) => Some(Duration::from_secs(30)),
    };
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZero::get))
        .max(1);
    let url = match &args.url {
        Some(url) => url.clone(),
        None => running_shop(args.dir.as_deref())?,
    };
    let (connect_to, host, base) = parse_target(&url)?;
    let write_body = Bytes::from(args.write_body.clone());
    let fill_items = args.session_bytes.div_ceil(FILL_ITEM_LEN);
    let settings = Settings {
        url: url.clone(),
        users: args.users,
        write_ratio: args.write_ratio,
        read_path: args.read_path.clone(),
        write_path: args.write_path.clone(),
        session_bytes: args.session_bytes,
        fill_requests_per_user: fill_items,
        fresh_sessions: args.fresh_sessions,
        rate: args.rate,
        threads,
        warmup_secs: args.warmup.as_secs_f64(),
        duration_secs: duration.map(|d| d.as_secs_f64()),
        requests: args.requests,
    };

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let report = rt.block_on(async {
        let addr = tokio::net::lookup_host(&connect_to)
            .await
            .with_context(|| format!("cannot resolve {connect_to}"))?
            .next()
            .with_context(|| format!("{connect_to} resolves to no address"))?;
        let shared = Arc::new(Shared {
            addr,
            host,
            read: Op {
                method: Method::GET,
                uri: join(&base, &args.read_path)?,
                body: Bytes::new(),
                json: false,
            },
            write: Op {
                method: Method::POST,
                uri: join(&base, &args.write_path)?,
                json: !write_body.is_empty(),
                body: write_body,
            },
            fill_uri: join(&base, &args.fill_path)?,
            write_ratio: args.write_ratio,
            fresh_sessions: args.fresh_sessions,
            timeout: args.timeout,
            interval: args.rate.map(|r| Duration::from_secs_f64(args.users as f64 / r)),
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            budget: args.requests.map(AtomicU64::new),
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        {
            let shared = Arc::clone(&shared);
            tokio::spawn(async move {
                if tokio::signal::ctrl_c().await.is_ok() {
                    shared.stop.store(true, Ordering::Relaxed);
                }
            });
        }

        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0x5eed, |d| d.as_nanos() as u64);
        if fill_items > 0 && !args.no_progress {
            eprintln!(
                "bench: filling {} sessions with {fill_items} items of {FILL_ITEM_LEN} characters each",
                args.users
            );
        }
        let fills: Vec<_> = (0..args.users)
            .map(|i| tokio::spawn(User::new(i, seed).fill(Arc::clone(&shared), i, fill_items)))
            .collect();
        let mut users = Vec::with_capacity(args.users);
        for f in fills {
            users.push(f.await.context("a virtual user panicked")??);
        }

        let finished = Arc::new(AtomicBool::new(false));
        let progress = (!args.no_progress).then(|| tokio::spawn(progress(Arc::clone(&shared), Arc::clone(&finished))));
        // Without a warm-up, every request is measured: set the phase before
        // any user runs, so none slips out unmeasured (and uncounted).
        if args.warmup.is_zero() {
            shared.measuring.store(true, Ordering::Release);
        }
        let n = users.len() as u32;
        let tasks: Vec<_> = users
            .into_iter()
            .enumerate()
            .map(|(i, u)| {
                // Spread the users' schedules over one interval.
                let offset = shared.interval.map_or(Duration::ZERO, |iv| iv * i as u32 / n);
                tokio::spawn(u.run(Arc::clone(&shared), offset))
            })
            .collect();
        sleep_unless_stopped(&shared, args.warmup).await;
        shared.measuring.store(true, Ordering::Release);
        let measure_start = Instant::now();
        if let Some(d) = duration {
            sleep_unless_stopped(&shared, d).await;
            shared.stop.store(true, Ordering::Relaxed);
        }
        let mut total = Tally::default();
        for t in tasks {
            total.merge(&t.await.context("a virtual user panicked")?);
        }
        let elapsed = measure_start.elapsed().as_secs_f64();
        finished.store(true, Ordering::Relaxed);
        if let Some(p) = progress {
            let _ = p.await;
        }
        anyhow::Ok(Report::new(settings, &total, elapsed))
    })?;
    // Open connections are dropped with the runtime.
    rt.shutdown_background();

    print!("{}", report.table());
    if let Some(path) = &args.json {
        let text = serde_json::to_string_pretty(&report).context("cannot encode the report")?;
        std::fs::write(path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if report.all.count == 0 {
        bail!("no request succeeded");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        assert!(parse_duration("-1s").is_err());
        assert!(parse_duration("10 parsecs").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn targets_and_paths() {
        let t = parse_target("http://127.0.0.1:8080").map_err(|e| e.to_string());
        let (addr, host, base) = match t {
            Ok(t) => t,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            (addr.as_str(), host.to_str().ok(), base.as_str()),
            ("127.0.0.1:8080", Some("127.0.0.1:8080"), "")
        );
        let t = parse_target("http://localhost/app/").map_err(|e| e.to_string());
        assert_eq!(
            t.map(|(a, _, b)| (a, b)),
            Ok(("localhost:80".to_owned(), "/app".to_owned()))
        );
        assert!(parse_target("https://example.com").is_err());
        assert!(parse_target("127.0.0.1:8080").is_err());
        assert_eq!(
            join("/app", "/api/counter")
                .map(|u| u.to_string())
                .ok()
                .as_deref(),
            Some("/app/api/counter")
        );
        assert!(join("", "api").is_err());
    }

    /// Parses `sticky bench` arguments as the binary does.
    fn parse_args(args: &[&str]) -> Result<BenchArgs, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        Cli::try_parse_from(std::iter::once("bench").chain(args.iter().copied())).map(|c| c.bench)
    }

    #[test]
    fn fresh_sessions_go_with_requests_and_rate_but_not_fill() {
        let args = parse_args(&["--fresh-sessions", "--requests", "1000", "--rate", "500"]);
        assert!(
            matches!(&args, Ok(a) if a.fresh_sessions && a.requests == Some(1000) && a.rate == Some(500.0)),
            "{args:?}"
        );
        assert!(matches!(parse_args(&[]), Ok(a) if !a.fresh_sessions));
        assert!(parse_args(&["--fresh-sessions", "--session-bytes", "1024"]).is_err());
    }

    /// A user with `fresh_sessions` never sends the cookie the server sets;
    /// one without sends it back from its second request on.
    #[test]
    #[allow(clippy::expect_used)]
    fn fresh_sessions_send_no_cookies() {
        use std::sync::Mutex;

        type Seen = Arc<Mutex<Vec<Option<String>>>>;
        async fn record(
            axum::extract::State(seen): axum::extract::State<Seen>,
            headers: http::HeaderMap,
        ) -> impl axum::response::IntoResponse {
            let cookie = headers
                .get(COOKIE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(cookie);
            ([(SET_COOKIE, "sid=abc; Path=/")], "ok")
        }

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let seen: Seen = Arc::default();
        rt.block_on(async {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("a port");
            let addr = listener.local_addr().expect("its address");
            let app = axum::Router::new()
                .route("/w", axum::routing::post(record))
                .with_state(Arc::clone(&seen));
            tokio::spawn(async move { axum::serve(listener, app).await });
            for fresh_sessions in [false, true] {
                let shared = Shared {
                    addr,
                    host: HeaderValue::from_static("test"),
                    read: Op {
                        method: Method::GET,
                        uri: Uri::from_static("/w"),
                        body: Bytes::new(),
                        json: false,
                    },
                    write: Op {
                        method: Method::POST,
                        uri: Uri::from_static("/w"),
                        body: Bytes::new(),
                        json: false,
                    },
                    fill_uri: Uri::from_static("/w"),
                    write_ratio: 1.0,
                    fresh_sessions,
                    timeout: Duration::from_secs(5),
                    interval: None,
                    measuring: AtomicBool::new(true),
                    stop: AtomicBool::new(false),
                    budget: None,
                    done: AtomicU64::new(0),
                    failed: AtomicU64::new(0),
                };
                let mut user = User::new(0, 1);
                for _ in 0..3 {
                    let sent = user.send(&shared, &shared.write, None).await;
                    assert_eq!(sent, Ok(2));
                }
            }
        });
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let abc = Some("sid=abc".to_owned());
        assert_eq!(
            seen,
            [None, abc.clone(), abc, None, None, None],
            "cookies sent: keeping, then fresh"
        );
    }

    #[test]
    fn write_mix_follows_the_ratio() {
        let mut u = User::new(3, 42);
        let writes = (0..100_000).filter(|_| u.random() < 0.1).count();
        assert!((9_000..11_000).contains(&writes), "{writes}");
    }
}
