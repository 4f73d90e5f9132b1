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
//! - `config`: [`DirectorConfig`], [`ServerSpec`], every setting and its
//!   default.
//! - `director`: [`Director`]: shared state, table publication, reloads,
//!   admin operations.
//! - `listener`: accept loops, connection limit, timeouts, graceful
//!   shutdown.
//! - `proxy`: one client request: header hygiene, routing, retries,
//!   streaming, upgrades, the director's own error answers.
//! - `routing`: the lock-free routing table and the choice of a server
//!   (cookie, standby, rendezvous hashing, least connections).
//! - `route_cookie`: signing and checking route cookies; cookie parsing.
//! - `health`: active checks, passive detection, fencing.
//! - `backend`: one web server's state and counters; the status types.
//! - `pool`: keep-alive connections to web servers.
//! - `body`, `io`: the body type and the activity-tracking socket.
//! - `admin`, `metrics`: the admin listener (JSON API, dashboard,
//!   Prometheus).
//! - `stores`: the session stores' states for the dashboard (`PING` and
//!   `INFO` each second); the director never routes by them.
//! - `supervisor`: the `sticky up` supervisor's control API (kill, pause,
//!   resume, restart), proxied on the admin listener for the dashboard.
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
mod health;
mod io;
mod latency;
mod listener;
mod metrics;
mod pool;
mod probes;
mod proxy;
mod route_cookie;
mod routing;
mod state;
mod status;
mod stores;
mod supervisor;
mod worker;

pub use config::{servers_of, DirectorConfig, HealthSettings, ServerSpec, StoreSpec};
pub use director::Director;
pub use error::DirectorError;
pub use latency::ResponseTimes;
pub use state::{ReloadSummary, Reloader};
pub use status::{
    AdminState, ClusterStatus, DirectorTotals, Role, ServerState, ServerStatus, StoreState,
    StoreStatus,
};
