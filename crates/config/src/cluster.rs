//! The cluster file's schema.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::problem::Problem;
use crate::{ByteSize, Mode};

/// A cluster file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read cluster file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid cluster file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (from the TOML parser).
        message: String,
    },
    /// The file parses but is inconsistent.
    #[error("invalid cluster file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One cluster, as described in `docs/configuration.md`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster secret: signs session and route cookies and derives the
    /// admin token. At least 32 characters.
    pub secret: Option<String>,
    /// File whose first line is the cluster secret, instead of `secret`.
    pub secret_file: Option<PathBuf>,
    /// Store replicas per session: 1 (disjoint subsets) or 2 (overlapping).
    #[serde(default = "default_replicas")]
    pub replicas: usize,
    /// `sync` (default): a response carrying a change leaves only after every
    /// replica acknowledged it. `async`: replication in the background.
    #[serde(default)]
    pub mode: Mode,
    /// Session settings shared by every web server (`[session]`).
    #[serde(default)]
    pub session: SessionSection,
    /// The director (`[director]`).
    pub director: Option<DirectorSection>,
    /// The web servers, standbys included (`[[web]]` tables).
    #[serde(default)]
    pub web: Vec<WebEntry>,
    /// The session stores (`[[store]]` tables).
    #[serde(default)]
    pub store: Vec<StoreEntry>,
}

fn default_replicas() -> usize {
    2
}

/// `[session]`: settings every web server shares.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSection {
    /// Session cookie name. Default `sticky.sid`.
    pub cookie_name: String,
    /// Cookie path. Default `/`.
    pub cookie_path: String,
    /// Cookie domain. Default: none (host-only).
    pub cookie_domain: Option<String>,
    /// Mark the cookie `Secure`. Default false (set it when served over TLS).
    pub cookie_secure: bool,
    /// Seconds without a request after which a session expires. Default 1800.
    #[serde(deserialize_with = "crate::duration::field::secs")]
    pub idle_timeout_secs: u64,
    /// Seconds after creation after which a session expires. Default 86400.
    #[serde(deserialize_with = "crate::duration::field::secs")]
    pub absolute_timeout_secs: u64,
    /// Largest serialized session. Default 64KiB.
    pub max_size: ByteSize,
    /// A web server's lease at the stores: it serves from its cache only
    /// while a quorum of stores holds it, and the sessions of a server cut
    /// off or paused can be claimed by others this long after its last
    /// renewal (`docs/safety.md` §2). A renewal lets it serve for the
    /// lease, but never longer than twice `claim_timeout_ms`; renewals come
    /// every third of that. Default 3000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub lease_ms: u64,
    /// A takeover that has not finished in this time answers 503; stores
    /// keep dead leases and promises twice as long (a `sticky store`
    /// started with this file takes that as its claim window; its
    /// `--claim-window` must be at least that). Default 2000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub claim_timeout_ms: u64,
    /// Per-request timeout towards a store. Default 1000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub store_timeout_ms: u64,
    /// A store that has not answered a write or a takeover's prepare this
    /// long after it was sent, while the others did, is passed over: the
    /// write goes to the next store, and placement skips it until it
    /// answers again (`docs/safety.md` §1). 0: wait for every replica up to
    /// `store_timeout_ms`. Default 50.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub slow_store_ms: u64,
    /// On shutdown (SIGTERM, SIGINT), how long a web server's open
    /// connections may take to finish their requests once it stopped
    /// serving sessions; then it closes them and exits. Default 10000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub drain_timeout_ms: u64,
    /// A web server that no director's health check has reached for as
    /// long as the directors take to mark it down (`[director]` `fall` ×
    /// `health_interval_ms` + `health_timeout_ms`), while another server
    /// probes it to claim one of its sessions, lets its sessions go so that
    /// their users are served elsewhere instead of waiting for the cut to
    /// heal (`docs/safety.md` §2). Sync mode only. Default true.
    pub release_when_unreached: bool,
    /// Async mode: most changes waiting to be copied. Default 10000.
    pub async_queue: usize,
    /// Async mode: largest tolerated replication lag before writes wait. Default 1000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub async_max_lag_ms: u64,
    /// Most sessions a web server re-copies per second after the set of
    /// live stores changed. Default 100000.
    pub recopy_rate: u32,
    /// Store password, if the stores require one.
    pub store_password: Option<String>,
    /// PEM file of the CA certificates that TLS stores' certificates
    /// (`rediss://`, `sticky+tls://` URLs) are verified against, instead of
    /// the system's trust store. Default: none.
    pub store_tls_ca: Option<PathBuf>,
    /// Most sessions one web server hosts; a new session beyond it is
    /// refused with 503. Default 1000000.
    pub max_sessions: usize,
    /// Most serialized session bytes one web server hosts; a new session
    /// beyond it is refused with 503. Default 1GiB.
    pub max_bytes: ByteSize,
    /// New sessions per second one client address may create (0: no
    /// limit); beyond it, 429 with `Retry-After`. Default 20.
    pub new_sessions_per_ip: u32,
    /// New sessions one client address may create at once. Default 100.
    pub new_sessions_burst: u32,
    /// Seconds a new session lives until its second request. Default 300.
    #[serde(deserialize_with = "crate::duration::field::secs")]
    pub new_session_ttl_secs: u64,
    /// Addresses or networks (`10.0.0.0/8`) whose `X-Forwarded-For` names
    /// the client. Default loopback, where `sticky up` runs the director.
    pub trusted_proxies: Vec<String>,
}

impl Default for SessionSection {
    fn default() -> Self {
        Self {
            cookie_name: "sticky.sid".into(),
            cookie_path: "/".into(),
            cookie_domain: None,
            cookie_secure: false,
            idle_timeout_secs: 1800,
            absolute_timeout_secs: 86_400,
            max_size: ByteSize(64 << 10),
            lease_ms: 3000,
            claim_timeout_ms: 2000,
            store_timeout_ms: 1000,
            slow_store_ms: 50,
            drain_timeout_ms: 10_000,
            release_when_unreached: true,
            async_queue: 10_000,
            async_max_lag_ms: 1000,
            recopy_rate: 100_000,
            store_password: None,
            store_tls_ca: None,
            max_sessions: 1_000_000,
            max_bytes: ByteSize(1 << 30),
            new_sessions_per_ip: 20,
            new_sessions_burst: 100,
            new_session_ttl_secs: 300,
            trusted_proxies: vec!["127.0.0.0/8".into(), "::1".into()],
        }
    }
}

/// `[director]`. Every field has a default, so `[director]` may be empty.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorSection {
    /// Public listener. Default `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Admin listener (API, dashboard, metrics). Default `127.0.0.1:8081`.
    pub admin: SocketAddr,
    /// Route cookie name. Default `sticky.route`.
    pub route_cookie: String,
    /// Health-check interval in ms. Default 500.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub health_interval_ms: u64,
    /// Health-check timeout in ms. Default 500.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub health_timeout_ms: u64,
    /// A health check still unanswered after this many ms marks the server
    /// unreachable (passed over for moved and new clients) until a check
    /// passes; it fails only at `health_timeout_ms`. 0: off. Default 100.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub health_slow_ms: u64,
    /// Failed checks in a row that mark a server down. Default 2.
    pub fall: u32,
    /// Successful checks in a row that mark a server up. Default 2.
    pub rise: u32,
    /// Time allowed to open a connection to a web server, in ms. Default 1000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub connect_timeout_ms: u64,
    /// Time allowed to open a connection to a web server the director chose
    /// while another could take the request (a moved or new client), in
    /// ms; after it the request goes to the other server. 0: the whole
    /// `connect_timeout_ms`. Default 50.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub reroute_connect_timeout_ms: u64,
    /// Time allowed for a client to send a complete request head, counted
    /// from the connection's start or the end of the previous response (so
    /// it also bounds keep-alive idle time), in ms. Default 10000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub header_timeout_ms: u64,
    /// Time allowed for a web server to answer with a response head, in ms.
    /// Default 60000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub response_timeout_ms: u64,
    /// When the health checks mark a web server down, end the requests
    /// still waiting for its answer at once with `504` instead of letting
    /// them wait up to `response_timeout_ms`: a request lost in a cut link
    /// is otherwise answered only when TCP resends it after the heal, or
    /// never. Their outcome is unknown to the client either way (the server
    /// may have processed them), as after a response timeout. A server
    /// that says it is stopping is not affected (it drains). Default true.
    pub end_requests_on_down: bool,
    /// With peer directors (`[[director.peers]]`): a request for a session
    /// whose owner holds a live lease but cannot be reached from this
    /// director (a link cut between them only) goes to a peer director,
    /// which may reach it, instead of ending in `503`. Once per request,
    /// never from a relayed one. Off while the public listener speaks TLS
    /// (the peers' listeners then do too). Default true.
    pub relay_to_peers: bool,
    /// A client connection (or WebSocket tunnel) with no bytes in either
    /// direction for this long is closed, in ms. Default 120000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub idle_timeout_ms: u64,
    /// On shutdown, how long in-flight requests may take to finish, in ms.
    /// Default 10000.
    #[serde(deserialize_with = "crate::duration::field::millis")]
    pub drain_timeout_ms: u64,
    /// Largest request head (request line and headers). At least 8KiB.
    /// Default 32KiB.
    pub max_header_size: ByteSize,
    /// Most client connections at once. Default 10000.
    pub max_connections: usize,
    /// Most idle keep-alive connections kept per web server. Default 256.
    pub max_idle_per_server: usize,
    /// Forward plain HTTP/1.1 requests on the director's own fast path
    /// instead of hyper (the rest always goes through hyper). Default true.
    /// Over TLS every request goes through hyper.
    pub fast_path: bool,
    /// When a worker's event loop runs out of work, it first yields its
    /// CPU to whatever else is waiting to run there (a web server on the
    /// same machine, say) for up to this long, in µs, and sleeps only once
    /// nothing else wants the CPU; it stays runnable instead of sleeping
    /// and then preempting them (`docs/director.md`, "Before an event
    /// loop sleeps"). An idle machine costs nothing: a yield with nobody
    /// else to run ends the wait. 0 turns it off; at most 10000. Default
    /// 200.
    #[serde(deserialize_with = "crate::duration::field::micros")]
    pub yield_before_sleep_us: u64,
    /// PEM file with the certificate chain of the public listener (the
    /// server's certificate first, then its intermediates): the public
    /// listener then speaks TLS only, HTTP/2 or HTTP/1.1 by ALPN. Re-read
    /// on SIGHUP and `POST /api/reload`. Needs `tls_key`. Default: none,
    /// plain HTTP.
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the private key of `tls_cert` (PKCS#8, PKCS#1 or
    /// SEC1). Default: none.
    pub tls_key: Option<PathBuf>,
    /// A plain HTTP listener that answers every request with a redirect to
    /// the same host and path over HTTPS (`301`, or `308` for methods other
    /// than GET and HEAD). Needs `tls_cert`. Default: none.
    pub redirect_listen: Option<SocketAddr>,
    /// A plain HTTP listener for requests relayed by the peer directors
    /// (`relay_to_peers`) while the public listener speaks TLS: serves them
    /// as the public listener would, without TLS. Bind it to an address
    /// only the other directors reach. Default: none (with TLS on, nothing
    /// is relayed to this director).
    pub relay_listen: Option<SocketAddr>,
    /// `Strict-Transport-Security: max-age=` this many seconds on every
    /// HTTPS response; 0 sends no such header. Needs `tls_cert`. Default 0.
    #[serde(deserialize_with = "crate::duration::field::secs")]
    pub hsts_max_age_secs: u64,
    /// Add `includeSubDomains` to that header. Default false.
    pub hsts_include_subdomains: bool,
    /// The control API of the `sticky up` supervisor that started this
    /// cluster (loopback): the dashboard then offers to kill, pause,
    /// resume and restart each process. Default: none. `sticky up` sets it.
    pub supervisor: Option<SocketAddr>,
    /// `Host` values the admin listener accepts besides its own address
    /// forms (`localhost:PORT`, `127.0.0.1:PORT`, `[::1]:PORT` and the
    /// address it is bound to), e.g. `"director.internal:8081"`; compared
    /// whole, ignoring letter case. Default: none.
    pub admin_hosts: Vec<String>,
    /// Token that state-changing admin requests must carry
    /// (`Authorization: Bearer TOKEN`); the dashboard then asks for it.
    /// Default: none, the admin token derived from the cluster secret,
    /// which the dashboard embeds.
    pub admin_token: Option<String>,
    /// Peers (addresses or CIDR blocks, `"10.0.0.0/8"`, `"::1"`) whose
    /// `X-Forwarded-For`, `-Proto` and `-Host` are kept (the client's
    /// address appended to `X-Forwarded-For`): a TLS terminator or load
    /// balancer in front of the director. Default: none, every client's
    /// are replaced.
    pub trusted_proxies: Vec<String>,
    /// More directors of the same cluster (`[[director.peers]]`), each its
    /// own process (`sticky director --name NAME`) with its own listeners
    /// and every other setting of this section. Admin state changes
    /// (drain, evacuate, enable) asked on any director are passed to the
    /// others. Default: none, one director, named `director`.
    pub peers: Vec<DirectorPeer>,
}

/// One `[[director.peers]]` table: another director of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectorPeer {
    /// Its name (`director2`): what `sticky director --name` and `sticky
    /// up`'s process list call it. Not `director` (the `[director]`
    /// itself) nor the name of a web server or store.
    pub name: String,
    /// Its public listener.
    pub listen: SocketAddr,
    /// Its admin listener.
    pub admin: SocketAddr,
    /// Its HTTP-to-HTTPS redirect listener (as `[director]
    /// redirect_listen`). Default: none.
    #[serde(default)]
    pub redirect_listen: Option<SocketAddr>,
    /// Its listener for relayed requests (as `[director] relay_listen`).
    /// Default: none.
    #[serde(default)]
    pub relay_listen: Option<SocketAddr>,
}

/// The name of the director the `[director]` section's own `listen` and
/// `admin` describe.
pub const FIRST_DIRECTOR: &str = "director";

/// The longest `[director] yield_before_sleep_us`: a worker that runs out
/// of work hands its CPU to others for at most this long before sleeping.
pub(crate) const MAX_YIELD_BEFORE_SLEEP_US: u64 = 10_000;

impl Default for DirectorSection {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin: SocketAddr::from(([127, 0, 0, 1], 8081)),
            route_cookie: "sticky.route".into(),
            health_interval_ms: 500,
            health_timeout_ms: 500,
            health_slow_ms: 100,
            fall: 2,
            rise: 2,
            connect_timeout_ms: 1000,
            reroute_connect_timeout_ms: 50,
            header_timeout_ms: 10_000,
            response_timeout_ms: 60_000,
            end_requests_on_down: true,
            relay_to_peers: true,
            idle_timeout_ms: 120_000,
            drain_timeout_ms: 10_000,
            max_header_size: ByteSize(32 << 10),
            max_connections: 10_000,
            max_idle_per_server: 256,
            fast_path: true,
            yield_before_sleep_us: 200,
            tls_cert: None,
            tls_key: None,
            redirect_listen: None,
            relay_listen: None,
            hsts_max_age_secs: 0,
            hsts_include_subdomains: false,
            supervisor: None,
            admin_hosts: Vec::new(),
            admin_token: None,
            trusted_proxies: Vec::new(),
            peers: Vec::new(),
        }
    }
}

impl DirectorSection {
    /// Every director of the cluster: the section's own (named
    /// [`FIRST_DIRECTOR`]) first, then its peers.
    pub fn instances(&self) -> Vec<DirectorPeer> {
        let mut all = vec![DirectorPeer {
            name: FIRST_DIRECTOR.into(),
            listen: self.listen,
            admin: self.admin,
            redirect_listen: self.redirect_listen,
            relay_listen: self.relay_listen,
        }];
        all.extend(self.peers.iter().cloned());
        all
    }

    /// The director called `name`, if the cluster has one.
    pub fn instance(&self, name: &str) -> Option<DirectorPeer> {
        self.instances().into_iter().find(|d| d.name == name)
    }

    /// Checks the values that have a lower bound or a syntax: the first
    /// problem's message.
    fn check(&self) -> Result<(), String> {
        match self.problems().into_iter().next() {
            Some(p) => Err(p.message),
            None => Ok(()),
        }
    }

    /// Every value without its lower bound or syntax, each with its field
    /// and what to do.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |field: &str, message: String, fix: &str| {
            out.push(Problem::new(field, message, fix));
        };
        let cookie_ok = !self.route_cookie.is_empty()
            && self
                .route_cookie
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !cookie_ok {
            bad(
                "[director] route_cookie",
                format!(
                    "[director] route_cookie {:?} is not a valid cookie name",
                    self.route_cookie
                ),
                "use letters, digits and - _ . only, e.g. \"sticky.route\"",
            );
        }
        for (name, value) in [
            ("health_interval_ms", self.health_interval_ms),
            ("health_timeout_ms", self.health_timeout_ms),
            ("connect_timeout_ms", self.connect_timeout_ms),
            ("header_timeout_ms", self.header_timeout_ms),
            ("response_timeout_ms", self.response_timeout_ms),
            ("idle_timeout_ms", self.idle_timeout_ms),
        ] {
            if value == 0 {
                bad(
                    &format!("[director] {name}"),
                    format!("[director] {name} must be above 0"),
                    "give a number of milliseconds above 0, or remove it for the default",
                );
            }
        }
        if self.fall == 0 || self.rise == 0 {
            bad(
                "[director] fall, rise",
                "[director] fall and rise must be at least 1".into(),
                "set them to 1 or more (default 2)",
            );
        }
        if self.yield_before_sleep_us > MAX_YIELD_BEFORE_SLEEP_US {
            bad(
                "[director] yield_before_sleep_us",
                format!(
                    "[director] yield_before_sleep_us is {}us, above the most allowed ({MAX_YIELD_BEFORE_SLEEP_US}us)",
                    self.yield_before_sleep_us
                ),
                "give at most 10000 (10ms); 0 turns it off, the default is 200",
            );
        }
        if self.max_connections == 0 {
            bad(
                "[director] max_connections",
                "[director] max_connections must be at least 1".into(),
                "set it to 1 or more (default 10000)",
            );
        }
        if self.max_header_size.0 < 8192 {
            bad(
                "[director] max_header_size",
                format!(
                    "[director] max_header_size must be at least 8KiB, not {}",
                    self.max_header_size
                ),
                "set it to \"8KiB\" or more (default \"32KiB\")",
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            bad(
                "[director] tls_cert, tls_key",
                "[director] tls_cert and tls_key go together: give both (TLS) or neither".into(),
                "add the missing one, or remove both for plain HTTP",
            );
        }
        let tls = self.tls_cert.is_some();
        let redirect = self.instances().iter().any(|d| d.redirect_listen.is_some());
        if !tls && redirect {
            bad(
                "[director] redirect_listen",
                "[director] redirect_listen redirects to HTTPS: it needs tls_cert and tls_key"
                    .into(),
                "add tls_cert and tls_key, or remove redirect_listen",
            );
        }
        if !tls && (self.hsts_max_age_secs > 0 || self.hsts_include_subdomains) {
            bad(
                "[director] hsts_max_age_secs",
                "[director] hsts_* settings apply to HTTPS: they need tls_cert and tls_key".into(),
                "add tls_cert and tls_key, or remove the hsts_* settings",
            );
        }
        let all = self.instances();
        for (i, d) in all.iter().enumerate() {
            let valid = !d.name.is_empty()
                && d.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid {
                bad(
                    "[[director.peers]] name",
                    format!(
                        "[[director.peers]] name {:?} must be letters, digits, - or _",
                        d.name
                    ),
                    "rename it, e.g. \"director2\"",
                );
            }
            // Port 0 (any free port) never clashes.
            let own = [
                Some(d.listen),
                Some(d.admin),
                d.redirect_listen,
                d.relay_listen,
            ];
            let own: Vec<SocketAddr> = own
                .into_iter()
                .flatten()
                .filter(|a| a.port() != 0)
                .collect();
            if own.iter().enumerate().any(|(j, a)| own[..j].contains(a)) {
                bad(
                    "[director] listen, admin, redirect_listen, relay_listen",
                    format!(
                        "director {:?} uses one address for two of listen, admin, redirect_listen and relay_listen",
                        d.name
                    ),
                    "give each listener its own port",
                );
            }
            for other in &all[..i] {
                if other.name == d.name {
                    bad(
                        "[[director.peers]] name",
                        format!("director name {:?} is used twice", d.name),
                        "give every director its own name (the [director] section is \"director\")",
                    );
                }
                let theirs = [
                    Some(other.listen),
                    Some(other.admin),
                    other.redirect_listen,
                    other.relay_listen,
                ];
                if theirs
                    .iter()
                    .flatten()
                    .any(|a| a.port() != 0 && own.contains(a))
                {
                    bad(
                        "[[director.peers]] listen, admin",
                        format!(
                            "directors {:?} and {:?} share an address",
                            other.name, d.name
                        ),
                        "give every director its own listen, admin, redirect_listen and relay_listen addresses",
                    );
                }
            }
        }
        out
    }
}

/// One `[[web]]` table: a web server or a standby.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebEntry {
    /// Unique name, e.g. `ws1`; what the demo app reports as `server`.
    pub name: String,
    /// Address the web server listens on.
    pub listen: SocketAddr,
    /// A standby takes over the sessions of failed servers and gets no new
    /// clients. Default false.
    #[serde(default)]
    pub standby: bool,
    /// Relative share of new clients. Default 1.
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Address of a listener of its own serving Prometheus metrics on
    /// `/metrics` without credentials (the web port's `/.sticky/metrics`
    /// needs the admin token). Default: none.
    pub metrics: Option<SocketAddr>,
}

fn default_weight() -> u32 {
    1
}

/// One `[[store]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreEntry {
    /// Unique name, e.g. `s1`.
    pub name: String,
    /// Address the store listens on and web servers connect to (unless
    /// `url` is given). The director and `sticky status` look at the store
    /// here (`PING`, `INFO`).
    pub listen: SocketAddr,
    /// What web servers connect to instead of `listen`: a store URL as the
    /// session library takes it, e.g. `redis://[user:password@]host:port`
    /// for a Redis server (the session commands then run as Lua scripts,
    /// see `docs/redis.md`) or `sticky://...` for a `sticky store`.
    pub url: Option<String>,
    /// Password clients must present with `AUTH`.
    pub requirepass: Option<String>,
    /// File holding that password (first line), instead of `requirepass`.
    pub requirepass_file: Option<PathBuf>,
    /// Refuse writes past this much accounted memory.
    pub max_memory: Option<ByteSize>,
    /// Address of the Prometheus metrics endpoint.
    pub metrics: Option<SocketAddr>,
    /// PEM certificate chain: the store serves TLS only (`sticky store
    /// --tls-cert`); its `url` must then be `sticky+tls://host:port`.
    /// Needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
}

impl ClusterFile {
    /// Reads and checks the cluster file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a cluster file's text; `path` is only for messages.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: ClusterFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: crate::problem::toml_error(&e, text),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if !(1..=2).contains(&file.replicas) {
            return Err(invalid(format!(
                "replicas must be 1 or 2, not {}",
                file.replicas
            )));
        }
        if file.secret.is_some() && file.secret_file.is_some() {
            return Err(invalid("give secret or secret_file, not both".into()));
        }
        if let Some(d) = &file.director {
            d.check().map_err(invalid)?;
        }
        let mut names = std::collections::HashSet::new();
        if let Some(d) = &file.director {
            for p in &d.peers {
                names.insert(p.name.as_str());
            }
        }
        for w in &file.web {
            if w.name.is_empty() || !names.insert(w.name.as_str()) {
                return Err(invalid(format!(
                    "web name {:?} is empty or used twice",
                    w.name
                )));
            }
        }
        for s in &file.store {
            if s.name.is_empty() || !names.insert(s.name.as_str()) {
                return Err(invalid(format!(
                    "store name {:?} is empty or used twice",
                    s.name
                )));
            }
            if let Some(url) = &s.url {
                // Never quote the URL: it may carry a password.
                if !url.contains("://") {
                    return Err(invalid(format!(
                        "store {}: url must be a URL: sticky://host:port (a sticky store; \
                         sticky+tls:// when it serves TLS) or redis://host:port (rediss:// over TLS)",
                        s.name
                    )));
                }
            }
            if s.requirepass.is_some() && s.requirepass_file.is_some() {
                return Err(invalid(format!(
                    "store {}: give requirepass or requirepass_file, not both",
                    s.name
                )));
            }
            if s.tls_cert.is_some() != s.tls_key.is_some() {
                return Err(invalid(format!(
                    "store {}: tls_cert and tls_key go together",
                    s.name
                )));
            }
        }
        Ok(file)
    }

    /// The `[[web]]` entry called `name`.
    pub fn web(&self, name: &str) -> Option<&WebEntry> {
        self.web.iter().find(|w| w.name == name)
    }

    /// The cluster secret from `secret` or `secret_file`.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] if neither is given, the file cannot be read,
    /// or the secret is shorter than 32 characters.
    pub fn secret(&self, path: &Path) -> Result<String, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let secret = match (&self.secret, &self.secret_file) {
            (Some(s), _) => s.clone(),
            (None, Some(f)) => std::fs::read_to_string(f)
                .map_err(|e| invalid(format!("cannot read secret_file {}: {e}", f.display())))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            (None, None) => return Err(invalid("no secret or secret_file".into())),
        };
        if secret.chars().count() < 32 {
            return Err(invalid(
                "the cluster secret must be at least 32 characters".into(),
            ));
        }
        Ok(secret)
    }

    /// The `[[store]]` entry called `name`.
    pub fn store(&self, name: &str) -> Option<&StoreEntry> {
        self.store.iter().find(|s| s.name == name)
    }
}

impl StoreEntry {
    /// The address web servers connect to: `url` if given, else `listen`.
    pub fn client_addr(&self) -> String {
        self.url.clone().unwrap_or_else(|| self.listen.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn director_section_defaults_and_checks() {
        let f = ClusterFile::parse("[director]\n", Path::new("c.toml"));
        let d = match f {
            Ok(f) => f.director.unwrap_or_default(),
            Err(e) => panic!("{e}"),
        };
        assert_eq!(d.listen.port(), 8080);
        assert_eq!(d.route_cookie, "sticky.route");
        assert_eq!((d.health_interval_ms, d.fall, d.rise), (500, 2, 2));
        assert_eq!(d.max_header_size, ByteSize(32 << 10));
        assert_eq!(d.yield_before_sleep_us, 200);
        for (text, us) in [
            ("[director]\nyield_before_sleep_us = 0\n", 0),
            ("[director]\nyield_before_sleep_us = \"50us\"\n", 50),
            ("[director]\nyield_before_sleep_us = \"10ms\"\n", 10_000),
        ] {
            let f = ClusterFile::parse(text, Path::new("c.toml"))
                .unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(
                f.director.unwrap_or_default().yield_before_sleep_us,
                us,
                "{text:?}"
            );
        }
        for bad in [
            "[director]\nfall = 0\n",
            "[director]\nheader_timeout_ms = 0\n",
            "[director]\nroute_cookie = \"a b\"\n",
            "[director]\nmax_header_size = \"1KiB\"\n",
            "[director]\nmax_connections = 0\n",
            "[director]\nyield_before_sleep_us = 10001\n",
            "[director]\nyield_before_sleep_us = \"20ms\"\n",
        ] {
            let r = ClusterFile::parse(bad, Path::new("c.toml"));
            assert!(
                matches!(r, Err(ConfigError::Invalid { .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn tls_settings_go_together() {
        let text =
            "[director]\ntls_cert = \"/etc/sticky/chain.pem\"\ntls_key = \"/etc/sticky/key.pem\"\n\
                    redirect_listen = \"127.0.0.1:8079\"\nhsts_max_age_secs = 300\n";
        let f = ClusterFile::parse(text, Path::new("c.toml")).unwrap_or_else(|e| panic!("{e}"));
        let d = f.director.unwrap_or_default();
        assert_eq!(
            d.tls_cert.as_deref(),
            Some(Path::new("/etc/sticky/chain.pem"))
        );
        assert_eq!(d.hsts_max_age_secs, 300);
        assert_eq!(
            d.instances()[0].redirect_listen.map(|a| a.port()),
            Some(8079)
        );
        let relaying = ClusterFile::parse(
            "[director]\nrelay_listen = \"127.0.0.1:8082\"\n\
             [[director.peers]]\nname = \"d2\"\nlisten = \"127.0.0.1:3\"\nadmin = \"127.0.0.1:4\"\nrelay_listen = \"127.0.0.1:5\"\n",
            Path::new("c.toml"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let ports: Vec<Option<u16>> = relaying
            .director
            .unwrap_or_default()
            .instances()
            .iter()
            .map(|d| d.relay_listen.map(|a| a.port()))
            .collect();
        assert_eq!(ports, [Some(8082), Some(5)]);
        for bad in [
            // A certificate without its key, a key without its certificate,
            // HTTPS-only settings without TLS, a redirect on the listen port.
            "[director]\ntls_cert = \"c.pem\"\n",
            "[director]\ntls_key = \"k.pem\"\n",
            "[director]\nredirect_listen = \"127.0.0.1:1\"\n",
            "[director]\nhsts_max_age_secs = 1\n",
            "[director]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nredirect_listen = \"127.0.0.1:8080\"\n",
            "[director]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\nredirect_listen = \"127.0.0.1:9\"\n\
             [[director.peers]]\nname = \"d2\"\nlisten = \"127.0.0.1:3\"\nadmin = \"127.0.0.1:4\"\nredirect_listen = \"127.0.0.1:9\"\n",
            // A relay listener on another listener's address, or shared.
            "[director]\nrelay_listen = \"127.0.0.1:8081\"\n",
            "[director]\nrelay_listen = \"127.0.0.1:9\"\n\
             [[director.peers]]\nname = \"d2\"\nlisten = \"127.0.0.1:3\"\nadmin = \"127.0.0.1:4\"\nrelay_listen = \"127.0.0.1:9\"\n",
        ] {
            let r = ClusterFile::parse(bad, Path::new("c.toml"));
            assert!(
                matches!(r, Err(ConfigError::Invalid { .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn several_directors_are_peers_of_the_director_section() {
        let one = ClusterFile::parse("[director]\n", Path::new("c.toml"))
            .unwrap_or_else(|e| panic!("{e}"));
        let one = one.director.unwrap_or_default();
        assert!(one.peers.is_empty(), "one [director] is one director");
        assert_eq!(one.instances().len(), 1);
        assert_eq!(one.instances()[0].name, FIRST_DIRECTOR);

        let text = "[director]\nlisten = \"127.0.0.1:8080\"\nadmin = \"127.0.0.1:8081\"\n\n\
                    [[director.peers]]\nname = \"director2\"\nlisten = \"127.0.0.1:8083\"\n\
                    admin = \"127.0.0.1:8084\"\n";
        let two = ClusterFile::parse(text, Path::new("c.toml")).unwrap_or_else(|e| panic!("{e}"));
        let two = two.director.unwrap_or_default();
        let names: Vec<String> = two.instances().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["director", "director2"]);
        let peer = two.instance("director2").unwrap_or_else(|| panic!("peer"));
        assert_eq!(peer.admin.port(), 8084);
        for bad in [
            // The same name twice, an address shared, a bad name.
            "[director]\n[[director.peers]]\nname = \"director\"\nlisten = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:2\"\n",
            "[director]\n[[director.peers]]\nname = \"d2\"\nlisten = \"127.0.0.1:8081\"\nadmin = \"127.0.0.1:2\"\n",
            "[director]\n[[director.peers]]\nname = \"d 2\"\nlisten = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:2\"\n",
            "[director]\n[[director.peers]]\nname = \"ws1\"\nlisten = \"127.0.0.1:1\"\nadmin = \"127.0.0.1:2\"\n\
             [[web]]\nname = \"ws1\"\nlisten = \"127.0.0.1:3\"\n",
        ] {
            let r = ClusterFile::parse(bad, Path::new("c.toml"));
            assert!(
                matches!(r, Err(ConfigError::Invalid { .. })),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn session_limits_of_new_sessions_have_defaults_and_parse() {
        let d = SessionSection::default();
        assert_eq!(
            (d.max_sessions, d.max_bytes),
            (1_000_000, ByteSize(1 << 30))
        );
        assert_eq!((d.new_sessions_per_ip, d.new_sessions_burst), (20, 100));
        assert_eq!(d.new_session_ttl_secs, 300);
        assert_eq!(d.trusted_proxies, ["127.0.0.0/8", "::1"]);
        let f = ClusterFile::parse(
            "[session]\nmax_sessions = 10\nmax_bytes = \"1MiB\"\nnew_sessions_per_ip = 0\n\
             new_sessions_burst = 5\nnew_session_ttl_secs = 30\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
            Path::new("c.toml"),
        );
        let s = match f {
            Ok(f) => f.session,
            Err(e) => panic!("{e}"),
        };
        assert_eq!((s.max_sessions, s.max_bytes), (10, ByteSize(1 << 20)));
        assert_eq!((s.new_sessions_per_ip, s.new_sessions_burst), (0, 5));
        assert_eq!(s.new_session_ttl_secs, 30);
        assert_eq!(s.trusted_proxies, ["10.0.0.0/8"]);
    }

    #[test]
    fn parses_stores_and_rejects_unknown_fields() {
        let f = ClusterFile::parse(
            "[[store]]\nname = \"s1\"\nlisten = \"127.0.0.1:7201\"\nmax_memory = \"64MiB\"\n",
            Path::new("c.toml"),
        );
        let f = match f {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let s1 = f.store("s1").map(|s| (s.listen.port(), s.max_memory));
        assert_eq!(s1, Some((7201, Some(ByteSize(64 << 20)))));
        let bad = ClusterFile::parse(
            "[[store]]\nname=\"s1\"\nlisten=\"127.0.0.1:1\"\nlisen=1\n",
            Path::new("c.toml"),
        );
        assert!(matches!(bad, Err(ConfigError::Parse { .. })));
        let dup = ClusterFile::parse(
            "[[store]]\nname=\"s1\"\nlisten=\"127.0.0.1:1\"\n[[store]]\nname=\"s1\"\nlisten=\"127.0.0.1:2\"\n",
            Path::new("c.toml"),
        );
        assert!(matches!(dup, Err(ConfigError::Invalid { .. })));
    }

    #[test]
    fn a_store_may_name_a_url_for_web_servers() {
        let f = ClusterFile::parse(
            "[[store]]\nname = \"r1\"\nlisten = \"127.0.0.1:6390\"\nurl = \"redis://:pw@127.0.0.1:6390\"\n\
             [[store]]\nname = \"s2\"\nlisten = \"127.0.0.1:7202\"\n",
            Path::new("c.toml"),
        );
        let f = match f {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let addrs: Vec<String> = f.store.iter().map(StoreEntry::client_addr).collect();
        assert_eq!(addrs, ["redis://:pw@127.0.0.1:6390", "127.0.0.1:7202"]);
        let bad = ClusterFile::parse(
            "[[store]]\nname=\"r1\"\nlisten=\"127.0.0.1:1\"\nurl=\"secret@host\"\n",
            Path::new("c.toml"),
        );
        match bad {
            Err(e @ ConfigError::Invalid { .. }) => assert!(!e.to_string().contains("secret@")),
            other => panic!("{other:?}"),
        }
    }
}
