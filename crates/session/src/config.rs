//! Settings of the session library, with their defaults.

use std::time::Duration;

pub use sticky_config::Mode;

/// One session store the library writes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Stable name; placement hashes it, so every web server must use the
    /// same names for the same stores.
    pub name: String,
    /// A `sticky store`: `host:port` or `sticky://[user:password@]host:port`;
    /// Redis: `redis://[user:password@]host:port` (see `docs/redis.md`).
    pub addr: String,
}

/// Everything the library can be told. Build with [`Config::new`], which
/// states every default.
#[derive(Clone)]
pub struct Config {
    /// This web server's name (`ws1`), reported by health and recorded as
    /// the owner of stored copies.
    pub server_name: String,
    /// Cluster secret: signs cookies, derives the admin token.
    pub secret: Vec<u8>,
    /// The stores. Placement is over their names.
    pub stores: Vec<StoreSpec>,
    /// Copies per session: 1 (disjoint) or 2 (overlapping). Default 2.
    pub replicas: usize,
    /// Default [`Mode::Sync`].
    pub mode: Mode,
    /// Cookie name. Default `sticky.sid`.
    pub cookie_name: String,
    /// Cookie path. Default `/`.
    pub cookie_path: String,
    /// Cookie domain. Default none.
    pub cookie_domain: Option<String>,
    /// `Secure` cookie attribute. Default false.
    pub cookie_secure: bool,
    /// A session unused this long expires. Default 30 min.
    pub idle_timeout: Duration,
    /// A session this old expires. Default 24 h.
    pub absolute_timeout: Duration,
    /// Largest serialized session. Default 64 KiB.
    pub max_size: usize,
    /// Fence after this long without a health check. Default 3 s.
    pub lease: Duration,
    /// Per-request timeout towards a store. Default 1 s.
    pub store_timeout: Duration,
    /// Store password. Default none.
    pub store_password: Option<String>,
    /// Async mode: most queued changes. Default 10,000.
    pub async_queue: usize,
    /// Async mode: past this lag, writers wait for their own copy. Default 1 s.
    pub async_max_lag: Duration,
    /// Store failover re-copies at most this many sessions per second.
    /// Default 20,000.
    pub recopy_rate: u32,
    /// A standby server (reported by health). Default false.
    pub standby: bool,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server_name", &self.server_name)
            .field("secret", &"<redacted>")
            .field("stores", &self.stores)
            .field("replicas", &self.replicas)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// Settings with every default, for server `server_name` writing to
    /// `stores` with cluster secret `secret`.
    pub fn new(
        server_name: impl Into<String>,
        secret: impl Into<Vec<u8>>,
        stores: Vec<StoreSpec>,
    ) -> Self {
        Self {
            server_name: server_name.into(),
            secret: secret.into(),
            stores,
            replicas: 2,
            mode: Mode::Sync,
            cookie_name: "sticky.sid".into(),
            cookie_path: "/".into(),
            cookie_domain: None,
            cookie_secure: false,
            idle_timeout: Duration::from_secs(1800),
            absolute_timeout: Duration::from_secs(86_400),
            max_size: 64 << 10,
            lease: Duration::from_secs(3),
            store_timeout: Duration::from_secs(1),
            store_password: None,
            async_queue: 10_000,
            async_max_lag: Duration::from_secs(1),
            recopy_rate: 20_000,
            standby: false,
        }
    }
}
