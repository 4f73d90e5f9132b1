//! Settings: [`DirectorConfig`] and the web servers it routes to
//! ([`ServerSpec`]), read from the cluster file or built by hand.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use sticky_config::{ClusterFile, DirectorPeer, DirectorSection, WebEntry, FIRST_DIRECTOR};

use crate::tls::TlsFiles;
use crate::DirectorError;

/// One web server the director routes to (a `[[web]]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSpec {
    /// Unique name (`ws1`), carried in the route cookie. ASCII letters,
    /// digits, `-`, `_` and `.`, at most 64 of them.
    pub name: String,
    /// Where the web server listens.
    pub addr: SocketAddr,
    /// A standby takes the clients of failed servers and no new ones.
    pub standby: bool,
    /// Relative share of new clients; 0 takes no new clients.
    pub weight: u32,
}

impl ServerSpec {
    /// A web server (not a standby) of weight 1.
    pub fn new(name: impl Into<String>, addr: SocketAddr) -> Self {
        Self {
            name: name.into(),
            addr,
            standby: false,
            weight: 1,
        }
    }

    /// Checks the name (it goes into a cookie value and into metric labels).
    ///
    /// # Errors
    ///
    /// [`DirectorError::Config`] naming the offending server.
    pub fn check(&self) -> Result<(), DirectorError> {
        let ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
        if ok {
            Ok(())
        } else {
            Err(DirectorError::Config(format!(
                "web server name {:?} must be 1 to 64 ASCII letters, digits, '-', '_' or '.'",
                self.name
            )))
        }
    }
}

impl From<&WebEntry> for ServerSpec {
    fn from(w: &WebEntry) -> Self {
        Self {
            name: w.name.clone(),
            addr: w.listen,
            standby: w.standby,
            weight: w.weight,
        }
    }
}

/// One session store the director watches (a `[[store]]` table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreSpec {
    /// Its name (`s1`).
    pub name: String,
    /// Where it listens.
    pub addr: SocketAddr,
    /// It speaks TLS (its `url` is `sticky+tls://` or `rediss://`), with
    /// a certificate for this host. Default none: plain RESP.
    pub tls_host: Option<String>,
}

/// Health-check settings (`[director]` `health_*`, `fall`, `rise`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between two checks of one server. Default 500 ms.
    pub interval: Duration,
    /// Time a check may take. Default 500 ms.
    pub timeout: Duration,
    /// A check unanswered this long marks the server unreachable (passed
    /// over for moved and new clients) until a check passes; `None`: only
    /// a failed check does. Default 100 ms.
    pub slow: Option<Duration>,
    /// Failed checks in a row that mark a server down. Default 2.
    pub fall: u32,
    /// Successful checks in a row that mark a down server up. Default 2.
    pub rise: u32,
}

/// Everything the director needs. Build it with [`DirectorConfig::new`]
/// (defaults as documented on each field) or [`DirectorConfig::from_cluster`].
#[derive(Clone)]
pub struct DirectorConfig {
    /// Public listener address (used by the binary to bind). Default
    /// `127.0.0.1:8080`.
    pub listen: SocketAddr,
    /// Admin listener address. Default `127.0.0.1:8081`.
    pub admin: SocketAddr,
    /// Name of the route cookie the director inserts. Default `sticky.route`.
    pub route_cookie: String,
    /// Name of the web servers' session cookie, whose value is the key of
    /// rendezvous hashing on failover. Default `sticky.sid`.
    pub session_cookie: String,
    /// Mark the route cookie `Secure`. Default false; always on with
    /// [`tls`](Self::tls).
    pub cookie_secure: bool,
    /// The public listener speaks TLS with this certificate chain and key
    /// (HTTP/2 or HTTP/1.1 by ALPN; the fast path is off). Default: none,
    /// plain HTTP.
    pub tls: Option<TlsFiles>,
    /// Where the binary binds the HTTP-to-HTTPS redirect listener (served
    /// when given to [`Director::set_redirect_listener`](crate::Director::set_redirect_listener)).
    /// Default: none.
    pub redirect_listen: Option<SocketAddr>,
    /// A plain listener for requests relayed by peer directors while the
    /// public one speaks TLS (served when given to
    /// [`Director::set_relay_listener`](crate::Director::set_relay_listener)).
    pub relay_listen: Option<SocketAddr>,
    /// `Strict-Transport-Security` max-age on HTTPS responses; zero sends
    /// none. Default zero.
    pub hsts_max_age: Duration,
    /// `includeSubDomains` in that header. Default false.
    pub hsts_include_subdomains: bool,
    /// The CA file TLS stores are verified against when probed (the
    /// system's trust store without it). Default none.
    pub store_tls_ca: Option<std::path::PathBuf>,
    /// Health checks.
    pub health: HealthSettings,
    /// Time to open a connection to a web server. Default 1 s.
    pub connect_timeout: Duration,
    /// Time to open a connection to a web server the director chose when
    /// another could take the request (a moved or new client); after it
    /// the request goes to that other server. `None`: `connect_timeout`.
    /// Default 50 ms.
    pub reroute_connect_timeout: Option<Duration>,
    /// Time for a client to send a request head (also the keep-alive idle
    /// limit). Default 10 s.
    pub header_timeout: Duration,
    /// Time for a web server to send a response head. Default 60 s.
    pub response_timeout: Duration,
    /// Requests waiting for a web server's answer end with `504` when its
    /// health checks mark it down. Default true.
    pub end_requests_on_down: bool,
    /// A request whose session's owner cannot be reached from here goes
    /// to a peer director (`[[director.peers]]`), once. Default true; off
    /// with TLS on the public listener.
    pub relay_to_peers: bool,
    /// A connection or tunnel without traffic for this long is closed.
    /// Default 120 s.
    pub idle_timeout: Duration,
    /// Graceful shutdown: how long in-flight requests may still run.
    /// Default 10 s.
    pub drain_timeout: Duration,
    /// Largest request head in bytes (at least 8192). Default 32 KiB.
    pub max_header_size: usize,
    /// Most client connections at once. Default 10,000.
    pub max_connections: usize,
    /// Most idle keep-alive connections kept per web server. Default 256.
    pub max_idle_per_server: usize,
    /// Plain HTTP/1.1 requests take the fast path (no hyper). Default true.
    pub fast_path: bool,
    /// A worker's event loop that runs out of work yields its CPU to
    /// whatever else is waiting for it, for up to this long, before it
    /// sleeps (`docs/director.md`, "Before an event loop sleeps"). Zero
    /// turns it off. Default 200 µs.
    pub yield_before_sleep: Duration,
    /// Worker threads of [`Director::run`](crate::Director::run), each its
    /// own event loop. Default 1.
    pub threads: usize,
    /// The web servers, standbys included.
    pub servers: Vec<ServerSpec>,
    /// The session stores shown on the dashboard and in `/api/cluster`
    /// (asked `PING` and `INFO` every second). Default: none.
    pub stores: Vec<StoreSpec>,
    /// Password for those stores' `AUTH` (`[session] store_password`).
    pub store_password: Option<String>,
    /// The `sticky up` supervisor's control API, proxied under
    /// `/api/processes` on the admin listener. Default: none.
    pub supervisor: Option<SocketAddr>,
    /// This director's name among the cluster's directors. Default
    /// `director` (the `[director]` section's own).
    pub name: String,
    /// The cluster's other directors (`[[director.peers]]`, and the
    /// `[director]` itself for a peer): an admin state change asked here
    /// is passed to each of their admin listeners. Default: none.
    pub peers: Vec<DirectorPeer>,
    /// `Host` values the admin listener accepts besides its own address
    /// forms (`localhost:PORT`, `127.0.0.1:PORT`, `[::1]:PORT`, the bound
    /// address); compared whole, ignoring letter case. Default: none.
    pub admin_hosts: Vec<String>,
    /// The token state-changing admin requests must carry as
    /// `Authorization: Bearer TOKEN`. Default: none, the admin token
    /// derived from the cluster secret (which the dashboard embeds; a
    /// configured one it asks the operator for).
    pub admin_token: Option<String>,
    /// Peers whose `X-Forwarded-For`, `-Proto` and `-Host` are kept (the
    /// peer's address appended to `X-Forwarded-For`). Default: none.
    pub trusted_proxies: Vec<ProxyNet>,
    /// Time between two samples of the dashboard's history (`GET
    /// /api/history`, which keeps the last 180). Default 5 s: 15 minutes.
    /// A library setting, not in the cluster file.
    pub history_interval: Duration,
    secret: Vec<u8>,
}

/// An address or CIDR block of trusted proxies (`10.0.0.0/8`, `::1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyNet {
    addr: IpAddr,
    prefix: u8,
}

impl ProxyNet {
    /// Whether `ip` is inside this block (IPv4-mapped IPv6 addresses
    /// count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for ProxyNet {
    type Err = DirectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            DirectorError::Config(format!(
                "trusted proxy {s:?} is not an address or CIDR block (10.0.0.0/8, ::1)"
            ))
        };
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(Self { addr, prefix })
    }
}

impl fmt::Debug for DirectorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DirectorConfig")
            .field("listen", &self.listen)
            .field("admin", &self.admin)
            .field("route_cookie", &self.route_cookie)
            .field("session_cookie", &self.session_cookie)
            .field("cookie_secure", &self.cookie_secure)
            .field("tls", &self.tls)
            .field("redirect_listen", &self.redirect_listen)
            .field("relay_listen", &self.relay_listen)
            .field("hsts_max_age", &self.hsts_max_age)
            .field("hsts_include_subdomains", &self.hsts_include_subdomains)
            .field("store_tls_ca", &self.store_tls_ca)
            .field("health", &self.health)
            .field("connect_timeout", &self.connect_timeout)
            .field("reroute_connect_timeout", &self.reroute_connect_timeout)
            .field("header_timeout", &self.header_timeout)
            .field("response_timeout", &self.response_timeout)
            .field("end_requests_on_down", &self.end_requests_on_down)
            .field("relay_to_peers", &self.relay_to_peers)
            .field("idle_timeout", &self.idle_timeout)
            .field("drain_timeout", &self.drain_timeout)
            .field("max_header_size", &self.max_header_size)
            .field("max_connections", &self.max_connections)
            .field("max_idle_per_server", &self.max_idle_per_server)
            .field("fast_path", &self.fast_path)
            .field("yield_before_sleep", &self.yield_before_sleep)
            .field("threads", &self.threads)
            .field("servers", &self.servers)
            .field("stores", &self.stores)
            .field(
                "store_password",
                &self.store_password.as_ref().map(|_| "<redacted>"),
            )
            .field("supervisor", &self.supervisor)
            .field("name", &self.name)
            .field("peers", &self.peers)
            .field("admin_hosts", &self.admin_hosts)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("trusted_proxies", &self.trusted_proxies)
            .field("history_interval", &self.history_interval)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl DirectorConfig {
    /// Defaults (those of an empty `[director]` table) with this cluster
    /// secret and these servers.
    pub fn new(secret: impl Into<Vec<u8>>, servers: Vec<ServerSpec>) -> Self {
        let mut config = Self::from_section(&DirectorSection::default());
        config.secret = secret.into();
        config.servers = servers;
        config
    }

    /// The section's settings but `trusted_proxies` (which need parsing:
    /// [`Self::from_cluster`]).
    fn from_section(d: &DirectorSection) -> Self {
        let ms = Duration::from_millis;
        Self {
            listen: d.listen,
            admin: d.admin,
            route_cookie: d.route_cookie.clone(),
            session_cookie: "sticky.sid".into(),
            cookie_secure: false,
            tls: match (&d.tls_cert, &d.tls_key) {
                (Some(cert), Some(key)) => Some(TlsFiles {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
                _ => None,
            },
            redirect_listen: d.redirect_listen,
            relay_listen: d.relay_listen,
            hsts_max_age: Duration::from_secs(d.hsts_max_age_secs),
            hsts_include_subdomains: d.hsts_include_subdomains,
            store_tls_ca: None,
            health: HealthSettings {
                interval: ms(d.health_interval_ms),
                timeout: ms(d.health_timeout_ms),
                slow: (d.health_slow_ms > 0).then(|| ms(d.health_slow_ms)),
                fall: d.fall,
                rise: d.rise,
            },
            connect_timeout: ms(d.connect_timeout_ms),
            reroute_connect_timeout: (d.reroute_connect_timeout_ms > 0)
                .then(|| ms(d.reroute_connect_timeout_ms)),
            header_timeout: ms(d.header_timeout_ms),
            response_timeout: ms(d.response_timeout_ms),
            end_requests_on_down: d.end_requests_on_down,
            relay_to_peers: d.relay_to_peers,
            idle_timeout: ms(d.idle_timeout_ms),
            drain_timeout: ms(d.drain_timeout_ms),
            max_header_size: usize::try_from(d.max_header_size.0).unwrap_or(usize::MAX),
            max_connections: d.max_connections,
            max_idle_per_server: d.max_idle_per_server,
            fast_path: d.fast_path,
            yield_before_sleep: Duration::from_micros(d.yield_before_sleep_us),
            threads: 1,
            servers: Vec::new(),
            stores: Vec::new(),
            store_password: None,
            supervisor: d.supervisor,
            name: FIRST_DIRECTOR.into(),
            peers: d.peers.clone(),
            admin_hosts: d.admin_hosts.clone(),
            admin_token: d.admin_token.clone(),
            trusted_proxies: Vec::new(),
            history_interval: Duration::from_secs(5),
            secret: Vec::new(),
        }
    }

    /// The director's settings from a cluster file: `[director]` (defaults
    /// if absent), the `[[web]]` servers, the session cookie's name and
    /// `Secure` flag from `[session]`, and the cluster secret (read by the
    /// caller with [`ClusterFile::secret`]).
    ///
    /// # Errors
    ///
    /// [`DirectorError::Config`] if a server name is unusable.
    pub fn from_cluster(file: &ClusterFile, secret: &str) -> Result<Self, DirectorError> {
        let section = file.director.clone().unwrap_or_default();
        let mut config = Self::from_section(&section);
        config.trusted_proxies = section
            .trusted_proxies
            .iter()
            .map(|p| p.parse())
            .collect::<Result<Vec<ProxyNet>, _>>()?;
        config.session_cookie = file.session.cookie_name.clone();
        config.cookie_secure = file.session.cookie_secure;
        config.secret = secret.as_bytes().to_vec();
        config.servers = servers_of(file)?;
        config.stores = file
            .store
            .iter()
            .map(|s| StoreSpec {
                name: s.name.clone(),
                addr: s.listen,
                tls_host: s.url.as_deref().and_then(sticky_proto::tls::store_tls_host),
            })
            .collect();
        config
            .store_password
            .clone_from(&file.session.store_password);
        config.store_tls_ca.clone_from(&file.session.store_tls_ca);
        Ok(config)
    }

    /// This configuration for the cluster's director called `name`
    /// (`[director]`'s own is `director`; the others are
    /// `[[director.peers]]`): its listeners, and every other director as a
    /// peer.
    ///
    /// # Errors
    ///
    /// [`DirectorError::Config`] if the cluster file has no director of
    /// that name.
    pub fn for_director(mut self, file: &ClusterFile, name: &str) -> Result<Self, DirectorError> {
        let section = file.director.clone().unwrap_or_default();
        let me = section.instance(name).ok_or_else(|| {
            DirectorError::Config(format!(
                "the cluster file has no director called {:?}",
                name.chars().take(64).collect::<String>()
            ))
        })?;
        self.name = me.name;
        self.listen = me.listen;
        self.admin = me.admin;
        self.redirect_listen = me.redirect_listen;
        self.relay_listen = me.relay_listen;
        self.peers = section
            .instances()
            .into_iter()
            .filter(|d| d.name != name)
            .collect();
        Ok(self)
    }

    /// The cluster secret.
    pub(crate) fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Checks the whole configuration.
    pub(crate) fn check(&self) -> Result<(), DirectorError> {
        if self.secret.len() < 32 {
            return Err(DirectorError::Config(
                "the cluster secret must be at least 32 bytes".into(),
            ));
        }
        if self.route_cookie.is_empty() || self.session_cookie.is_empty() {
            return Err(DirectorError::Config(
                "cookie names must not be empty".into(),
            ));
        }
        if self.route_cookie == self.session_cookie {
            return Err(DirectorError::Config(
                "the route cookie and the session cookie need different names".into(),
            ));
        }
        if self.max_connections == 0 || self.health.fall == 0 || self.health.rise == 0 {
            return Err(DirectorError::Config(
                "max_connections, fall and rise must be at least 1".into(),
            ));
        }
        if self.tls.is_none()
            && (self.redirect_listen.is_some()
                || !self.hsts_max_age.is_zero()
                || self.hsts_include_subdomains)
        {
            return Err(DirectorError::Config(
                "redirect_listen and hsts_* apply to HTTPS: they need a TLS certificate and key"
                    .into(),
            ));
        }
        if self
            .admin_token
            .as_ref()
            .is_some_and(|t| t.len() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err(DirectorError::Config(
                "admin_token must be at least 16 visible ASCII characters".into(),
            ));
        }
        check_servers(&self.servers)
    }
}

/// The `[[web]]` servers of a cluster file, checked.
///
/// # Errors
///
/// [`DirectorError::Config`] if a name is unusable or used twice.
pub fn servers_of(file: &ClusterFile) -> Result<Vec<ServerSpec>, DirectorError> {
    let servers: Vec<ServerSpec> = file.web.iter().map(ServerSpec::from).collect();
    check_servers(&servers)?;
    Ok(servers)
}

pub(crate) fn check_servers(servers: &[ServerSpec]) -> Result<(), DirectorError> {
    let mut names = std::collections::HashSet::new();
    for s in servers {
        s.check()?;
        if !names.insert(s.name.as_str()) {
            return Err(DirectorError::Config(format!(
                "web server name {:?} is used twice",
                s.name
            )));
        }
    }
    Ok(())
}

/// The director's settings from cluster file `text` (unit tests).
#[cfg(test)]
pub(crate) fn config_of(text: &str) -> DirectorConfig {
    let path = std::path::Path::new("c.toml");
    let file = match ClusterFile::parse(text, path) {
        Ok(f) => f,
        Err(e) => panic!("{e}"),
    };
    let secret = file.secret(path).unwrap_or_default();
    match DirectorConfig::from_cluster(&file, &secret) {
        Ok(c) => c,
        Err(e) => panic!("{e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn zero_turns_the_reroute_connect_limit_and_the_slow_check_mark_off() {
        let text = r#"
            secret = "0123456789abcdef0123456789abcdef"
            [director]
            connect_timeout_ms = 700
            reroute_connect_timeout_ms = 0
            health_slow_ms = 0
            [[web]]
            name = "ws1"
            listen = "127.0.0.1:9001"
        "#;
        let c = config_of(text);
        assert_eq!(c.connect_timeout, Duration::from_millis(700));
        assert_eq!(c.reroute_connect_timeout, None);
        assert_eq!(c.health.slow, None);
    }

    #[test]
    fn cluster_file_fills_every_setting() {
        let text = r#"
            secret = "0123456789abcdef0123456789abcdef"
            [session]
            cookie_name = "sid"
            [director]
            listen = "127.0.0.1:9000"
            fall = 3
            header_timeout_ms = 2000
            admin_hosts = ["director.internal:8081"]
            admin_token = "an-operator-chosen-token"
            trusted_proxies = ["10.0.0.0/8", "::1"]
            [[web]]
            name = "ws1"
            listen = "127.0.0.1:9001"
            [[web]]
            name = "ws2"
            listen = "127.0.0.1:9002"
            standby = true
            weight = 3
        "#;
        let c = config_of(text);
        assert!(c.check().is_ok());
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.admin.port(), 8081);
        assert_eq!(c.session_cookie, "sid");
        assert_eq!(c.health.fall, 3);
        assert_eq!(c.health.rise, 2);
        assert_eq!(c.header_timeout, Duration::from_secs(2));
        assert_eq!(c.reroute_connect_timeout, Some(Duration::from_millis(50)));
        assert_eq!(c.health.slow, Some(Duration::from_millis(100)));
        assert_eq!(c.servers.len(), 2);
        assert!(c.servers[1].standby);
        assert_eq!(c.servers[1].weight, 3);
        assert_eq!(c.admin_hosts, ["director.internal:8081"]);
        assert_eq!(c.admin_token.as_deref(), Some("an-operator-chosen-token"));
        assert_eq!(c.trusted_proxies.len(), 2);
        assert!(c.trusted_proxies[0].contains("10.1.2.3".parse().unwrap_or(IpAddr::from([0; 4]))));
        let debug = format!("{c:?}");
        assert!(
            !debug.contains("0123456789abcdef"),
            "Debug hides the secret"
        );
        assert!(
            !debug.contains("an-operator-chosen-token"),
            "and the admin token"
        );
        // A trusted proxy that is not an address is refused.
        let bad = text.replace("\"::1\"", "\"proxy.example\"");
        let file = match ClusterFile::parse(&bad, Path::new("c.toml")) {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let secret = file.secret(Path::new("c.toml")).unwrap_or_default();
        assert!(DirectorConfig::from_cluster(&file, &secret).is_err());
    }

    #[test]
    fn bad_names_and_short_secrets_are_refused() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 1));
        let ok = DirectorConfig::new(vec![b'x'; 32], vec![ServerSpec::new("ws-1.a_b", addr)]);
        assert!(ok.check().is_ok());
        for bad in ["", "w s", "ws;1", "ws=1", "ẅs"] {
            let c = DirectorConfig::new(vec![b'x'; 32], vec![ServerSpec::new(bad, addr)]);
            assert!(c.check().is_err(), "{bad:?} must be refused");
        }
        let twice = DirectorConfig::new(
            vec![b'x'; 32],
            vec![ServerSpec::new("a", addr), ServerSpec::new("a", addr)],
        );
        assert!(twice.check().is_err());
        let short = DirectorConfig::new(vec![b'x'; 31], vec![]);
        assert!(short.check().is_err());
        let mut weak = DirectorConfig::new(vec![b'x'; 32], vec![]);
        weak.admin_token = Some("short".into());
        assert!(weak.check().is_err(), "an admin token under 16 characters");
        weak.admin_token = Some("sixteen chars ok".into());
        assert!(weak.check().is_err(), "spaces are refused");
        weak.admin_token = Some("sixteen-chars-ok".into());
        assert!(weak.check().is_ok());
    }

    #[test]
    fn trusted_proxy_blocks() {
        let net = |s: &str| s.parse::<ProxyNet>().unwrap_or_else(|e| panic!("{s}: {e}"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap_or_else(|e| panic!("{s}: {e}"));
        assert!(net("10.0.0.0/8").contains(ip("10.200.1.2")));
        assert!(!net("10.0.0.0/8").contains(ip("11.0.0.1")));
        assert!(net("10.0.0.0/8").contains(ip("::ffff:10.0.0.1")));
        assert!(net("127.0.0.1").contains(ip("127.0.0.1")));
        assert!(!net("127.0.0.1").contains(ip("127.0.0.2")));
        assert!(net("0.0.0.0/0").contains(ip("8.8.8.8")));
        assert!(net("fd00::/8").contains(ip("fd12::1")));
        assert!(!net("fd00::/8").contains(ip("10.0.0.1")));
        assert!(net("::1").contains(ip("::1")));
        for bad in ["", "10.0.0.0/33", "::/129", "host.example", "10.0.0.0/x"] {
            assert!(bad.parse::<ProxyNet>().is_err(), "{bad:?}");
        }
    }
}
