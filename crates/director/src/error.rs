//! [`DirectorError`]: what can stop the director or refuse an operation.
//!
//! Failures of single requests never become a `DirectorError`: they are
//! answered to the client (`502`, `503`, `504`) and counted in the metrics.

use std::net::SocketAddr;

/// An error starting, reconfiguring or operating the director.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DirectorError {
    /// The configuration is unusable.
    #[error("invalid director configuration: {0}")]
    Config(String),
    /// A listener's address cannot be read.
    #[error("cannot use the {which} listener: {source}")]
    Listener {
        /// `public` or `admin`.
        which: &'static str,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A listener cannot be bound.
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        /// `public` or `admin`.
        which: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// An event loop or a worker thread cannot be started.
    #[error("cannot start the director's event loop: {0}")]
    Runtime(#[source] std::io::Error),
    /// No web server has this name.
    #[error("no web server named {0:?}")]
    UnknownServer(String),
    /// Reloading the server list failed; the old list stays in force.
    #[error("reload failed, the server list is unchanged: {0}")]
    Reload(String),
}
