//! `sticky director`: the HTTP reverse proxy in front of Sticky's web
//! servers. It routes every request of a client to the web server hosting
//! its session, with a signed route cookie; finds failed servers by active
//! health checks and by refused connections; moves their clients to a
//! standby or, by rendezvous hashing of the session cookie, evenly over the
//! others; and routes to a server that was marked down only after it has
//! fenced itself (new epoch, empty cache). See `docs/director.md`.
//!
//! # Layout
//!
//! From the facade down; a module imports only modules below it (checked
//! by `tests/module_graph.rs`).
//!
//! - `fuzzing` (hidden): fuzzing-only wrappers around the fast path's
//!   request parser, the chunked scanner and the route cookie, for
//!   `fuzz/`; not a stable API.
//! - `director`: [`Director`], the facade: builds the state, starts and
//!   stops the listeners, the health checkers and the store probes;
//!   reloads and admin operations for the library's callers.
//! - `listener`: accept loops, worker threads' intake, connection limit,
//!   timeouts, graceful shutdown; TLS handshakes and HTTP/2 on the public
//!   listener when TLS is on; the HTTP-to-HTTPS redirect listener.
//! - `admin`, `metrics`, `supervisor`: the admin listener (JSON API,
//!   dashboard, Prometheus) and the `sticky up` supervisor's control API
//!   (kill, pause, resume, restart) proxied for the dashboard.
//! - `peers`: admin state changes passed to the cluster's other
//!   directors.
//! - `proxy`: one client request on the general (hyper) path: header
//!   hygiene, streaming, upgrades.
//! - `fast_path`: plain HTTP/1.1 requests on raw sockets, without hyper.
//! - `upstream`: response framing and exchange errors shared by the raw
//!   paths and `body`.
//! - `raw_forward`: HTTP/2 requests (no body or a small one) sent to the
//!   web server on the fast path's raw connections, not hyper's client.
//! - `forward`: the rules both request paths obey: reserved paths,
//!   hop-by-hop headers, retries and failover (`Attempts`), the
//!   director's own answers.
//! - `health`: active checks and passive detection (server up and down).
//! - `adopt`: a server declared dead: its failover candidates asked to
//!   adopt its sessions (`POST /.sticky/adopt`).
//! - `fencing`: the director's side of fencing: asking a server to fence
//!   itself, adopting a new epoch, the fencing token headers.
//! - `control`: one control request to a web server (`/.sticky/health`,
//!   `/.sticky/fence`).
//! - `sampler`: every `history_interval` (5 s), a sample of the
//!   director's figures and of the web servers' metrics (takeovers,
//!   re-copies) for the dashboard's charts, with per-server events.
//! - `probes`: the session stores' `PING` and `INFO` each second, for the
//!   dashboard; the director never routes by them.
//! - `state`: what everything shares: configuration, server list, routing
//!   table publication, counters; it starts nothing itself.
//! - `routing`: the lock-free routing table and the choice of a server
//!   (cookie, standby, rendezvous hashing, least connections).
//! - `stores`: the board of the stores' last known states.
//! - `history`: the dashboard's last 15 minutes: bounded rings of samples
//!   and of events with their wall-clock times (`/api/history`).
//! - `body`: the body of the director's answers, returning connections to
//!   the pool when a response is done.
//! - `backend`: one web server's state, pools and counters.
//! - `pool`: keep-alive connections to web servers and the request body
//!   they carry.
//! - `config`: [`DirectorConfig`], [`ServerSpec`], [`StoreSpec`], every
//!   setting and its default.
//! - `tls`: [`TlsFiles`], the certificate and key read from PEM files
//!   into the rustls configuration, and its reload.
//! - `status`: what `/api/cluster` answers ([`ClusterStatus`] and its
//!   parts, [`AdminState`]).
//! - `route_cookie`: signing and checking route cookies; cookie parsing.
//! - `worker`: which worker thread (event loop) runs the caller.
//! - `idle`: what an event loop does before it sleeps (yields its CPU to
//!   others that wait for it, for a bounded time).
//! - `chunked`, `io`, `latency`, `error`: the chunked-body scanner, the
//!   activity-tracking socket, response-time histograms, [`DirectorError`].
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use sticky_director::{Director, DirectorConfig, ServerSpec};
//!
//! let servers = vec![
//!     ServerSpec::new("ws1", "127.0.0.1:8001".parse()?),
//!     ServerSpec::new("ws2", "127.0.0.1:8002".parse()?),
//! ];
//! let config = DirectorConfig::new("a cluster secret of 32 bytes or more", servers);
//! let director = Director::new(config)?;
//! let public = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let admin = tokio::net::TcpListener::bind("127.0.0.1:8081").await?;
//! director
//!     .serve(public, admin, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await?;
//! # Ok(())
//! # }
//! ```

mod admin;
mod adopt;
mod backend;
mod body;
mod chunked;
mod config;
mod control;
mod director;
mod error;
mod fast_path;
mod fencing;
mod forward;
#[doc(hidden)]
pub mod fuzzing;
mod health;
mod history;
mod idle;
mod io;
mod latency;
mod listener;
mod metrics;
mod peers;
mod pool;
mod probes;
mod proxy;
mod raw_forward;
mod route_cookie;
mod routing;
mod sampler;
mod state;
mod status;
mod stores;
mod supervisor;
mod tls;
mod upstream;
mod worker;

pub use config::{servers_of, DirectorConfig, HealthSettings, ProxyNet, ServerSpec, StoreSpec};
pub use director::Director;
pub use error::DirectorError;
pub use history::{Event, EventKind, History, Sample};
pub use latency::ResponseTimes;
pub use state::{ReloadSummary, Reloader};
pub use status::{
    AdminState, ClusterStatus, DirectorInstance, DirectorTotals, Role, ServerState, ServerStatus,
    StoreState, StoreStatus,
};
pub use sticky_config::DirectorPeer;
pub use tls::TlsFiles;
