//! The cluster `sticky up` starts: names, roles, ports and the cluster file.

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use sticky_config::{Mode, FIRST_DIRECTOR};

use super::app::AppSpec;
use super::args::UpArgs;

/// What a process is in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Director,
    Web,
    Standby,
    Store,
    /// The app behind a sidecar web server (`sticky up --app`), named
    /// after it: `ws1-app`.
    App,
}

impl Role {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Role::Director => "director",
            Role::Web => "web",
            Role::Standby => "standby",
            Role::Store => "store",
            Role::App => "app",
        }
    }
}

/// One process of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    pub(crate) name: String,
    pub(crate) role: Role,
    /// Where it serves (the director: its public listener).
    pub(crate) addr: SocketAddr,
    /// A director's admin listener (dashboard, API); `None` for others.
    pub(crate) admin: Option<SocketAddr>,
}

/// A store `up` runs on but does not start (`--store-url`).
#[derive(Clone)]
pub(crate) struct ExternalStore {
    pub(crate) name: String,
    /// Its host and port, for the director's and `sticky status`'s looks.
    pub(crate) listen: SocketAddr,
    /// As given: what web servers connect with (may hold a password).
    pub(crate) url: String,
}

impl std::fmt::Debug for ExternalStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalStore")
            .field("name", &self.name)
            .field("listen", &self.listen)
            .finish_non_exhaustive()
    }
}

/// The `host:port` of a store address (`HOST:PORT`, or a URL such as
/// `redis://user:pass@HOST:PORT/?protocol=resp3`; Redis's port 6379 when
/// a URL names none), resolved. Messages never quote the address: it may
/// hold a password.
fn store_host_port(url: &str) -> anyhow::Result<SocketAddr> {
    use std::net::ToSocketAddrs;
    if url.chars().any(char::is_control) {
        bail!("a --store-url holds a control character");
    }
    if let Some((scheme, _)) = url.split_once("://") {
        const SCHEMES: [&str; 6] = [
            "sticky",
            "sticky+tls",
            "redis",
            "rediss",
            "valkey",
            "redis+cluster",
        ];
        if !SCHEMES.contains(&scheme) {
            bail!(
                "a --store-url begins with {scheme:?}://: give HOST:PORT or sticky://HOST:PORT \
                 (a sticky store), sticky+tls:// (one serving TLS), redis:// or rediss:// (Redis)"
            );
        }
    }
    let (rest, default_port) = match url.split_once("://") {
        Some((_, rest)) => (rest, Some(6379)),
        None => (url, None),
    };
    let rest = rest.rsplit_once('@').map_or(rest, |(_, r)| r);
    let host_port = rest.split(['/', '?', ',']).next().unwrap_or_default();
    let with_port = match (host_port.rsplit_once(':'), default_port) {
        (Some((_, p)), _) if p.parse::<u16>().is_ok() && !host_port.ends_with(']') => {
            host_port.to_owned()
        }
        (_, Some(port)) => format!("{host_port}:{port}"),
        (_, None) => bail!(
            "a --store-url without a scheme must be HOST:PORT (a running sticky store); \
             a password goes in sticky://:PASSWORD@HOST:PORT"
        ),
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .with_context(|| format!("cannot resolve the host of --store-url {host_port:?}"))
}

/// The user name and password of a store URL (`scheme://[user]:pass@...`);
/// empty ones as `None`.
fn url_credentials(url: &str) -> (Option<&str>, Option<&str>) {
    let Some((_, rest)) = url.split_once("://") else {
        return (None, None);
    };
    let rest = rest.split(['/', '?']).next().unwrap_or_default();
    let Some((userinfo, _)) = rest.rsplit_once('@') else {
        return (None, None);
    };
    let (user, pass) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let some = |s: &str| (!s.is_empty()).then_some(());
    (some(user).map(|()| user), some(pass).map(|()| pass))
}

/// `text` with its `%XX` escapes decoded; `None` if they are not valid
/// escapes of UTF-8 text.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The password the director and `sticky status` look at the
/// `--store-url` stores with (`[session] store_password`): theirs, when
/// they all have the same one and no user name. Otherwise none, and a
/// warning: the web servers use each URL's own, but the director's
/// health checks, which take one password, will see some stores down.
fn shared_password(external: &[ExternalStore]) -> Option<String> {
    let creds: Vec<_> = external.iter().map(|s| url_credentials(&s.url)).collect();
    let first = creds.first()?.1;
    if creds
        .iter()
        .all(|(user, pass)| user.is_none() && *pass == first)
    {
        // As the URL parser takes it: `%40` is `@`.
        return first.and_then(percent_decode);
    }
    eprintln!(
        "warning: the --store-url stores have different passwords or a user name: \
         the web servers use each URL's own, but the director's health checks and \
         `sticky status` use one password ([session] store_password) and may show \
         some stores as down"
    );
    None
}

/// Fails unless every `--store-url` store answers `PING` within a few
/// seconds, naming the first that does not.
pub(crate) async fn check_external_stores(plan: &Plan) -> anyhow::Result<()> {
    use sticky_client::{ClientOptions, StoreClient};
    let options = ClientOptions {
        request_timeout: std::time::Duration::from_secs(3),
        connect_timeout: std::time::Duration::from_secs(3),
        tls_ca: plan.store_tls_ca.clone(),
        ..ClientOptions::default()
    };
    for s in &plan.external {
        let client = StoreClient::new(&s.url, options.clone())
            .with_context(|| format!("store {}: bad --store-url", s.name))?;
        if let Err(e) = client.ping().await {
            let text = e.to_string();
            let text = text.trim_end_matches('.');
            let hint = if text.contains("certificate") {
                "give --store-tls-ca FILE, the CA that signed its certificate"
            } else if text.contains("NOAUTH") {
                "give its password in the URL (sticky://:PASSWORD@HOST:PORT, \
                 redis://:PASSWORD@HOST:PORT)"
            } else if text.to_ascii_lowercase().contains("authentication") {
                "check the password (and user name) in the URL"
            } else {
                "is it running?"
            };
            bail!(
                "store {} ({}) does not answer PING: {text}; {hint}",
                s.name,
                client.addr()
            );
        }
        eprintln!(
            "store {} is {} (not started by sticky up)",
            s.name,
            client.addr()
        );
    }
    Ok(())
}

/// The name of the app process behind web server `web`.
pub(crate) fn app_name(web: &str) -> String {
    format!("{web}-app")
}

/// The whole cluster.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub(crate) members: Vec<Member>,
    /// Stores given with `--store-url`; then `members` has no store.
    pub(crate) external: Vec<ExternalStore>,
    pub(crate) admin: SocketAddr,
    /// The supervisor's control API (kill, pause, resume, restart).
    pub(crate) supervisor: SocketAddr,
    pub(crate) secret: String,
    /// The password of the stores `sticky up` starts (generated for a new
    /// cluster; `[session] store_password` of a `--config` file).
    pub(crate) store_password: Option<String>,
    replicas: u16,
    mode: Mode,
    /// The app behind each web server (`--app`): then they are sidecars.
    pub(crate) app: Option<AppSpec>,
    /// The shop's certificate chain and key (absolute paths), when it is
    /// served over HTTPS.
    tls: Option<(PathBuf, PathBuf)>,
    /// `[session] store_tls_ca` of a `--config` file: whom TLS stores
    /// are verified against.
    store_tls_ca: Option<PathBuf>,
}

fn local(port: u32) -> anyhow::Result<SocketAddr> {
    let port = u16::try_from(port).context("--port is too high for the ports the cluster needs")?;
    Ok(SocketAddr::from(([127, 0, 0, 1], port)))
}

impl Plan {
    pub(crate) fn new(a: &UpArgs) -> anyhow::Result<Self> {
        let base = u32::from(a.port);
        let mut members = vec![Member {
            name: FIRST_DIRECTOR.into(),
            role: Role::Director,
            addr: local(base)?,
            admin: Some(local(base + 1)?),
        }];
        // Directors 2.. between the supervisor (PORT+2) and the web
        // servers (PORT+11): public PORT+3, +5, +7; admin one above.
        for k in 2..=u32::from(a.directors) {
            let public = base + 3 + 2 * (k - 2);
            members.push(Member {
                name: format!("director{k}"),
                role: Role::Director,
                addr: local(public)?,
                admin: Some(local(public + 1)?),
            });
        }
        for i in 1..=u32::from(a.web + a.standby) {
            members.push(Member {
                name: format!("ws{i}"),
                role: if i > u32::from(a.web) {
                    Role::Standby
                } else {
                    Role::Web
                },
                addr: local(base + 10 + i)?,
                admin: None,
            });
        }
        let mut external = Vec::new();
        for (i, url) in a.store_url.iter().enumerate() {
            external.push(ExternalStore {
                name: format!("s{}", i + 1),
                listen: store_host_port(url)?,
                // The cluster file's `url` is a URL: `HOST:PORT` is a
                // `sticky store`'s.
                url: if url.contains("://") {
                    url.clone()
                } else {
                    format!("sticky://{}", url.trim())
                },
            });
        }
        if external.is_empty() {
            for i in 1..=u32::from(a.stores) {
                members.push(Member {
                    name: format!("s{i}"),
                    role: Role::Store,
                    addr: local(base + 40 + i)?,
                    admin: None,
                });
            }
            if a.replicas > a.stores {
                bail!("--replicas {} needs at least as many --stores", a.replicas);
            }
        } else if usize::from(a.replicas) > external.len() {
            bail!(
                "--replicas {} needs at least as many --store-url",
                a.replicas
            );
        }
        let admin = local(base + 1)?;
        let supervisor = local(base + 2)?;
        let peer_admins: Vec<SocketAddr> = members.iter().skip(1).filter_map(|m| m.admin).collect();
        for addr in members
            .iter()
            .map(|m| m.addr)
            .chain([admin, supervisor])
            .chain(peer_admins)
        {
            if let Err(e) = TcpListener::bind(addr) {
                bail!(
                    "port {} is not free ({e}); is another cluster running? pass --port",
                    addr.port()
                );
            }
        }
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret)
            .map_err(|e| anyhow::anyhow!("no randomness for the cluster secret: {e}"))?;
        // The stores get a password of their own: without one, any local
        // process (or a web page, through the browser) could empty them.
        let mut store_password = [0u8; 24];
        getrandom::fill(&mut store_password)
            .map_err(|e| anyhow::anyhow!("no randomness for the store password: {e}"))?;
        let tls = match (&a.tls_cert, &a.tls_key) {
            (Some(cert), Some(key)) => {
                let absolute = |p: &PathBuf| {
                    std::path::absolute(p)
                        .with_context(|| format!("cannot resolve {}", p.display()))
                };
                Some((absolute(cert)?, absolute(key)?))
            }
            _ => None,
        };
        let store_password = if external.is_empty() {
            Some(hex::encode(store_password))
        } else {
            shared_password(&external)
        };
        let store_tls_ca = match &a.store_tls_ca {
            Some(ca) => {
                let ca = std::path::absolute(ca)
                    .with_context(|| format!("cannot resolve {}", ca.display()))?;
                if let Err(e) = std::fs::metadata(&ca) {
                    bail!("cannot read --store-tls-ca {}: {e}", ca.display());
                }
                Some(ca)
            }
            None => None,
        };
        Ok(Self {
            tls,
            store_tls_ca,
            members,
            external,
            admin,
            supervisor,
            secret: hex::encode(secret),
            store_password,
            replicas: a.replicas,
            mode: a.mode,
            app: None,
        })
    }

    /// The cluster of an existing cluster file (`sticky up --config`):
    /// every `[[web]]` and `[[store]]` without `url` is started here, so
    /// their addresses must be this machine's. The file is used as it is
    /// (not rewritten); `[director] supervisor` is where the control API
    /// listens (the admin port + 1 when absent).
    pub(crate) fn from_file(path: &Path) -> anyhow::Result<Self> {
        let file = sticky_config::ClusterFile::load(path)?;
        let secret = file.secret(path)?;
        let Some(director) = &file.director else {
            bail!(
                "{} has no [director] section: `sticky up` needs one",
                path.display()
            );
        };
        if file.web.is_empty() {
            bail!("{} has no [[web]] server", path.display());
        }
        let supervisor = match director.supervisor {
            Some(a) => a,
            None => SocketAddr::new(
                director.admin.ip(),
                director.admin.port().checked_add(1).with_context(|| {
                    format!("{}: [director] admin port is too high", path.display())
                })?,
            ),
        };
        let mut members: Vec<Member> = director
            .instances()
            .into_iter()
            .map(|d| Member {
                name: d.name,
                role: Role::Director,
                addr: d.listen,
                admin: Some(d.admin),
            })
            .collect();
        for w in &file.web {
            members.push(Member {
                name: w.name.clone(),
                role: if w.standby { Role::Standby } else { Role::Web },
                addr: w.listen,
                admin: None,
            });
        }
        let mut external = Vec::new();
        for s in &file.store {
            match &s.url {
                Some(url) => external.push(ExternalStore {
                    name: s.name.clone(),
                    listen: s.listen,
                    url: url.clone(),
                }),
                None => members.push(Member {
                    name: s.name.clone(),
                    role: Role::Store,
                    addr: s.listen,
                    admin: None,
                }),
            }
        }
        let peer_admins: Vec<SocketAddr> = director.peers.iter().map(|p| p.admin).collect();
        for addr in members
            .iter()
            .map(|m| m.addr)
            .chain([director.admin, supervisor])
            .chain(peer_admins)
        {
            if let Err(e) = TcpListener::bind(addr) {
                bail!(
                    "{addr} (in {}) is not free or not on this machine ({e})",
                    path.display()
                );
            }
        }
        Ok(Self {
            members,
            external,
            admin: director.admin,
            supervisor,
            secret,
            store_password: file.session.store_password.clone(),
            replicas: u16::try_from(file.replicas).unwrap_or(u16::MAX),
            mode: file.mode,
            app: None,
            tls: director.tls_cert.clone().zip(director.tls_key.clone()),
            store_tls_ca: file.session.store_tls_ca.clone(),
        })
    }

    /// `https` when the directors speak TLS, else `http`.
    pub(crate) fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub(crate) fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// Puts `app` behind every web server: one app process each, named
    /// `<web>-app`, on a free loopback port.
    pub(crate) fn add_apps(&mut self, app: AppSpec) -> anyhow::Result<()> {
        let webs: Vec<String> = self
            .members
            .iter()
            .filter(|m| matches!(m.role, Role::Web | Role::Standby))
            .map(|m| m.name.clone())
            .collect();
        for web in webs {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .context("no free loopback port for an app")?
                .port();
            self.members.push(Member {
                name: app_name(&web),
                role: Role::App,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                admin: None,
            });
        }
        self.app = Some(app);
        Ok(())
    }

    /// The app behind web server `web`, with `--app`.
    pub(crate) fn app_of(&self, web: &str) -> Option<&Member> {
        self.app.as_ref()?;
        self.member(&app_name(web))
    }

    /// The cluster file's text.
    pub(crate) fn toml(&self) -> String {
        let mut t = String::new();
        // Writing to a String cannot fail.
        let _ = writeln!(
            t,
            "# Written by `sticky up`.\nsecret = \"{}\"\nreplicas = {}\nmode = \"{}\"\n",
            self.secret, self.replicas, self.mode
        );
        // Generated for the stores `up` starts; with `--store-url`, the
        // stores' own when they share one (`shared_password`).
        let password = self.store_password.as_deref();
        if password.is_some() || self.tls.is_some() || self.store_tls_ca.is_some() {
            let _ = writeln!(t, "[session]");
            if let Some(p) = password {
                let _ = writeln!(t, "store_password = \"{p}\"");
            }
            if let Some(ca) = &self.store_tls_ca {
                // Debug quoting: a TOML basic string (see below).
                let _ = writeln!(
                    t,
                    "# Whom the TLS stores are verified against.\nstore_tls_ca = {:?}",
                    ca.display().to_string()
                );
            }
            if self.tls.is_some() {
                let _ = writeln!(t, "# The shop is served over HTTPS.\ncookie_secure = true");
            }
            let _ = writeln!(t);
        }
        for m in &self.members {
            match m.role {
                Role::Director if m.name != FIRST_DIRECTOR => {
                    let _ = writeln!(
                        t,
                        "[[director.peers]]\nname = \"{}\"\nlisten = \"{}\"\nadmin = \"{}\"\n",
                        m.name,
                        m.addr,
                        m.admin.unwrap_or(self.admin)
                    );
                }
                Role::Director => {
                    let _ = writeln!(
                        t,
                        "[director]\nlisten = \"{}\"\nadmin = \"{}\"\n\
                         # The `sticky up` supervisor: the dashboard's kill, pause,\n\
                         # resume and restart buttons. Remove it across machines.\n\
                         supervisor = \"{}\"\n",
                        m.addr, self.admin, self.supervisor
                    );
                    if let Some((cert, key)) = &self.tls {
                        // Debug quoting is a valid TOML basic string for a
                        // path without control characters.
                        let _ = writeln!(
                            t,
                            "# HTTPS (HTTP/2 and HTTP/1.1); reloaded on SIGHUP.\n\
                             tls_cert = {:?}\ntls_key = {:?}\n",
                            cert.display().to_string(),
                            key.display().to_string()
                        );
                    }
                }
                Role::Web | Role::Standby => {
                    let _ = writeln!(
                        t,
                        "[[web]]\nname = \"{}\"\nlisten = \"{}\"\nstandby = {}\n",
                        m.name,
                        m.addr,
                        m.role == Role::Standby
                    );
                }
                Role::Store => {
                    let _ = writeln!(
                        t,
                        "[[store]]\nname = \"{}\"\nlisten = \"{}\"",
                        m.name, m.addr
                    );
                    if let Some(p) = password {
                        let _ = writeln!(t, "requirepass = \"{p}\"");
                    }
                    let _ = writeln!(t);
                }
                // Not a cluster member: its web server alone knows it.
                Role::App => {}
            }
        }
        for s in &self.external {
            // Debug quoting is a valid TOML basic string for a URL without
            // control characters (checked by `store_host_port`).
            let _ = writeln!(
                t,
                "[[store]]\nname = \"{}\"\nlisten = \"{}\"\nurl = {:?}\n",
                s.name, s.listen, s.url
            );
        }
        t
    }

    /// Writes the cluster file into `dir` (readable by its owner only: it
    /// holds the secret) and returns its path.
    pub(crate) fn write(&self, dir: &Path) -> anyhow::Result<PathBuf> {
        let path = dir.join("cluster.toml");
        std::fs::write(&path, self.toml())
            .with_context(|| format!("cannot write {}", path.display()))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("cannot restrict {}", path.display()))?;
        }
        Ok(path)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn store_urls_give_the_host_and_port_to_look_at() {
        let a = |u: &str| store_host_port(u).unwrap().to_string();
        assert_eq!(a("redis://127.0.0.1:6390"), "127.0.0.1:6390");
        assert_eq!(
            a("redis://u:p@ss@127.0.0.1:6390/?protocol=resp3"),
            "127.0.0.1:6390"
        );
        assert_eq!(a("redis://127.0.0.1"), "127.0.0.1:6379");
        assert_eq!(a("redis://[::1]:7000/"), "[::1]:7000");
        assert_eq!(
            a("redis+cluster://127.0.0.1:7001,127.0.0.1:7002"),
            "127.0.0.1:7001"
        );
        assert_eq!(a("127.0.0.1:7379"), "127.0.0.1:7379");
        for bad in ["127.0.0.1", "redis://:pw@", "redis://a\nb:1"] {
            let e = store_host_port(bad).unwrap_err().to_string();
            assert!(!e.contains("pw"), "{e}");
        }
    }

    #[test]
    fn external_stores_are_written_with_their_url() {
        let plan = Plan {
            members: Vec::new(),
            external: vec![ExternalStore {
                name: "s1".into(),
                listen: "127.0.0.1:6390".parse().unwrap(),
                url: "redis://u:p\"w@127.0.0.1:6390".into(),
            }],
            admin: "127.0.0.1:1".parse().unwrap(),
            supervisor: "127.0.0.1:2".parse().unwrap(),
            secret: "x".repeat(64),
            store_password: shared_password(&[ExternalStore {
                name: "s1".into(),
                listen: "127.0.0.1:6390".parse().unwrap(),
                url: "redis://u:p\"w@127.0.0.1:6390".into(),
            }]),
            replicas: 1,
            mode: Mode::Sync,
            app: None,
            tls: None,
            store_tls_ca: None,
        };
        assert_eq!(plan.store_password, None, "a user name: no shared password");
        let text = plan.toml();
        let file = sticky_config::ClusterFile::parse(&text, Path::new("c.toml")).unwrap();
        assert_eq!(file.store.len(), 1);
        assert_eq!(file.store[0].client_addr(), "redis://u:p\"w@127.0.0.1:6390");
        assert_eq!(file.store[0].listen.port(), 6390);
        assert!(!format!("{:?}", plan.external).contains("p\\\"w"));
    }

    #[test]
    fn store_urls_sharing_a_password_give_it_to_the_director() {
        let ext = |urls: &[&str]| -> Vec<ExternalStore> {
            urls.iter()
                .map(|u| ExternalStore {
                    name: "s".into(),
                    listen: "127.0.0.1:1".parse().unwrap(),
                    url: (*u).into(),
                })
                .collect()
        };
        assert_eq!(url_credentials("sticky://:pw@h:1"), (None, Some("pw")));
        assert_eq!(
            url_credentials("redis://u:p@w@h:1/?x=1"),
            (Some("u"), Some("p@w"))
        );
        assert_eq!(url_credentials("sticky://h:1"), (None, None));
        let same = ext(&["sticky://:pw@127.0.0.1:1", "redis://:pw@127.0.0.1:2"]);
        assert_eq!(shared_password(&same).as_deref(), Some("pw"));
        let escaped = ext(&["sticky://:p%40ss%2Fw@127.0.0.1:1"]);
        assert_eq!(shared_password(&escaped).as_deref(), Some("p@ss/w"));
        assert_eq!(percent_decode("a%zz"), None);
        assert_eq!(shared_password(&ext(&["sticky://127.0.0.1:1"])), None);
        let differ = ext(&["sticky://:a@127.0.0.1:1", "sticky://:b@127.0.0.1:2"]);
        assert_eq!(shared_password(&differ), None);
    }

    #[test]
    fn stores_it_starts_get_a_password_the_web_servers_know() {
        let plan = Plan {
            members: vec![Member {
                name: "s1".into(),
                role: Role::Store,
                addr: "127.0.0.1:7001".parse().unwrap(),
                admin: None,
            }],
            external: Vec::new(),
            admin: "127.0.0.1:1".parse().unwrap(),
            supervisor: "127.0.0.1:2".parse().unwrap(),
            secret: "x".repeat(64),
            store_password: Some("p4ss".into()),
            replicas: 1,
            mode: Mode::Sync,
            app: None,
            tls: None,
            store_tls_ca: None,
        };
        let file = sticky_config::ClusterFile::parse(&plan.toml(), Path::new("c.toml")).unwrap();
        assert_eq!(file.session.store_password.as_deref(), Some("p4ss"));
        assert_eq!(file.store[0].requirepass.as_deref(), Some("p4ss"));
    }

    #[test]
    fn a_tls_shop_gets_its_files_and_secure_cookies() {
        let plan = Plan {
            members: vec![Member {
                name: FIRST_DIRECTOR.into(),
                role: Role::Director,
                addr: "127.0.0.1:8443".parse().unwrap(),
                admin: Some("127.0.0.1:1".parse().unwrap()),
            }],
            external: Vec::new(),
            admin: "127.0.0.1:1".parse().unwrap(),
            supervisor: "127.0.0.1:2".parse().unwrap(),
            secret: "x".repeat(64),
            store_password: None,
            replicas: 1,
            mode: Mode::Sync,
            app: None,
            tls: Some(("/etc/a b/chain.pem".into(), "/etc/a b/key.pem".into())),
            store_tls_ca: None,
        };
        assert_eq!(plan.scheme(), "https");
        let file = sticky_config::ClusterFile::parse(&plan.toml(), Path::new("c.toml")).unwrap();
        let director = file.director.unwrap();
        assert_eq!(
            director.tls_cert.as_deref(),
            Some(Path::new("/etc/a b/chain.pem"))
        );
        assert_eq!(
            director.tls_key.as_deref(),
            Some(Path::new("/etc/a b/key.pem"))
        );
        assert!(
            file.session.cookie_secure,
            "the session cookie is Secure too"
        );
    }
}
