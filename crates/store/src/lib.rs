//! `sticky store`: the remote session store.
//!
//! An in-memory key/value server speaking RESP2/RESP3 (the Redis protocol)
//! with Sticky's fenced session commands (`SESS.PUT`, `SESS.GET`,
//! `SESS.CLAIM`, `SESS.TOUCH`, `SESS.DEL`; see `docs/protocol.md`) and
//! enough of the plain Redis command set for `redis-cli` and
//! `redis-benchmark`.
//!
//! # Layout
//!
//! - `config`: [`StoreConfig`], every setting with its default;
//!   [`REDIS_VERSION`], the version the store reports.
//! - `shared`: the state every connection of one store shares, and the
//!   nap under load that [`Store::park_hook`] takes (after every loaded
//!   round, or by default only after pipelined ones: [`PIPELINED_DEPTH`]).
//! - `io`: reading a connection (readiness, room for each read).
//! - `server`: [`Store`]: accept loop, connection tasks, pipelining, idle
//!   timeout, active expiry, graceful shutdown.
//! - `cmd`: one file per command family; parses arguments and replies.
//! - `keyspace`: the sharded data, stamps, tombstones and takeover
//!   promises, expiry and memory accounting.
//! - `ownership`: server leases, dead-lease records and the recovery window
//!   of a restarted store (`docs/safety.md`).
//! - `stats`: counters for `INFO`; `metrics`: the Prometheus endpoint.
//!
//! # Example
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use sticky_store::{Store, StoreConfig};
//! let store = Store::new(StoreConfig::default());
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7379").await?;
//! store.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

mod cmd;
mod config;
mod io;
mod keyspace;
mod metrics;
mod ownership;
mod server;
mod shared;
mod stats;

pub use config::{StoreConfig, REDIS_VERSION};
pub use metrics::serve_metrics;
pub use server::Store;
pub use shared::PIPELINED_DEPTH;
pub use stats::{Snapshot, SESSION_COMMANDS};
