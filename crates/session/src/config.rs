//! Settings of the session library, with their defaults.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

pub use sticky_config::Mode;

/// A network of addresses, `addr/prefix` (`127.0.0.0/8`, `::1/128`; a bare
/// address is one host), for [`Config::trusted_proxies`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// A network that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or network (addr/prefix, e.g. 10.0.0.0/8 or ::1)")]
pub struct BadIpNet(String);

impl IpNet {
    /// `addr/prefix`; `None` if the prefix is longer than the address.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<Self> {
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(Self {
            addr: addr.to_canonical(),
            prefix,
        })
    }

    /// The loopback networks, `127.0.0.0/8` and `::1/128`.
    pub fn loopback() -> Vec<Self> {
        vec![
            Self {
                addr: IpAddr::from([127, 0, 0, 0]),
                prefix: 8,
            },
            Self {
                addr: IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
                prefix: 128,
            },
        ]
    }

    /// Whether `ip` is in this network (IPv4-mapped IPv6 addresses count
    /// as their IPv4 address).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let (net, ip, len) = match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n).into(), u32::from(i).into(), 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let host_bits = len - u32::from(self.prefix);
        net.checked_shr(host_bits).unwrap_or(0) == ip.checked_shr(host_bits).unwrap_or(0)
    }
}

impl FromStr for IpNet {
    type Err = BadIpNet;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadIpNet(s.to_owned());
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p.parse::<u8>().map_err(|_| bad())?)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let prefix = prefix.unwrap_or(if addr.is_ipv4() { 32 } else { 128 });
        Self::new(addr, prefix).ok_or_else(bad)
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

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

/// Another web server of the cluster, which this one may have to prove
/// gone before claiming its sessions (`docs/safety.md` §2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    /// Its name (`ws2`).
    pub name: String,
    /// Where its control endpoints answer.
    pub addr: std::net::SocketAddr,
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
    /// This server's lease at the stores: the server serves from its
    /// cache only while a quorum of stores holds it, and a crashed or
    /// cut-off server's sessions can be claimed by others at most this long
    /// after its last renewal (`docs/safety.md` §2). A renewal lets it
    /// serve for the lease but never longer than twice `claim_timeout`
    /// ([`Config::lease_belief`]). Default 3 s.
    pub lease: Duration,
    /// A takeover (claim) that has not finished in this time gives up with
    /// a 503; stores keep dead leases and promises twice as long. Default
    /// 2 s.
    pub claim_timeout: Duration,
    /// The other web servers, whose death this one may prove (a refused
    /// connection, another epoch) to claim their sessions before their
    /// leases run out, and which a takeover asks whether they hold a
    /// session in memory before it counts the "no copy" of stores that
    /// restarted empty (`docs/safety.md` §3). List every other web server:
    /// one left out is never asked. Default none: claims then wait for
    /// leases to run out, and trust such stores once all stores answered.
    pub peers: Vec<Peer>,
    /// A server that no director's health check has reached for this long
    /// while a peer probes it to claim one of its sessions (so a director
    /// sent that session's user elsewhere) lets its sessions go: it fences
    /// itself, keeping its copies to claim back the ones nobody took once a
    /// director reaches it again (`docs/safety.md` §2, "A server no
    /// director reaches lets its sessions go"). Only in `sync` mode, and
    /// only once a director's check has been seen. Set it to the time the
    /// directors take to mark a server down (`fall` checks × the interval
    /// \+ the check timeout; `sticky web` does). `None`: never, the sessions
    /// of a server cut from every director wait for the heal. Default
    /// `None`.
    pub release_unreached_after: Option<Duration>,
    /// Per-request timeout towards a store. Default 1 s.
    pub store_timeout: Duration,
    /// A store that has not answered a write (or a takeover's prepare)
    /// this long after it was sent, while the others did, is *slow*: the
    /// write goes on to the next store in placement order instead of
    /// waiting for it, and placement skips it until it answers again (it is
    /// not marked down: nothing is re-copied). A session written meanwhile
    /// may keep a copy on a third store until it expires. `None` waits for
    /// every replica up to `store_timeout`. Default 50 ms
    /// (`docs/safety.md` §1, "Slow stores").
    pub slow_store: Option<Duration>,
    /// Store password. Default none.
    pub store_password: Option<String>,
    /// PEM CA certificates that TLS stores' (`rediss://`, `sticky+tls://`)
    /// certificates are verified against, instead of the system's trust
    /// store. Default none.
    pub store_tls_ca: Option<std::path::PathBuf>,
    /// One connection to each store per thread that serves requests
    /// ([`sticky_client::ClientOptions::connection_per_thread`]): for a
    /// server that runs one single-threaded runtime per thread, as `sticky
    /// web` does, so that a write never wakes another thread. Default
    /// false (one shared connection per store, right for a multi-threaded
    /// runtime).
    pub store_connection_per_thread: bool,
    /// Async mode: most queued changes. Default 10,000.
    pub async_queue: usize,
    /// Async mode: past this lag, writers wait for their own copy. Default 1 s.
    pub async_max_lag: Duration,
    /// Store failover re-copies at most this many sessions per second
    /// (also the pace of claiming a dead server's sessions). Default
    /// 100,000: enough not to slow a re-copy on common hardware, where the
    /// stores' write speed sets the pace.
    pub recopy_rate: u32,
    /// A standby server (reported by health). Default false.
    pub standby: bool,
    /// Most sessions this server hosts: a new session beyond it is refused
    /// with 503 (existing sessions keep working). Default 1,000,000.
    pub max_sessions: usize,
    /// Most serialized session bytes this server hosts: a new session that
    /// would take the total beyond it is refused with 503. Writes of
    /// existing sessions are not refused by it (each is bounded by
    /// `max_size`). Default 1 GiB.
    pub max_bytes: u64,
    /// New sessions per second one client address (IPv6: one /64) may
    /// create (a token bucket per address); beyond it, 429 with `Retry-After`. 0: no
    /// limit. Requests with a valid session cookie are never limited.
    /// Default 20.
    pub new_sessions_per_ip: u32,
    /// The bucket's size: new sessions one address may create at once.
    /// Default 100.
    pub new_sessions_burst: u32,
    /// Most client addresses the per-address limit tracks; when full, idle
    /// ones (their bucket refilled), then the least recently seen, are
    /// forgotten. Default 100,000.
    pub new_sessions_tracked: usize,
    /// Lifetime of a new session that no second request touched, in the
    /// cache and at the stores (its second request extends it to
    /// `idle_timeout`). Default 5 min.
    pub new_session_ttl: Duration,
    /// Peers whose `X-Forwarded-For` names the client: the client is the
    /// last address in it that is not itself a trusted proxy. A client
    /// whose address is trusted is not rate-limited. Default loopback
    /// (`127.0.0.0/8`, `::1`), where `sticky up` runs the director.
    pub trusted_proxies: Vec<IpNet>,
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
    /// How long a lease renewal lets this server serve from its cache: the
    /// lease, but never longer than a restarted store's recovery window
    /// (twice the claim timeout, `docs/safety.md` §3). A store that
    /// restarts forgets the leases it acknowledged and accepts kills of
    /// them once its window ends, so a belief resting on its
    /// acknowledgement must have ended by then (the lemma). The stores
    /// still hold the lease for all of `lease` (a cut-off server's sessions
    /// wait that long, or for a probe); renewals come every third of this.
    pub fn lease_belief(&self) -> Duration {
        self.lease.min(self.claim_timeout.saturating_mul(2))
    }

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
            claim_timeout: Duration::from_secs(2),
            peers: Vec::new(),
            release_unreached_after: None,
            store_timeout: Duration::from_secs(1),
            slow_store: Some(Duration::from_millis(50)),
            store_password: None,
            store_tls_ca: None,
            store_connection_per_thread: false,
            async_queue: 10_000,
            async_max_lag: Duration::from_secs(1),
            recopy_rate: 100_000,
            standby: false,
            max_sessions: 1_000_000,
            max_bytes: 1 << 30,
            new_sessions_per_ip: 20,
            new_sessions_burst: 100,
            new_sessions_tracked: 100_000,
            new_session_ttl: Duration::from_secs(300),
            trusted_proxies: IpNet::loopback(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_and_contain_their_addresses() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
        let net = |s: &str| s.parse::<IpNet>().unwrap_or_else(|e| panic!("{e}"));
        assert!(net("127.0.0.0/8").contains(ip("127.1.2.3")));
        assert!(
            net("127.0.0.0/8").contains(ip("::ffff:127.0.0.1")),
            "mapped"
        );
        assert!(!net("127.0.0.0/8").contains(ip("128.0.0.1")));
        assert!(net("10.1.2.3").contains(ip("10.1.2.3")));
        assert!(!net("10.1.2.3").contains(ip("10.1.2.4")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(!net("0.0.0.0/0").contains(ip("::2")));
        assert!(net("::1").contains(ip("::1")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("fe80::1")));
        for bad in ["", "x", "10.0.0.0/33", "::/129", "10.0.0.0/x"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
        assert_eq!(net("::ffff:10.0.0.1").to_string(), "10.0.0.1/32");
    }
}
