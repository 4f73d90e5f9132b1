//! Whole clusters: a cluster file ([`ClusterConfig`]) and stores of either
//! backend with `sticky web` processes started from it ([`Cluster`]);
//! `sticky bench` against a web server ([`run_bench`]); the cluster's
//! secrets (admin token, signed session cookies).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::backend::{StoreBackend, StoreNode};
use crate::process::{free_port, temp_path, Sticky};
use crate::random::random_hex;
use crate::resp;
use crate::web::{admin_token, WebProcess};

/// The session cookie value for the 32-hex-character `id` signed with
/// `secret`: `<id>.<first 128 bits of HMAC-SHA256(secret, "sticky/sid/v1" || id bytes), hex>`.
pub fn sign_cookie(secret: &str, id_hex: &str) -> String {
    use hmac::{Hmac, Mac};
    let id = hex::decode(id_hex).expect("the id is hex");
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(b"sticky/sid/v1");
    mac.update(&id);
    let tag = mac.finalize().into_bytes();
    format!("{id_hex}.{}", hex::encode(&tag[..16]))
}

/// Builder and result of a cluster file in a temporary directory.
///
/// ```ignore
/// let cfg = ClusterConfig::new(&[s1.addr(), s2.addr()], &["ws1", "ws2"])
///     .replicas(1)
///     .session("lease_ms", "1000")
///     .write();
/// let ws1 = WebProcess::start(STICKY, cfg.path(), "ws1");
/// ```
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    secret: String,
    replicas: usize,
    mode: String,
    session: Vec<(String, String)>,
    webs: Vec<(String, SocketAddr)>,
    stores: Vec<(String, SocketAddr)>,
    /// `url` of the `[[store]]` tables that have one, by store name.
    store_urls: Vec<(String, String)>,
    path: Option<PathBuf>,
}

impl ClusterConfig {
    /// Stores named `s1`, `s2`... at `stores`; web servers called `webs`,
    /// each on a free loopback port; a fresh random secret; R=2, sync mode.
    pub fn new(stores: &[SocketAddr], webs: &[&str]) -> Self {
        let stores = stores
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("s{}", i + 1), *a))
            .collect();
        let webs = webs
            .iter()
            .map(|n| {
                (
                    (*n).to_owned(),
                    SocketAddr::from(([127, 0, 0, 1], free_port())),
                )
            })
            .collect();
        Self {
            secret: format!("test-secret-{}", random_hex(40)),
            replicas: 2,
            mode: "sync".into(),
            session: Vec::new(),
            webs,
            stores,
            store_urls: Vec::new(),
            path: None,
        }
    }

    /// Store `name` (`s1`...) gets `url = URL`: web servers connect with it
    /// instead of `listen` (e.g. `redis://127.0.0.1:6390` for Redis).
    pub fn store_url(mut self, name: &str, url: &str) -> Self {
        self.store_urls.push((name.into(), url.into()));
        self
    }

    /// Replicas per session (1 or 2).
    pub fn replicas(mut self, r: usize) -> Self {
        self.replicas = r;
        self
    }

    /// `sync` or `async`.
    pub fn mode(mut self, mode: &str) -> Self {
        self.mode = mode.into();
        self
    }

    /// A `[session]` setting; `value` is a TOML literal (`1000`, `"1KiB"`).
    /// Unless `lease_ms` is set, it is one hour: no director renews the
    /// lease that [`WebProcess::start`]'s health check arms. Unless
    /// `slow_store_ms` is set, it is 0 (writes wait for every replica), so
    /// that copies can be counted on a loaded machine.
    pub fn session(mut self, key: &str, value: &str) -> Self {
        self.session.push((key.into(), value.into()));
        self
    }

    /// Web server `name` listens on `port` instead of a free one.
    pub fn web_port(mut self, name: &str, port: u16) -> Self {
        for w in &mut self.webs {
            if w.0 == name {
                w.1 = SocketAddr::from(([127, 0, 0, 1], port));
            }
        }
        self
    }

    /// Store `name` (`s1`...) is at `addr` in this file: e.g. an address
    /// where nothing listens, for a web server that cannot reach it.
    pub fn store_addr(mut self, name: &str, addr: SocketAddr) -> Self {
        for s in &mut self.stores {
            if s.0 == name {
                s.1 = addr;
            }
        }
        self
    }

    /// The TOML text.
    pub fn toml(&self) -> String {
        let mut t = format!(
            "secret = {:?}\nreplicas = {}\nmode = {:?}\n\n[session]\n",
            self.secret, self.replicas, self.mode
        );
        for (k, v) in &self.session {
            t.push_str(&format!("{k} = {v}\n"));
        }
        if !self.session.iter().any(|(k, _)| k == "lease_ms") {
            // No director renews the lease that the first health check
            // arms; tests that want one set it (and use a `Heartbeat`).
            t.push_str("lease_ms = 3600000\n");
        }
        if !self.session.iter().any(|(k, _)| k == "slow_store_ms") {
            // Many tests count the copies of each version. A write passes
            // over a store slower than `slow_store_ms` (50 ms by default)
            // and leaves a third copy, which a loaded test machine's
            // scheduling delays can cause; tests of that behaviour set it.
            t.push_str("slow_store_ms = 0\n");
        }
        for (name, addr) in &self.webs {
            t.push_str(&format!(
                "\n[[web]]\nname = {name:?}\nlisten = \"{addr}\"\n"
            ));
        }
        for (name, addr) in &self.stores {
            t.push_str(&format!(
                "\n[[store]]\nname = {name:?}\nlisten = \"{addr}\"\n"
            ));
            if let Some((_, url)) = self.store_urls.iter().find(|(n, _)| n == name) {
                t.push_str(&format!("url = {url:?}\n"));
            }
        }
        t
    }

    /// Writes the file (once); returns the finished config.
    pub fn write(mut self) -> Self {
        let path = temp_path("sticky-cluster", "toml");
        std::fs::write(&path, self.toml()).expect("write the cluster file");
        self.path = Some(path);
        self
    }

    /// The file's path; panics if [`write`](Self::write) was not called.
    pub fn path(&self) -> &Path {
        self.path
            .as_deref()
            .expect("ClusterConfig::write was not called")
    }

    /// The cluster secret.
    pub fn secret(&self) -> &str {
        &self.secret
    }

    /// The admin token derived from the secret.
    pub fn admin_token(&self) -> String {
        admin_token(&self.secret)
    }

    /// The configured address of web server `name`.
    pub fn web_addr(&self, name: &str) -> SocketAddr {
        self.webs
            .iter()
            .find(|w| w.0 == name)
            .map(|w| w.1)
            .unwrap_or_else(|| panic!("no web server {name:?} in the cluster file"))
    }
}

impl Drop for ClusterConfig {
    fn drop(&mut self) {
        if let Some(p) = &self.path {
            if std::thread::panicking() {
                eprintln!("cluster file kept: {}\n{}", p.display(), self.toml());
            } else {
                let _ = std::fs::remove_file(p);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A whole cluster
// ---------------------------------------------------------------------------

/// Stores of one backend, a cluster file naming them, and web servers
/// started from it. Everything is killed on drop.
pub struct Cluster {
    /// The web servers, in the order given.
    pub webs: Vec<WebProcess>,
    /// The stores `s1`, `s2`... in order.
    pub stores: Vec<StoreNode>,
    /// The cluster file.
    pub config: ClusterConfig,
    sticky: Sticky,
    backend: StoreBackend,
}

impl Cluster {
    /// Starts `stores` `sticky store`s, writes a cluster file for them and
    /// the web servers `webs` (adjusted by `configure`: replicas, mode,
    /// `[session]` settings), and starts the web servers.
    pub fn start(
        sticky: Sticky,
        stores: usize,
        webs: &[&str],
        configure: impl FnOnce(ClusterConfig) -> ClusterConfig,
    ) -> Cluster {
        Self::start_on(sticky, StoreBackend::Sticky, stores, webs, configure)
    }

    /// [`start`](Self::start) with stores of `backend`: for Redis, the
    /// cluster file names each with `url = "redis://..."`.
    pub fn start_on(
        sticky: Sticky,
        backend: StoreBackend,
        stores: usize,
        webs: &[&str],
        configure: impl FnOnce(ClusterConfig) -> ClusterConfig,
    ) -> Cluster {
        let stores: Vec<StoreNode> = (0..stores).map(|_| backend.start_store(sticky)).collect();
        let addrs: Vec<SocketAddr> = stores.iter().map(StoreNode::addr).collect();
        let mut config = ClusterConfig::new(&addrs, webs);
        for (i, s) in stores.iter().enumerate() {
            if let Some(url) = s.url() {
                config = config.store_url(&format!("s{}", i + 1), &url);
            }
        }
        let config = configure(config).write();
        Cluster {
            webs: start_webs(sticky, &config, webs),
            stores,
            config,
            sticky,
            backend,
        }
    }

    /// The stores' backend.
    pub fn backend(&self) -> StoreBackend {
        self.backend
    }

    /// The web server called `name`.
    pub fn web(&self, name: &str) -> &WebProcess {
        self.webs
            .iter()
            .find(|w| w.name() == name)
            .unwrap_or_else(|| panic!("no web server {name:?}"))
    }

    /// The web server called `name`, mutably (to kill it).
    pub fn web_mut(&mut self, name: &str) -> &mut WebProcess {
        self.webs
            .iter_mut()
            .find(|w| w.name() == name)
            .unwrap_or_else(|| panic!("no web server {name:?}"))
    }

    /// The stores' addresses, `s1` first.
    pub fn store_addrs(&self) -> Vec<SocketAddr> {
        self.stores.iter().map(StoreNode::addr).collect()
    }

    /// Starts store `i` (killed before) again, empty, on its port, where
    /// the web servers expect it.
    pub fn restart_store(&mut self, i: usize) {
        let port = self.stores[i].port();
        self.stores[i] = self.backend.start_store_on_port(self.sticky, port);
    }

    /// How many keys (session copies) the stores hold together (`DBSIZE`).
    pub fn stored_keys(&self) -> i64 {
        self.stores
            .iter()
            .map(|s| {
                resp::client(s.addr(), None)
                    .cmd_str("DBSIZE")
                    .as_int()
                    .expect("DBSIZE answers an integer")
            })
            .sum()
    }
}

/// Starts the web servers `names` of the (written) cluster file `config`.
fn start_webs(sticky: Sticky, config: &ClusterConfig, names: &[&str]) -> Vec<WebProcess> {
    names
        .iter()
        .map(|n| WebProcess::start(sticky, config.path(), n))
        .collect()
}

/// Runs `sticky bench --url http://WEB ARGS... --json FILE` against `web`
/// and panics (showing its output and the end of `web`'s log) unless it
/// succeeds: what it printed on standard output, and the `--json` report.
pub fn run_bench(sticky: Sticky, web: &WebProcess, args: &[&str]) -> (String, Value) {
    let json_path = temp_path("sticky-bench", "json");
    let out = sticky
        .command()
        .args(["bench", "--url", &format!("http://{}", web.addr())])
        .args(args)
        .arg("--json")
        .arg(&json_path)
        .output()
        .expect("run sticky bench");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "sticky bench failed ({}):\n{stdout}\n{stderr}\nweb log:\n{}",
        out.status,
        web.log_tail(40)
    );
    let text = std::fs::read_to_string(&json_path).expect("the --json file");
    let _ = std::fs::remove_file(&json_path);
    let report = serde_json::from_str(&text).expect("the --json file is JSON");
    (stdout, report)
}
