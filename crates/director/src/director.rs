//! [`Director`]: the facade. It builds the shared [`State`], starts what
//! runs while it serves (the listeners and their worker threads, one
//! health checker per web server, the store probes), stops them, and
//! offers the admin operations to the library's callers.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::net::TcpListener;

use crate::backend::Backend;
use crate::config::{DirectorConfig, ServerSpec};
use crate::history::{EventKind, History};
use crate::idle;
use crate::state::{ReloadSummary, State};
use crate::status::{AdminState, ClusterStatus, ServerStatus};
use crate::{health, listener, peers, probes, sampler, worker, DirectorError};

/// The director: sticky routing, health checks, failover, admin API.
///
/// Cheap to clone; every clone controls the same director.
#[derive(Clone)]
pub struct Director {
    shared: Arc<State>,
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
        Ok(Self {
            shared: Arc::new(State::new(config)?),
        })
    }

    /// Sets where [`reload`](Self::reload) (and `POST /api/reload`) gets the
    /// server list from.
    pub fn with_reloader(
        self,
        reloader: impl Fn() -> Result<Vec<ServerSpec>, DirectorError> + Send + Sync + 'static,
    ) -> Self {
        self.shared.set_reloader(Arc::new(reloader));
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
                .on_thread_park(idle::before_sleep(self.shared.config.yield_before_sleep))
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
        self.shared.set_addrs(public, admin);
        let state = Arc::downgrade(&self.shared);
        let runtime = tokio::runtime::Handle::current();
        self.shared
            .set_checks(Some(Arc::new(move |backend: &Arc<Backend>| {
                runtime.spawn(health::run(Weak::clone(&state), Arc::clone(backend)));
            })));
        for b in self.shared.backends() {
            self.shared.spawn_health(&b);
        }
        if !self.shared.stores.is_empty() {
            tokio::spawn(probes::run(Arc::downgrade(&self.shared)));
        }
        if !self.shared.config.peers.is_empty() {
            tokio::spawn(peers::watch(Arc::downgrade(&self.shared)));
        }
        tokio::spawn(sampler::run(Arc::downgrade(&self.shared)));
        self.shared.history.event(
            EventKind::Started,
            &self.shared.config.name,
            format!(
                "director started: {} web servers, {} stores",
                self.shared.backends().len(),
                self.shared.config.stores.len()
            ),
        );
        tracing::info!(
            %public,
            %admin,
            tls = self.shared.tls.is_some(),
            servers = self.shared.backends().len(),
            threads = self.shared.config.threads.max(1),
            "director listening"
        );
    }

    fn finish(&self) {
        self.shared.set_checks(None);
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

    /// Re-reads the TLS certificate chain and key ([`DirectorConfig::tls`]):
    /// new connections use the new certificate, those open keep theirs.
    /// `Ok(false)` when the public listener does not speak TLS.
    ///
    /// # Errors
    ///
    /// [`DirectorError::Reload`] naming the file and what is wrong with it
    /// (also logged); the old certificate stays in force.
    pub fn reload_tls(&self) -> Result<bool, DirectorError> {
        self.shared.reload_tls()
    }

    /// Serves an HTTP-to-HTTPS redirect listener besides the public one
    /// (see [`DirectorConfig::redirect_listen`]): every request gets a
    /// `301` (`308` for methods other than GET and HEAD) to the same host
    /// and path on the public listener's port, over HTTPS. Call it before
    /// [`serve`](Self::serve) or [`run`](Self::run).
    ///
    /// # Errors
    ///
    /// [`DirectorError::Config`] if the public listener does not speak TLS,
    /// [`DirectorError::Listener`] if the listener cannot be used.
    pub fn set_redirect_listener(
        &self,
        listener: std::net::TcpListener,
    ) -> Result<(), DirectorError> {
        if self.shared.tls.is_none() {
            return Err(DirectorError::Config(
                "a redirect listener needs TLS on the public listener".into(),
            ));
        }
        listener
            .set_nonblocking(true)
            .map_err(listener_error("redirect"))?;
        self.shared.set_redirect(listener);
        Ok(())
    }

    /// Serves a plain HTTP listener for requests relayed by peer directors
    /// (see [`DirectorConfig::relay_listen`]) besides the public one: its
    /// requests are served as plain clients' on the public listener. Call
    /// it before [`serve`](Self::serve) or [`run`](Self::run).
    ///
    /// # Errors
    ///
    /// [`DirectorError::Listener`] if the listener cannot be used.
    pub fn set_relay_listener(&self, listener: std::net::TcpListener) -> Result<(), DirectorError> {
        listener
            .set_nonblocking(true)
            .map_err(listener_error("relay"))?;
        self.shared.set_relay(listener);
        Ok(())
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

    /// The last 15 minutes: samples and events (`GET /api/history`).
    pub fn history(&self) -> History {
        self.shared.history.snapshot()
    }
}

fn listener_error(which: &'static str) -> impl Fn(std::io::Error) -> DirectorError {
    move |source| DirectorError::Listener { which, source }
}

/// Worker `index` (1 and up): its own event loop, serving the connections
/// worker 0 hands it.
fn worker_thread(
    index: usize,
    shared: Arc<State>,
    inbox: listener::Inbox,
    common: listener::Common,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    worker::set_current(index);
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .on_thread_park(idle::before_sleep(shared.config.yield_before_sleep))
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
