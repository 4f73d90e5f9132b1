//! [`State`]: what the listeners, the health checkers, the probes and the
//! admin API share: the configuration, the server list and the routing
//! table derived from it, the counters, the store board. It changes the
//! server list (reloads, admin states) and publishes the table; it starts
//! nothing itself: health checkers are started through the hook the
//! [`Director`](crate::Director) facade sets while it serves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::HeaderValue;

use crate::backend::Backend;
use crate::config::{check_servers, DirectorConfig, ServerSpec};
use crate::history::{EventKind, Recorder};
use crate::route_cookie::RouteSigner;
use crate::routing::Table;
use crate::status::{AdminState, ClusterStatus, DirectorInstance, DirectorTotals, ServerStatus};
use crate::stores::StoreBoard;
use crate::tls::Tls;
use crate::DirectorError;
use sticky_config::DirectorPeer;

/// Produces the current server list, for `POST /api/reload` and SIGHUP.
pub type Reloader = Arc<dyn Fn() -> Result<Vec<ServerSpec>, DirectorError> + Send + Sync + 'static>;

/// Starts the health checker of one server.
pub(crate) type StartChecks = Arc<dyn Fn(&Arc<Backend>) + Send + Sync>;

/// Director-wide counters.
#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) connections: AtomicU64,
    pub(crate) admin_connections: AtomicU64,
    pub(crate) connections_total: AtomicU64,
    pub(crate) rejected_connections: AtomicU64,
    pub(crate) at_connection_limit: AtomicBool,
    pub(crate) requests: AtomicU64,
    /// Responses by class: 1xx to 5xx.
    pub(crate) responses: [AtomicU64; 5],
    pub(crate) gateway_errors: AtomicU64,
    pub(crate) failovers: AtomicU64,
    pub(crate) retries: AtomicU64,
    pub(crate) reserved_rejected: AtomicU64,
    pub(crate) upstream_refused: AtomicU64,
    pub(crate) upstream_connect_failed: AtomicU64,
    pub(crate) upstream_send_failed: AtomicU64,
    pub(crate) upstream_timeouts: AtomicU64,
    /// Requests (a wait for a head, a body, a tunnel) ended because their
    /// server was marked down (`end_requests_on_down`); shared with every
    /// `Backend`, which counts them (`Backend::count_ended_on_down`).
    pub(crate) upstream_ended_on_down: Arc<AtomicU64>,
    pub(crate) tunnels: AtomicU64,
    /// `421` answers naming the owner, re-sent there.
    pub(crate) misdirected_resent: AtomicU64,
    /// `421` answers (or the owner's failure after one) turned into `503`.
    pub(crate) misdirected_unavailable: AtomicU64,
    /// `421` answers naming an owner unreachable from here, relayed to a
    /// peer director.
    pub(crate) misdirected_relayed: AtomicU64,
    /// Requests relayed to a peer director, its owner unreachable here
    /// (`relay_to_peers`).
    pub(crate) relayed: AtomicU64,
    /// Relays that could not reach a peer director: `503`.
    pub(crate) relay_failed: AtomicU64,
    /// Requests served by the fast path (`fast_path.rs`).
    pub(crate) fast_path_requests: AtomicU64,
    /// Client connections the fast path handed to the general path.
    pub(crate) handovers: AtomicU64,
    /// HTTP/2 requests forwarded on a raw HTTP/1.1 connection
    /// (`raw_forward.rs`) rather than hyper's client.
    pub(crate) h2_raw_requests: AtomicU64,
    /// TLS handshakes that failed or timed out.
    pub(crate) tls_handshake_failed: AtomicU64,
    /// TLS connections that chose HTTP/2 by ALPN.
    pub(crate) h2_connections: AtomicU64,
    /// From a request's head to the response head sent back.
    pub(crate) response_time: crate::latency::Histogram,
}

impl Stats {
    pub(crate) fn count_response(&self, status: http::StatusCode) {
        let class = usize::from(status.as_u16() / 100).clamp(1, 5) - 1;
        self.responses[class].fetch_add(1, Ordering::Relaxed);
    }
}

/// Everything the listeners, the health checkers and the admin API share.
pub(crate) struct State {
    pub(crate) config: DirectorConfig,
    pub(crate) signer: RouteSigner,
    /// `Bearer <admin token>` for the control endpoints.
    pub(crate) token: HeaderValue,
    pub(crate) table: ArcSwap<Table>,
    /// The authoritative server list; the table is derived from it.
    backends: Mutex<Vec<Arc<Backend>>>,
    pub(crate) rotation: AtomicUsize,
    pub(crate) stats: Stats,
    pub(crate) started: Instant,
    /// Starts a server's health checker, while serving: set by the
    /// [`Director`](crate::Director) facade, which owns what runs.
    checks: Mutex<Option<StartChecks>>,
    reloader: Mutex<Option<Reloader>>,
    public_addr: Mutex<Option<SocketAddr>>,
    admin_addr: Mutex<SocketAddr>,
    /// The session stores' last known states.
    pub(crate) stores: StoreBoard,
    /// The dashboard's last 15 minutes: samples and events.
    pub(crate) history: Recorder,
    /// Each peer director's last look ([`PEER_UP`], [`PEER_DOWN`], 0 not
    /// looked at yet), in `config.peers` order.
    pub(crate) peers_seen: Box<[AtomicU8]>,
    /// Where the peer directors take relayed requests (their relay or
    /// public listener), each with its index in `config.peers` (and so in
    /// `peers_seen`), in that order; a peer without one (TLS here and no
    /// `relay_listen` there) is left out. Empty when relaying is off.
    pub(crate) relay_peers: Box<[(usize, Arc<Backend>)]>,
    /// The public listener's certificate, when it speaks TLS.
    pub(crate) tls: Option<Tls>,
    /// The `Strict-Transport-Security` value of HTTPS responses, if any.
    pub(crate) hsts: Option<HeaderValue>,
    /// The HTTP-to-HTTPS redirect listener, until worker 0 takes it.
    redirect: Mutex<Option<std::net::TcpListener>>,
    /// The listener for requests relayed by peers, until worker 0 takes it.
    relay: Mutex<Option<std::net::TcpListener>>,
}

/// A peer director answered its last look.
/// Where each peer director takes relayed requests, with its index in
/// `peers`: its relay listener, or its public one when that speaks plain
/// HTTP (`tls` is whether this director's does: the peers share the
/// setting). A peer with neither is left out.
fn relay_targets(peers: &[DirectorPeer], tls: bool) -> Vec<(usize, SocketAddr)> {
    peers
        .iter()
        .enumerate()
        .filter_map(|(i, p)| Some((i, p.relay_listen.or((!tls).then_some(p.listen))?)))
        .collect()
}

pub(crate) const PEER_UP: u8 = 1;
/// A peer director did not answer its last look.
pub(crate) const PEER_DOWN: u8 = 2;

impl State {
    /// The state for `config`: every server down until checked, nothing
    /// running.
    pub(crate) fn new(mut config: DirectorConfig) -> Result<Self, DirectorError> {
        config.check()?;
        let tls = match &config.tls {
            Some(files) => Some(Tls::load(files.clone())?),
            None => None,
        };
        // Every cookie the director sets over TLS is `Secure`.
        config.cookie_secure |= tls.is_some();
        let hsts = (tls.is_some() && !config.hsts_max_age.is_zero()).then(|| {
            let mut value = format!("max-age={}", config.hsts_max_age.as_secs());
            if config.hsts_include_subdomains {
                value.push_str("; includeSubDomains");
            }
            HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("max-age=0"))
        });
        let signer = RouteSigner::new(config.secret());
        let token = format!(
            "Bearer {}",
            sticky_proto::control::admin_token(config.secret())
        );
        let token = HeaderValue::from_str(&token)
            .map_err(|_| DirectorError::Config("unusable admin token".into()))?;
        let stats = Stats::default();
        let backends: Vec<Arc<Backend>> = config
            .servers
            .iter()
            .map(|s| {
                let ended_on_down = Arc::clone(&stats.upstream_ended_on_down);
                Arc::new(Backend::new(s, &config, &signer, ended_on_down))
            })
            .collect();
        // Where each peer takes relayed requests: its relay listener, or
        // its public one when that speaks plain HTTP (no TLS here, so none
        // there: the peers share this section's settings).
        let relay_peers: Box<[(usize, Arc<Backend>)]> = if config.relay_to_peers {
            relay_targets(&config.peers, config.tls.is_some())
                .into_iter()
                .map(|(i, at)| {
                    let ended_on_down = Arc::clone(&stats.upstream_ended_on_down);
                    let name = &config.peers[i].name;
                    let backend = Backend::peer(name, at, &config, &signer, ended_on_down);
                    (i, Arc::new(backend))
                })
                .collect()
        } else {
            Box::default()
        };
        if config.relay_to_peers && relay_peers.len() < config.peers.len() {
            tracing::info!(
                relaying_to = relay_peers.len(),
                peers = config.peers.len(),
                "requests are relayed only to peer directors with a relay_listen: the public listener speaks TLS"
            );
        }
        let table = ArcSwap::from_pointee(Table::build(&backends));
        let stores = StoreBoard::new(&config.stores);
        if backends.is_empty() {
            tracing::warn!("no [[web]] servers configured: every request will get 503");
        }
        let admin_addr = config.admin;
        let history = Recorder::new(config.history_interval);
        let peers_seen = config.peers.iter().map(|_| AtomicU8::new(0)).collect();
        Ok(Self {
            peers_seen,
            relay_peers,
            tls,
            hsts,
            redirect: Mutex::new(None),
            relay: Mutex::new(None),
            config,
            signer,
            token,
            table,
            backends: Mutex::new(backends),
            rotation: AtomicUsize::new(0),
            stats,
            started: Instant::now(),
            checks: Mutex::new(None),
            reloader: Mutex::new(None),
            public_addr: Mutex::new(None),
            admin_addr: Mutex::new(admin_addr),
            stores,
            history,
        })
    }

    /// Rebuilds the routing table from the servers' current states.
    pub(crate) fn publish(&self) {
        let backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
        self.table.store(Arc::new(Table::build(&backends)));
    }

    pub(crate) fn backends(&self) -> Vec<Arc<Backend>> {
        self.backends
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn backend(&self, name: &str) -> Result<Arc<Backend>, DirectorError> {
        self.backends()
            .into_iter()
            .find(|b| b.name == name)
            .ok_or_else(|| DirectorError::UnknownServer(name.chars().take(64).collect()))
    }

    /// Between the start and the end of
    /// [`Director::serve`](crate::Director::serve) or
    /// [`Director::run`](crate::Director::run).
    pub(crate) fn is_serving(&self) -> bool {
        self.checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Sets (while serving) or clears how health checkers are started.
    pub(crate) fn set_checks(&self, checks: Option<StartChecks>) {
        *self.checks.lock().unwrap_or_else(PoisonError::into_inner) = checks;
    }

    /// Starts the health checker of `backend`, if serving.
    pub(crate) fn spawn_health(&self, backend: &Arc<Backend>) {
        let checks = self
            .checks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(start) = checks {
            start(backend);
        }
    }

    /// Sets where [`reload`](Self::reload) gets the server list from.
    pub(crate) fn set_reloader(&self, reloader: Reloader) {
        *self.reloader.lock().unwrap_or_else(PoisonError::into_inner) = Some(reloader);
    }

    /// The public listener's address, once serving.
    pub(crate) fn public_addr(&self) -> Option<SocketAddr> {
        *self
            .public_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Sets the listeners' addresses shown in the status.
    pub(crate) fn set_addrs(&self, public: SocketAddr, admin: SocketAddr) {
        *self
            .public_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(public);
        *self
            .admin_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = admin;
    }

    pub(crate) fn set_admin(
        self: &Arc<Self>,
        name: &str,
        state: AdminState,
    ) -> Result<ServerStatus, DirectorError> {
        let backend = self.backend(name)?;
        let before = backend.set_admin(state);
        if before != state {
            if state == AdminState::Evacuating {
                // Coming back from an evacuation is coming back from "down":
                // the server must show a new epoch first.
                let mut h = backend.health();
                if h.fence_from.is_none() {
                    h.fence_from = h.epoch;
                }
            }
            tracing::info!(server = %backend.name, from = before.as_str(), to = state.as_str(), "admin state changed");
            let what = match state {
                AdminState::Enabled => "enabled: back to normal",
                AdminState::Draining => "drained: no new clients",
                AdminState::Evacuating => "evacuated: every client moves to another server",
            };
            self.history.event(
                EventKind::Admin,
                &backend.name,
                format!("{what} (was {})", before.as_str()),
            );
            self.publish();
            if state == AdminState::Enabled {
                backend.wake.notify_one();
            }
        }
        Ok(backend.status())
    }

    pub(crate) fn reload_with(
        self: &Arc<Self>,
        specs: Vec<ServerSpec>,
    ) -> Result<ReloadSummary, DirectorError> {
        check_servers(&specs).map_err(|e| DirectorError::Reload(e.to_string()))?;
        let mut summary = ReloadSummary::default();
        let mut spawn = Vec::new();
        {
            let mut backends = self.backends.lock().unwrap_or_else(PoisonError::into_inner);
            let mut old: HashMap<String, Arc<Backend>> =
                backends.drain(..).map(|b| (b.name.clone(), b)).collect();
            for spec in &specs {
                match old.remove(&spec.name) {
                    Some(b) if b.addr == spec.addr => {
                        if b.update(spec) {
                            summary.changed.push(spec.name.clone());
                        }
                        backends.push(b);
                    }
                    previous => {
                        if let Some(p) = previous {
                            p.retired.store(true, Ordering::Relaxed);
                            summary.changed.push(spec.name.clone());
                        } else {
                            summary.added.push(spec.name.clone());
                        }
                        let b = Arc::new(Backend::new(
                            spec,
                            &self.config,
                            &self.signer,
                            Arc::clone(&self.stats.upstream_ended_on_down),
                        ));
                        spawn.push(Arc::clone(&b));
                        backends.push(b);
                    }
                }
            }
            for (name, b) in old {
                b.retired.store(true, Ordering::Relaxed);
                summary.removed.push(name);
            }
            self.table.store(Arc::new(Table::build(&backends)));
        }
        for b in &spawn {
            self.spawn_health(b);
        }
        summary.servers = specs.len();
        self.history.event(
            EventKind::Reload,
            &self.config.name,
            format!(
                "server list reloaded: {} servers, {} added, {} removed, {} changed",
                summary.servers,
                summary.added.len(),
                summary.removed.len(),
                summary.changed.len()
            ),
        );
        tracing::info!(
            servers = summary.servers,
            added = ?summary.added,
            removed = ?summary.removed,
            changed = ?summary.changed,
            "server list reloaded"
        );
        Ok(summary)
    }

    /// Whether a reloader is set (`Director::with_reloader`).
    pub(crate) fn has_reloader(&self) -> bool {
        self.reloader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    /// Sets the redirect listener worker 0 serves.
    pub(crate) fn set_redirect(&self, listener: std::net::TcpListener) {
        *self.redirect.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// The redirect listener, once.
    pub(crate) fn take_redirect(&self) -> Option<std::net::TcpListener> {
        self.redirect
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Sets the relay listener worker 0 serves.
    pub(crate) fn set_relay(&self, listener: std::net::TcpListener) {
        *self.relay.lock().unwrap_or_else(PoisonError::into_inner) = Some(listener);
    }

    /// The relay listener, once.
    pub(crate) fn take_relay(&self) -> Option<std::net::TcpListener> {
        self.relay
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Re-reads the TLS certificate and key, if the public listener speaks
    /// TLS: `Ok(true)` when reloaded, `Ok(false)` without TLS; on error the
    /// old certificate stays in force.
    pub(crate) fn reload_tls(&self) -> Result<bool, DirectorError> {
        match &self.tls {
            Some(tls) => tls.reload().map(|()| true),
            None => Ok(false),
        }
    }

    pub(crate) fn reload(self: &Arc<Self>) -> Result<ReloadSummary, DirectorError> {
        let reloader = self
            .reloader
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| {
                DirectorError::Reload("no configuration source to reload from".into())
            })?;
        let specs = reloader().map_err(|e| match e {
            DirectorError::Reload(m) => DirectorError::Reload(m),
            other => DirectorError::Reload(other.to_string()),
        })?;
        self.reload_with(specs)
    }

    /// This director and its peers.
    fn directors(&self) -> Vec<DirectorInstance> {
        let me = DirectorInstance {
            name: self.config.name.clone(),
            listen: *self
                .public_addr
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            admin: *self
                .admin_addr
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
            this: true,
            up: None,
        };
        let peers = self
            .config
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| DirectorInstance {
                name: p.name.clone(),
                listen: Some(p.listen),
                admin: p.admin,
                this: false,
                up: match self.peers_seen.get(i).map(|a| a.load(Ordering::Relaxed)) {
                    Some(PEER_UP) => Some(true),
                    Some(PEER_DOWN) => Some(false),
                    _ => None,
                },
            });
        std::iter::once(me).chain(peers).collect()
    }

    pub(crate) fn status(&self) -> ClusterStatus {
        let servers: Vec<ServerStatus> = self.backends().iter().map(|b| b.status()).collect();
        let s = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        // Before the literal: it holds the public address's lock to its end.
        let directors = self.directors();
        ClusterStatus {
            director: DirectorTotals {
                listen: *self
                    .public_addr
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner),
                uptime_secs: self.started.elapsed().as_secs(),
                connections: load(&s.connections),
                rejected_connections: load(&s.rejected_connections),
                requests: load(&s.requests),
                gateway_errors: load(&s.gateway_errors),
                failovers: load(&s.failovers),
                retries: load(&s.retries),
                servers_up: self.table.load().servers_up,
                response_times: s.response_time.snapshot(),
            },
            servers,
            stores: self.stores.status(),
            directors,
        }
    }
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ReloadSummary {
    /// Servers in the new list.
    pub servers: usize,
    /// Names new to the list.
    pub added: Vec<String>,
    /// Names no longer in the list.
    pub removed: Vec<String>,
    /// Names whose address, role or weight changed (a new address starts
    /// with a fresh state: down until checked).
    pub changed: Vec<String>,
    /// Whether the TLS certificate and key were read again (the admin
    /// API's and SIGHUP's reload do both; `false` without TLS).
    #[serde(default)]
    pub tls_reloaded: bool,
}

#[cfg(test)]
impl State {
    /// A director over the web servers `ws1` (127.0.0.1:9001) and `ws2`
    /// (9002), nothing listening there, none checked yet: for unit tests.
    pub(crate) fn for_tests() -> State {
        let text = r#"
            secret = "0123456789abcdef0123456789abcdef"
            [[web]]
            name = "ws1"
            listen = "127.0.0.1:9001"
            [[web]]
            name = "ws2"
            listen = "127.0.0.1:9002"
        "#;
        match State::new(crate::config::config_of(text)) {
            Ok(state) => state,
            Err(e) => panic!("{e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(name: &str, port: u16, relay: Option<u16>) -> DirectorPeer {
        let at = |p: u16| SocketAddr::from(([10, 0, 0, 1], p));
        DirectorPeer {
            name: name.into(),
            listen: at(port),
            admin: at(port + 1),
            redirect_listen: None,
            relay_listen: relay.map(at),
        }
    }

    #[test]
    fn relay_targets_keep_each_peers_index() {
        let peers = [peer("d2", 8080, None), peer("d3", 8090, Some(8092))];
        let at = |p: u16| SocketAddr::from(([10, 0, 0, 1], p));
        // Plain public listeners: every peer, its relay listener first.
        assert_eq!(relay_targets(&peers, false), [(0, at(8080)), (1, at(8092))]);
        // TLS: only the peer with a relay listener, still at index 1 (its
        // place in `peers_seen`).
        assert_eq!(relay_targets(&peers, true), [(1, at(8092))]);
    }
}
