//! [`ClientOptions`]: credentials and the time limits of a [`StoreClient`](crate::StoreClient).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// Settings of a [`StoreClient`](crate::StoreClient).
#[derive(Clone, PartialEq, Eq)]
pub struct ClientOptions {
    /// Password for `AUTH` (the store's `--requirepass`). Takes precedence
    /// over a password in a `redis://` URL.
    pub password: Option<String>,
    /// ACL user name sent with the password; ignored without a password.
    pub username: Option<String>,
    /// Upper bound on every request, connecting included. Default 1 s.
    pub request_timeout: Duration,
    /// Upper bound on one connection attempt (TCP connect and handshake).
    /// Default 1 s.
    pub connect_timeout: Duration,
    /// Longest wait between two connection attempts to a store that is
    /// down. Default 2 s.
    pub max_backoff: Duration,
    /// Redis only: how long a takeover's promise (`prepare`) and a dead
    /// lease record (`kill`) are kept, as `sticky store --claim-window`
    /// keeps them: twice the web servers' claim timeout
    /// (`docs/safety.md` §3). A `sticky store` uses its own setting and
    /// ignores this one. Default 4 s, the store's default.
    pub claim_window: Duration,
    /// TLS stores (`rediss://`, `sticky+tls://`): the PEM file of the CA
    /// certificates their certificates are verified against, instead of
    /// the system's trust store. Verification is never off. Default: none
    /// (the system's).
    pub tls_ca: Option<PathBuf>,
    /// One connection per OS thread that sends requests, instead of one
    /// shared by all. For callers that run one single-threaded runtime per
    /// thread (`sticky web`): each thread's connection is driven by a task
    /// of that thread's runtime, so a request never wakes another thread
    /// to send it or to hand its reply back. The store's health (backoff
    /// after failed attempts, the last error) stays shared. Not for a
    /// multi-threaded runtime, whose tasks move between threads: it would
    /// only open more connections. Default false.
    pub connection_per_thread: bool,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            password: None,
            username: None,
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_secs(2),
            claim_window: Duration::from_secs(4),
            tls_ca: None,
            connection_per_thread: false,
        }
    }
}

impl fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientOptions")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("username", &self.username)
            .field("request_timeout", &self.request_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("max_backoff", &self.max_backoff)
            .field("claim_window", &self.claim_window)
            .field("tls_ca", &self.tls_ca)
            .field("connection_per_thread", &self.connection_per_thread)
            .finish()
    }
}
