//! [`Director`]: the shared state behind both listeners, the routing table
//! publication, reloads and admin operations.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::HeaderValue;
use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::config::{check_servers, DirectorConfig, ServerSpec};
use crate::route_cookie::RouteSigner;
use crate::routing::Table;
use crate::status::{AdminState, ClusterStatus, DirectorTotals, ServerStatus};
use crate::stores::StoreBoard;
use crate::{health, listener, probes, worker, DirectorError};

/// Produces the current server list, for `POST /api/reload` and SIGHUP.
pub type Reloader = Arc<dyn Fn() -> Result<Vec<ServerSpec>, DirectorError> + Send + Sync + 'static>;

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
    pub(crate) tunnels: AtomicU64,
    /// Requests served by the fast path (`fast_path.rs`).
    pub(crate) fast_path_requests: AtomicU64,
    /// Client connections the fast path handed to the general path.
    pub(crate) handovers: AtomicU64,
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
pub(crate) struct Shared {
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
    /// The runtime the health checkers run on, while serving.
    health_runtime: Mutex<Option<tokio::runtime::Handle>>,
    reloader: Mutex<Option<Reloader>>,
    pub(crate) public_addr: Mutex<Option<SocketAddr>>,
    /// The session stores' last known states.
    pub(crate) stores: StoreBoard,
}

impl Shared {
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

    /// Between the start and the end of [`Director::serve`] or
    /// [`Director::run`].
    pub(crate) fn is_serving(&self) -> bool {
        self.health_runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn spawn_health(self: &Arc<Self>, backend: &Arc<Backend>) {
        let runtime = self
            .health_runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(rt) = runtime {
            rt.spawn(health::run(Arc::downgrade(self), Arc::clone(backend)));
        }
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
                        let b = Arc::new(Backend::new(spec, &self.config, &self.signer));
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
        tracing::info!(
            servers = summary.servers,
            added = ?summary.added,
            removed = ?summary.removed,
            changed = ?summary.changed,
            "server list reloaded"
        );
        Ok(summary)
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

    pub(crate) fn status(&self) -> ClusterStatus {
        let servers: Vec<ServerStatus> = self.backends().iter().map(|b| b.status()).collect();
        let s = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
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
}

/// The director: sticky routing, health checks, failover, admin API.
///
/// Cheap to clone; every clone controls the same director.
#[derive(Clone)]
pub struct Director {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Director {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Director")
            .field("servers", &self.shared.backends().len())
            .finish_non_exhaustive()
    }
}

impl Director {
    /// A director for `config`. Nothing runs until [`serve`](Self::serve).
    ///
    /// # Errors
    ///
    /// [`DirectorError::Config`] if the configuration is unusable.
    pub fn new(config: DirectorConfig) -> Result<Self, DirectorError> {
        config.check()?;
        let signer = RouteSigner::new(config.secret());
        let token = format!(
            "Bearer {}",
            sticky_proto::control::admin_token(config.secret())
        );
        let token = HeaderValue::from_str(&token)
            .map_err(|_| DirectorError::Config("unusable admin token".into()))?;
        let backends: Vec<Arc<Backend>> = config
            .servers
            .iter()
            .map(|s| Arc::new(Backend::new(s, &config, &signer)))
            .collect();
        let table = ArcSwap::from_pointee(Table::build(&backends));
        let stores = StoreBoard::new(&config.stores);
        if backends.is_empty() {
            tracing::warn!("no [[web]] servers configured: every request will get 503");
        }
        Ok(Self {
            shared: Arc::new(Shared {
                config,
                signer,
                token,
                table,
                backends: Mutex::new(backends),
                rotation: AtomicUsize::new(0),
                stats: Stats::default(),
                started: Instant::now(),
                health_runtime: Mutex::new(None),
                reloader: Mutex::new(None),
                public_addr: Mutex::new(None),
                stores,
            }),
        })
    }

    /// Sets where [`reload`](Self::reload) (and `POST /api/reload`) gets the
    /// server list from.
    pub fn with_reloader(
        self,
        reloader: impl Fn() -> Result<Vec<ServerSpec>, DirectorError> + Send + Sync + 'static,
    ) -> Self {
        *self
            .shared
            .reloader
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(reloader));
        self
    }

    /// Serves clients on `public` and operators on `admin`, on the current
    /// Tokio runtime, until `shutdown` completes; then stops accepting, lets
    /// in-flight requests finish for up to the drain timeout, and returns.
    /// [`run`](Self::run) is the faster way to run a director on its own
    /// threads.
    ///
    /// # Errors
    ///
    /// [`DirectorError::Listener`] if a listener's address cannot be read.
    pub async fn serve(
        &self,
        public: TcpListener,
        admin: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), DirectorError> {
        let public_addr = public.local_addr().map_err(listener_error("public"))?;
        let admin_addr = admin.local_addr().map_err(listener_error("admin"))?;
        self.start(public_addr, admin_addr);
        listener::serve(Arc::clone(&self.shared), public, admin, shutdown).await;
        self.finish();
        Ok(())
    }

    /// Runs the director on [`DirectorConfig::threads`] worker threads
    /// (the calling thread is worker 0), each its own single-threaded event
    /// loop. Worker 0 accepts on `public` and hands each new connection to
    /// the worker with the fewest open ones; a client connection then lives
    /// on that worker, together with the web-server connections it uses,
    /// so a request never crosses threads (HAProxy's model). Worker 0 also
    /// serves `admin` and runs the health checks. Returns once
    /// `shutdown` has completed and the connections have drained (up to the
    /// drain timeout).
    ///
    /// # Errors
    ///
    /// [`DirectorError::Listener`] if a listener cannot be used,
    /// [`DirectorError::Runtime`] if an event loop or thread cannot start.
    pub fn run(
        &self,
        public: std::net::TcpListener,
        admin: std::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), DirectorError> {
        let threads = self.shared.config.threads.max(1);
        public
            .set_nonblocking(true)
            .map_err(listener_error("public"))?;
        admin
            .set_nonblocking(true)
            .map_err(listener_error("admin"))?;
        let public_addr = public.local_addr().map_err(listener_error("public"))?;
        let admin_addr = admin.local_addr().map_err(listener_error("admin"))?;
        let (common, inboxes) = listener::Common::new(&self.shared.config, threads);
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let mut workers = Vec::new();
        let mut started = Ok(());
        for (i, inbox) in inboxes.into_iter().enumerate() {
            let index = i + 1;
            let shared = Arc::clone(&self.shared);
            let common = common.clone();
            let stop = stop_rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("director-worker-{index}"))
                .spawn(move || worker_thread(index, shared, inbox, common, stop));
            match spawned {
                Ok(handle) => workers.push(handle),
                Err(e) => {
                    started = Err(DirectorError::Runtime(e));
                    break;
                }
            }
        }
        let result = started.and_then(|()| {
            worker::set_current(0);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(DirectorError::Runtime)?;
            rt.block_on(async {
                let public = TcpListener::from_std(public).map_err(listener_error("public"))?;
                let admin = TcpListener::from_std(admin).map_err(listener_error("admin"))?;
                self.start(public_addr, admin_addr);
                let work = listener::worker_loop(
                    Arc::clone(&self.shared),
                    listener::Intake::Listeners { public, admin },
                    common,
                    stop_rx,
                );
                tokio::pin!(work);
                tokio::select! {
                    () = &mut work => {}
                    () = shutdown => {
                        listener::announce_shutdown(&self.shared);
                        let _ = stop_tx.send(true);
                        work.await;
                    }
                }
                Ok(())
            })
        });
        let _ = stop_tx.send(true);
        for w in workers {
            let _ = w.join();
        }
        self.finish();
        result
    }

    fn start(&self, public: SocketAddr, admin: SocketAddr) {
        *self
            .shared
            .public_addr
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(public);
        *self
            .shared
            .health_runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(tokio::runtime::Handle::current());
        for b in self.shared.backends() {
            self.shared.spawn_health(&b);
        }
        if !self.shared.stores.is_empty() {
            tokio::spawn(probes::run(Arc::downgrade(&self.shared)));
        }
        tracing::info!(
            %public,
            %admin,
            servers = self.shared.backends().len(),
            threads = self.shared.config.threads.max(1),
            "director listening"
        );
    }

    fn finish(&self) {
        *self
            .shared
            .health_runtime
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = None;
        for b in self.shared.backends() {
            b.retired.store(true, Ordering::Relaxed);
            b.wake.notify_one();
        }
    }

    /// Re-reads the server list from the reloader and applies it: servers
    /// with the same name and address keep their state and connections.
    ///
    /// # Errors
    ///
    /// [`DirectorError::Reload`]; the old list stays in force.
    pub fn reload(&self) -> Result<ReloadSummary, DirectorError> {
        self.shared.reload()
    }

    /// Applies this server list (see [`reload`](Self::reload)).
    ///
    /// # Errors
    ///
    /// [`DirectorError::Reload`] if the list is invalid.
    pub fn reload_with(&self, servers: Vec<ServerSpec>) -> Result<ReloadSummary, DirectorError> {
        self.shared.reload_with(servers)
    }

    /// Drains, evacuates or enables the server called `name`.
    ///
    /// # Errors
    ///
    /// [`DirectorError::UnknownServer`].
    pub fn set_admin_state(
        &self,
        name: &str,
        state: AdminState,
    ) -> Result<ServerStatus, DirectorError> {
        self.shared.set_admin(name, state)
    }

    /// The state of every server and the director's totals.
    pub fn status(&self) -> ClusterStatus {
        self.shared.status()
    }
}

fn listener_error(which: &'static str) -> impl Fn(std::io::Error) -> DirectorError {
    move |source| DirectorError::Listener { which, source }
}

/// Worker `index` (1 and up): its own event loop, serving the connections
/// worker 0 hands it.
fn worker_thread(
    index: usize,
    shared: Arc<Shared>,
    inbox: listener::Inbox,
    common: listener::Common,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    worker::set_current(index);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            // Its inbox closes with it: worker 0 serves its share.
            tracing::error!(worker = index, error = %e, "cannot start a worker's event loop");
            return;
        }
    };
    rt.block_on(listener::worker_loop(
        shared,
        listener::Intake::Inbox(inbox),
        common,
        stop,
    ));
}
