//! The web-server library of Sticky: every hosted session whole in a local
//! cache, every change copied to the session stores, takeover of sessions
//! from failed servers, and re-copying when a store fails.
//!
//! # Layout
//!
//! - `config`: [`Config`], every setting with its default.
//! - `id`: [`SessionId`] (128 CSPRNG bits) and the HMAC-signed cookie value.
//! - `cache`: the local cache: unbounded sharded map, one async lock per
//!   session (requests of one session never lose each other's changes).
//! - `placement`: rendezvous hashing of ids over the stores (R = 1 or 2).
//! - `stores`: one client per store, the live set, the pinger.
//! - `manager`: [`SessionManager`]: open (cache hit or takeover), commit
//!   (sync or async replication), fencing and lease, re-copy on store
//!   failure, idle/absolute expiry.
//! - `takeover`: loading a session from the stores with a claim.
//! - `session`: the [`Session`] handle and the framework-neutral
//!   [`SessionManager::load`]/[`SessionManager::save`].
//! - `layer`: axum integration: [`SessionLayer`] and the extractor.
//! - `control`: `/.sticky/health`, `/.sticky/fence`, `/.sticky/metrics`.
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

mod cache;
mod config;
mod control;
mod id;
mod layer;
mod manager;
mod placement;
mod session;
mod stores;
mod takeover;

pub use config::{Config, Mode, StoreSpec};
pub use id::SessionId;
pub use layer::{SessionLayer, SessionService};
pub use manager::{SessionError, SessionManager, Source};
pub use session::{CookieUpdate, Session};
