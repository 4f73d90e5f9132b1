//! The web-server library of Sticky: every hosted session whole in a local
//! cache, every change copied to the session stores, takeover of sessions
//! from failed servers, and re-copying when a store fails.
//!
//! # Layout
//!
//! - `fuzzing` (hidden): fuzzing-only wrappers around session cookie
//!   parsing and the cookie signer, for `fuzz/`; not a stable API.
//! - `config`: [`Config`], every setting with its default; [`Mode`] is
//!   `sticky-config`'s, re-exported.
//! - `error`: [`SessionError`] and the HTTP status of each.
//! - `id`: [`SessionId`] (128 CSPRNG bits) and the HMAC-signed cookie value.
//! - `clock`: the monotonic clock of expiry and leases (tokio's, so tests
//!   can pause it) and Unix time for the absolute timeout.
//! - `cache`: the local cache: unbounded sharded map, one async lock per
//!   session (requests of one session never lose each other's changes),
//!   and the one way a copy leaves it (`drop_copy`); counts hosted
//!   sessions and their serialized bytes. A session is kept only
//!   serialized (its payload), not parsed.
//! - `data`: reading the data straight from a payload: one key (the
//!   others skipped, not parsed), the keys, or the whole map.
//! - `admission`: admitting new sessions: the caps (`max_sessions`,
//!   `max_bytes`), the per-client-address token buckets, and the client
//!   address behind trusted proxies.
//! - `placement`: rendezvous hashing of ids over the stores (R = 1 or 2).
//! - `stores`: one client per store, the live set, the pinger, and the
//!   fan-out of one request to several stores.
//! - `fencing`: epoch, lease and fence; refusing requests routed for an
//!   old epoch.
//! - `dropped`: the copies a lapse dropped, kept (not served) until each
//!   session has a live host again.
//! - `state`: the [`SessionManager`] handle and the state its clones
//!   share, built from a checked [`Config`]; spawns nothing.
//! - `takeover`: loading a session from the stores with a claim.
//! - `lease`: renewing this server's lease at the stores, fencing on a
//!   lapse, releasing it at a stop; probing another server's process.
//! - `open`: opening a request's session (cache hit, takeover or new).
//! - `commit`: saving a request's changes (destroy, new id, new version).
//! - `replicator`: sync and async copies of a version to its replicas,
//!   and the rule for writes refused as stale.
//! - `recopy`: re-copy on store failure (claim 9): batches of sessions,
//!   one pipeline of copies per store and batch, paced by `recopy_rate`.
//! - `adopt`: adopting a dead server's sessions, and reclaiming the
//!   sessions a lapse dropped, retried until each has a host again.
//! - `expiry`: idle and absolute timeouts, the short lifetime of an
//!   untouched new session, lazy touches.
//! - `session`: the [`Session`] handle and the framework-neutral
//!   [`SessionManager::load`]/[`SessionManager::save`].
//! - `layer`: axum integration: [`SessionLayer`] and the extractor.
//! - `control`: `/.sticky/health`, `/.sticky/fence`, `/.sticky/metrics`.
//! - `manager`: [`SessionManager::start`] and the background tasks, and
//!   the server-level API (settings, health, fence).
//!
//! Modules depend on those above them in this list only (no import
//! circles); `manager` is the top, `state` the hub every operation uses.
//!
//! # Example
//!
//! ```no_run
//! use axum::{routing::post, Json, Router};
//! use sticky_session::{Config, Session, SessionLayer, SessionManager, StoreSpec};
//!
//! async fn count(session: Session) -> Json<u64> {
//!     let n = session.get::<u64>("n").ok().flatten().unwrap_or(0) + 1;
//!     let _ = session.insert("n", n); // copied to the stores after the handler
//!     Json(n)
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let stores = vec![
//!     StoreSpec { name: "s1".into(), addr: "127.0.0.1:7201".into() },
//!     StoreSpec { name: "s2".into(), addr: "127.0.0.1:7202".into() },
//! ];
//! let config = Config::new("ws1", "a cluster secret of 32 bytes or more", stores);
//! let manager = SessionManager::start(config).await?;
//! let app = Router::new()
//!     .route("/count", post(count))
//!     .layer(SessionLayer::new(manager.clone()))
//!     .merge(manager.control_routes(None));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```

mod admission;
mod adopt;
mod cache;
mod claim_batch;
mod clock;
mod commit;
mod config;
mod control;
mod data;
mod dropped;
mod error;
mod expiry;
mod fencing;
#[doc(hidden)]
pub mod fuzzing;
mod holders;
mod id;
mod layer;
mod lease;
mod look;
mod manager;
mod open;
mod placement;
mod recopy;
mod replicator;
mod session;
mod state;
mod stores;
mod takeover;
mod unreached;

pub use config::{BadIpNet, Config, IpNet, Mode, Peer, StoreSpec};
pub use error::SessionError;
pub use id::SessionId;
pub use layer::{SessionLayer, SessionService};
pub use open::Source;
pub use session::{CookieUpdate, Session};
pub use state::SessionManager;
