//! Settings of one store.

use std::net::SocketAddr;
use std::time::Duration;

use sticky_proto::resp::Limits;

/// The Redis version we report to clients (`INFO`, `HELLO`): the command
/// set we implement behaves as Redis 7.0's does.
pub const REDIS_VERSION: &str = "7.0.0";

/// Everything `sticky store` can be told. `Default` gives the documented
/// defaults: loopback port 7379, no password, no memory limit.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Address to listen on. Default `127.0.0.1:7379`.
    pub listen: SocketAddr,
    /// Password that `AUTH` must present. Default: none.
    pub requirepass: Option<String>,
    /// Refuse writes once this many bytes are accounted; 0 = no limit.
    pub max_memory: usize,
    /// Most connections open at once. Default 10,000.
    pub max_clients: usize,
    /// Close a connection idle this long; `None` = never. Default 300 s.
    pub idle_timeout: Option<Duration>,
    /// How long a connection may stay unauthenticated when `requirepass`
    /// is set; it is closed then. Default 10 s.
    pub auth_timeout: Duration,
    /// Most bytes of unparsed input an unauthenticated connection may
    /// buffer. Default 64 KiB: enough for any `AUTH` or `HELLO`.
    pub max_pre_auth_buffer: usize,
    /// Per-request limits. Default: 16 MiB bulk, 4096 arguments, 64 KiB inline.
    pub limits: Limits,
    /// Most bytes of unparsed input one connection may buffer (a pipeline
    /// or one large request). Default 64 MiB; raised to at least twice
    /// `limits.max_bulk` by the server.
    pub max_query_buffer: usize,
    /// How long a `SESS.DEL` tombstone lives unless the command says. Default 60 s.
    pub tombstone_ttl: Duration,
    /// Number of shards of the keyspace; 0 = 16 per core.
    pub shards: usize,
    /// How long shutdown waits for open connections. Default 5 s.
    pub shutdown_grace: Duration,
    /// Busy polling: after serving a batch, keep the event loop polling the
    /// sockets (epoll with a zero timeout) for up to this long before it
    /// sleeps. A client that sends its next request within that time then
    /// does not have to wake a sleeping thread, which on a virtual machine
    /// costs the client more than the request itself. It costs this much
    /// CPU after every burst of requests, so it pays only on a store with
    /// a core to itself; spinning stops early when the thread is
    /// preempted. Only on a single-threaded runtime (`--threads 1`).
    /// Default `None`: never spin.
    pub busy_poll: Option<Duration>,
    /// Napping under load: before the event loop goes to sleep in `epoll`
    /// after a round that served several connections, it first sleeps
    /// this long off the sockets' wait queues ([`Store::park_hook`]).
    /// Requests sent meanwhile are then read together after the nap,
    /// instead of each one's sender paying to wake the store's thread,
    /// which on a virtual machine costs the *client* an interrupt to
    /// another CPU (`docs/benchmarks.md`, session 9). No CPU is spent
    /// (this is not busy polling); a lone client never waits for a nap.
    /// Only on a single-threaded runtime, and not with `busy_poll`.
    /// Default `None` (never nap): a nap can delay a reply by up to ~75 µs
    /// under load (the nap and the kernel's timer slack), which a web
    /// server's synchronous write waits for; `sticky store --nap-us 25`
    /// turns it on.
    ///
    /// [`Store::park_hook`]: crate::Store::park_hook
    pub nap: Option<Duration>,
    /// Napping under pipelined load only: the nap of [`StoreConfig::nap`],
    /// taken only after a round whose batches carried at least
    /// [`PIPELINED_DEPTH`](crate::PIPELINED_DEPTH) requests each on
    /// average (pipelining clients such as `redis-benchmark -P 16`, whose
    /// requests already wait for the rest of their batch). A round of
    /// unpipelined requests — a web server's synchronous writes, one
    /// request per batch — never naps, so their latency is unchanged; a
    /// request that arrives during a nap that a pipelining client's round
    /// started waits up to the nap plus the kernel's timer slack (~75 µs).
    /// Ignored when [`StoreConfig::nap`] is set (which naps after every
    /// loaded round). Only on a single-threaded runtime, and not with
    /// `busy_poll`. Default 25 µs; `sticky store --pipelined-nap-us 0`
    /// turns it off.
    pub pipelined_nap: Option<Duration>,
    /// How long takeover promises and dead-lease records are kept, and how
    /// long a restarted store grants no lease and accepts no kill or
    /// prepare: twice the web servers' claim timeout (`docs/safety.md`
    /// §3). Default 4 s.
    pub claim_window: Duration,
    /// Whether this start is a restart, after which the store may have
    /// forgotten copies, promises and dead-lease records. `sticky store`
    /// knows it from the run file in `--state-dir`; without one every start
    /// counts as a restart. Default `true` (the safe answer).
    pub restarted: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7379)),
            requirepass: None,
            max_memory: 0,
            max_clients: 10_000,
            idle_timeout: Some(Duration::from_secs(300)),
            auth_timeout: Duration::from_secs(10),
            max_pre_auth_buffer: 64 * 1024,
            limits: Limits::default(),
            max_query_buffer: 64 << 20,
            tombstone_ttl: Duration::from_secs(60),
            shards: 0,
            shutdown_grace: Duration::from_secs(5),
            busy_poll: None,
            nap: None,
            pipelined_nap: Some(Duration::from_micros(25)),
            claim_window: Duration::from_secs(4),
            restarted: true,
        }
    }
}
