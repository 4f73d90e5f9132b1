//! The async client web servers use to talk to one session store.
//!
//! [`StoreClient`] speaks the session commands of `docs/protocol.md`
//! (`SESS.PUT`, `SESS.GET`, `SESS.CLAIM`, `SESS.TOUCH`, `SESS.DEL`) over one
//! multiplexed, pipelined connection (a [`redis::aio::MultiplexedConnection`])
//! shared by all clones of the client.
//!
//! # Backends
//!
//! - `host:port` or `sticky://[user:password@]host:port[/?protocol=resp3]`:
//!   a `sticky store`, sent the native `SESS.*` commands.
//! - `redis://[user:password@]host:port[/?protocol=resp3]` (or `valkey://`,
//!   `redis+unix://`...): Redis or a Redis-compatible server. The same
//!   commands run as server-side Lua scripts ([`crate::scripts`]), loaded
//!   with `SCRIPT LOAD` on every new connection and called with `EVALSHA`
//!   (falling back to `EVAL` on `NOSCRIPT`); each session is a hash under
//!   `sticky:{<key>}`. Replies, errors and fencing are the same, so callers
//!   cannot tell the two apart (see `docs/redis.md`).
//! - `redis+cluster://[user:password@]host:port,host:port[/?protocol=resp3]`:
//!   a Redis Cluster as one store, the same scripts sent through the
//!   `redis` crate's cluster client (a connection per master, commands
//!   routed by slot). "The connection" below is then that client.
//!
//! # Connection behaviour
//!
//! - [`StoreClient::new`] does not connect: the connection is opened by the
//!   first request, so a web server can start while a store is down.
//! - Concurrent requests share the connection; requests that arrive while
//!   it is being opened wait for that single attempt.
//! - A failed attempt (refused, timed out after
//!   [`ClientOptions::connect_timeout`], or authentication refused) fails
//!   the requests waiting for it and starts a backoff: until it ends,
//!   requests fail at once with [`ClientError::ConnectionLost`] (or
//!   [`ClientError::Auth`]) without touching the network. The first request
//!   after the backoff makes the next attempt. Backoffs double from 100 ms up
//!   to [`ClientOptions::max_backoff`], with jitter, and reset once a
//!   connection is established.
//! - A connection that breaks (reset, closed by the store, or silent for a
//!   whole [`ClientOptions::request_timeout`] while a request waited) is
//!   dropped; the requests in flight on it fail with a retryable error and
//!   the next request reconnects at once.
//! - Every request, connecting included, is bounded by
//!   [`ClientOptions::request_timeout`].
//!
//! The client never retries a command by itself: a command that may have
//! reached the store is reported as [`ClientError::Timeout`] or
//! [`ClientError::ConnectionLost`] and the caller decides (stamps make a
//! retried `put` or `delete` safe, see [`StoreClient::put`]).
//!
//! Error messages never contain keys (session ids) or payloads.

use std::borrow::Cow;
use std::collections::hash_map::RandomState;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use redis::aio::MultiplexedConnection;
use redis::io::tcp::TcpSettings;
use redis::{AsyncConnectionConfig, Cmd, ErrorKind, IntoConnectionInfo, RedisError, Value};

use crate::command::{self, SessionCommand};
use crate::scripts;
use crate::Stamp;

/// Shortest backoff after a failed connection attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest server-provided text kept in an error message.
const MAX_ERROR_TEXT: usize = 256;

/// Settings of a [`StoreClient`].
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
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            password: None,
            username: None,
            request_timeout: Duration::from_secs(1),
            connect_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_secs(2),
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
            .finish()
    }
}

/// A session copy as stored, read with [`StoreClient::get`].
///
/// `Debug` shows the payload's length, not its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Stamp of the copy (or of the delete, for a tombstone).
    pub stamp: Stamp,
    /// Web server hosting the session; empty for a tombstone.
    pub owner: String,
    /// Remaining time to live; `None` when the copy never expires.
    pub ttl: Option<Duration>,
    /// The session data; empty for a tombstone.
    pub payload: Bytes,
    /// `true` for a tombstone: the session was destroyed.
    pub deleted: bool,
}

impl fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSession")
            .field("stamp", &self.stamp)
            .field("owner", &self.owner)
            .field("ttl", &self.ttl)
            .field("payload_len", &self.payload.len())
            .field("deleted", &self.deleted)
            .finish()
    }
}

/// Why a store request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The store holds a copy or tombstone whose stamp is higher than or
    /// equal to the one sent (or, for a claim, different from the expected
    /// one).
    #[error("stale stamp: the store holds stamp {stored}")]
    Stale {
        /// The stamp the store holds.
        stored: Stamp,
    },
    /// The session was destroyed: the store holds a tombstone.
    #[error("session deleted: the store holds a tombstone with stamp {stamp}")]
    Deleted {
        /// The tombstone's stamp.
        stamp: Stamp,
    },
    /// The store holds neither a copy nor a tombstone of the session.
    #[error("no such session in the store")]
    NoSession,
    /// The store is at its memory limit and refused the write.
    #[error("store out of memory: {0}")]
    OutOfMemory(String),
    /// The store refused the credentials, or wants some.
    #[error("store authentication failed: {0}")]
    Auth(String),
    /// No reply within [`ClientOptions::request_timeout`]. The command may
    /// or may not have been applied.
    #[error("store request timed out")]
    Timeout,
    /// The connection failed or broke, or the store is unavailable and the
    /// client is waiting before reconnecting. The command may or may not
    /// have been applied.
    #[error("store connection lost: {0}")]
    ConnectionLost(String),
    /// The store's reply does not have the documented shape.
    #[error("unexpected reply from the store: {0}")]
    Protocol(String),
    /// Any other error reply of the store (`-ERR ...`).
    #[error("store error: {0}")]
    Server(String),
    /// The address or options given to [`StoreClient::new`] are invalid.
    #[error("invalid store client configuration: {0}")]
    InvalidConfig(String),
}

impl ClientError {
    /// Whether the failure is transient: the same request may succeed if
    /// sent again ([`ClientError::Timeout`], [`ClientError::ConnectionLost`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::ConnectionLost(_))
    }
}

/// Async client of one session store. Cheap to clone: clones share one
/// connection.
#[derive(Clone)]
pub struct StoreClient {
    inner: Arc<Inner>,
}

impl fmt::Debug for StoreClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreClient")
            .field("addr", &self.inner.addr)
            .field("backend", &self.inner.backend)
            .finish_non_exhaustive()
    }
}

/// How the session commands reach the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    /// `sticky store`: the native `SESS.*` commands.
    Native,
    /// Redis: the commands as Lua scripts ([`crate::scripts`]).
    Scripts,
}

/// One session command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Put,
    Get,
    Claim,
    Touch,
    Del,
}

impl Op {
    /// The native command's name.
    fn native(self) -> &'static str {
        match self {
            Self::Put => SessionCommand::Put.as_str(),
            Self::Get => SessionCommand::Get.as_str(),
            Self::Claim => SessionCommand::Claim.as_str(),
            Self::Touch => SessionCommand::Touch.as_str(),
            Self::Del => SessionCommand::Del.as_str(),
        }
    }

    /// The script implementing it on Redis.
    fn script(self) -> &'static redis::Script {
        let s = &*SCRIPTS;
        match self {
            Self::Put => &s.put,
            Self::Get => &s.get,
            Self::Claim => &s.claim,
            Self::Touch => &s.touch,
            Self::Del => &s.del,
        }
    }

    /// The script's source, for `EVAL`.
    fn source(self) -> &'static str {
        match self {
            Self::Put => scripts::PUT,
            Self::Get => scripts::GET,
            Self::Claim => scripts::CLAIM,
            Self::Touch => scripts::TOUCH,
            Self::Del => scripts::DEL,
        }
    }
}

/// The scripts with their digests, computed once per process.
static SCRIPTS: std::sync::LazyLock<scripts::Scripts> =
    std::sync::LazyLock::new(scripts::Scripts::new);

impl StoreClient {
    /// A client of the store at `addr`: `host:port` or
    /// `sticky://[user:password@]host:port[/?protocol=resp3]` for a `sticky
    /// store`; a `redis://[user:password@]host:port[/?protocol=resp3]` URL
    /// (or `valkey://`, `redis+unix://`...) for Redis, where the session
    /// commands run as Lua scripts (see the [module docs](self));
    /// `redis+cluster://[user:password@]host:port,host:port...` for a Redis
    /// Cluster.
    ///
    /// Does not connect: see the [module docs](self) for when it does.
    ///
    /// # Errors
    ///
    /// [`ClientError::InvalidConfig`] when `addr` does not parse.
    pub fn new(addr: &str, options: ClientOptions) -> Result<Self, ClientError> {
        let (connector, public_addr, display_addr, backend) =
            if let Some(rest) = addr.strip_prefix(CLUSTER_SCHEME) {
                let (client, public_addr, display_addr) = cluster_client(rest, &options)?;
                (
                    Connector::Cluster(client),
                    public_addr,
                    display_addr,
                    Backend::Scripts,
                )
            } else {
                let (info, public_addr, backend) = connection_info(addr, &options)?;
                let display_addr = info.addr().to_string();
                let client = redis::Client::open(info)
                    .map_err(|e| ClientError::InvalidConfig(clip(&e.to_string())))?;
                let conn_config = AsyncConnectionConfig::new()
                    .set_connection_timeout(Some(options.connect_timeout))
                    // Requests are bounded by `execute`, connecting included.
                    .set_response_timeout(None);
                (
                    Connector::Single(client, conn_config),
                    public_addr,
                    display_addr,
                    backend,
                )
            };
        Ok(Self {
            inner: Arc::new(Inner {
                addr: public_addr,
                display_addr,
                backend,
                connector,
                request_timeout: options.request_timeout,
                connect_timeout: options.connect_timeout,
                max_backoff: options.max_backoff,
                origin: Instant::now(),
                state: Mutex::new(ConnState::default()),
                connect_lock: Arc::new(tokio::sync::Mutex::new(())),
            }),
        })
    }

    /// The store's address as given to [`StoreClient::new`], without any
    /// password a URL carried.
    pub fn addr(&self) -> &str {
        &self.inner.addr
    }

    /// `SESS.PUT`: stores `payload` as session `key` with `stamp`, owned by
    /// `owner`, expiring after `ttl` (`None`: never).
    ///
    /// A `STALE` reply naming `stamp` itself counts as success: it means an
    /// earlier attempt with this stamp (whose reply was lost) landed, so a
    /// put that failed with a retryable error can be sent again as is.
    ///
    /// # Errors
    ///
    /// [`ClientError::Stale`] when the store holds a higher stamp,
    /// [`ClientError::OutOfMemory`], or any transport error.
    pub async fn put(
        &self,
        key: &[u8],
        stamp: Stamp,
        owner: &str,
        ttl: Option<Duration>,
        payload: &[u8],
    ) -> Result<(), ClientError> {
        let args = |cmd: &mut Cmd| {
            cmd.arg(stamp.generation)
                .arg(stamp.seq)
                .arg(owner)
                .arg(ttl_ms(ttl))
                .arg(payload);
        };
        match self
            .call(Op::Put, key, args)
            .await
            .and_then(|v| expect_ok(v, SessionCommand::Put.as_str()))
        {
            Err(ClientError::Stale { stored }) if stored == stamp => Ok(()),
            other => other,
        }
    }

    /// `SESS.GET`: the stored copy or tombstone of session `key`, `None`
    /// when the store has neither. Does not extend the TTL.
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] for a malformed reply, or any transport
    /// error.
    pub async fn get(&self, key: &[u8]) -> Result<Option<StoredSession>, ClientError> {
        let reply = match self.call(Op::Get, key, |_| {}).await? {
            // A script's "nothing" (Lua false) on a RESP3 connection.
            Value::Boolean(false) if self.inner.backend == Backend::Scripts => Value::Nil,
            other => other,
        };
        parse_session(reply)
    }

    /// `SESS.CLAIM`: compare-and-set used by a takeover. If the store's live
    /// copy has exactly stamp `expected`, it gets stamp `new`, owner `owner`
    /// and TTL `ttl` (`None`: never expires); the payload is kept.
    ///
    /// Unlike [`put`](Self::put), a `STALE` reply naming `new` is an error:
    /// another host may have claimed with the same stamp. After a retryable
    /// error, [`get`](Self::get) the session and compare its owner.
    ///
    /// # Errors
    ///
    /// [`ClientError::Stale`] when the copy has another stamp,
    /// [`ClientError::Deleted`] when the session was destroyed,
    /// [`ClientError::NoSession`] when there is nothing stored,
    /// [`ClientError::Server`] when `new` is not higher than `expected`, or
    /// any transport error.
    pub async fn claim(
        &self,
        key: &[u8],
        expected: Stamp,
        new: Stamp,
        owner: &str,
        ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let args = |cmd: &mut Cmd| {
            cmd.arg(expected.generation)
                .arg(expected.seq)
                .arg(new.generation)
                .arg(new.seq)
                .arg(owner)
                .arg(ttl_ms(ttl));
        };
        let reply = self.call(Op::Claim, key, args).await?;
        expect_ok(reply, SessionCommand::Claim.as_str())
    }

    /// `SESS.TOUCH`: sets the TTL of the live copy of `key` (`None`: never
    /// expires). Returns whether a live copy was there to touch.
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] for a malformed reply, or any transport
    /// error.
    pub async fn touch(&self, key: &[u8], ttl: Option<Duration>) -> Result<bool, ClientError> {
        let args = |cmd: &mut Cmd| {
            cmd.arg(ttl_ms(ttl));
        };
        let reply = self.call(Op::Touch, key, args).await?;
        parse_touch(reply)
    }

    /// `SESS.DEL`: destroys session `key`, leaving a tombstone with `stamp`
    /// kept for `tombstone_ttl` (`None`: the store's `--tombstone-ttl`).
    ///
    /// On Redis, `None` means [`DEFAULT_TOMBSTONE_TTL_MS`](scripts::DEFAULT_TOMBSTONE_TTL_MS)
    /// (60 s, `sticky store`'s default).
    ///
    /// Like [`put`](Self::put), a `STALE` reply naming `stamp` itself counts
    /// as success (an earlier attempt landed).
    ///
    /// # Errors
    ///
    /// [`ClientError::Stale`] when the store holds a higher stamp, or any
    /// transport error.
    pub async fn delete(
        &self,
        key: &[u8],
        stamp: Stamp,
        tombstone_ttl: Option<Duration>,
    ) -> Result<(), ClientError> {
        let args = |cmd: &mut Cmd| {
            cmd.arg(stamp.generation).arg(stamp.seq);
            if let Some(ttl) = tombstone_ttl {
                cmd.arg(duration_ms(ttl));
            }
        };
        match self
            .call(Op::Del, key, args)
            .await
            .and_then(|v| expect_ok(v, SessionCommand::Del.as_str()))
        {
            Err(ClientError::Stale { stored }) if stored == stamp => Ok(()),
            other => other,
        }
    }

    /// `PING`: the round trip time of one command on the connection (not
    /// counting the time to connect, if the ping had to).
    ///
    /// # Errors
    ///
    /// Any transport error, or [`ClientError::Protocol`] if the reply is not
    /// `PONG`.
    pub async fn ping(&self) -> Result<Duration, ClientError> {
        let (reply, rtt) = self.execute(&redis::cmd("PING")).await?;
        match reply {
            Value::SimpleString(s) if s == "PONG" => Ok(rtt),
            Value::BulkString(b) if b == b"PONG" => Ok(rtt),
            other => Err(unexpected("PING", "PONG", &other)),
        }
    }

    /// Runs session command `op` on `key` with the arguments `args` adds:
    /// the native command, or on Redis the script, by `EVALSHA` (by `EVAL`
    /// if the store answers `NOSCRIPT`: it was restarted or flushed its
    /// scripts since the connection loaded them). Both take the arguments in
    /// the same order.
    async fn call(
        &self,
        op: Op,
        key: &[u8],
        args: impl Fn(&mut Cmd),
    ) -> Result<Value, ClientError> {
        if self.inner.backend == Backend::Native {
            let mut cmd = redis::cmd(op.native());
            cmd.arg(key);
            args(&mut cmd);
            return self.execute(&cmd).await.map(|(v, _)| v);
        }
        let redis_key = scripts::redis_key(key);
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(op.script().get_hash()).arg(1).arg(&redis_key);
        args(&mut cmd);
        match self.execute(&cmd).await {
            Err(ClientError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                tracing::debug!(store = %self.inner.display_addr, "script not loaded; sending it with EVAL");
                let mut cmd = redis::cmd("EVAL");
                cmd.arg(op.source()).arg(1).arg(&redis_key);
                args(&mut cmd);
                self.execute(&cmd).await.map(|(v, _)| v)
            }
            other => other.map(|(v, _)| v),
        }
    }

    /// Sends `cmd` and returns its reply (error replies turned into
    /// [`ClientError`]s) and the time the store took to answer.
    async fn execute(&self, cmd: &Cmd) -> Result<(Value, Duration), ClientError> {
        let inner = &self.inner;
        let started = Instant::now();
        let live = match tokio::time::timeout(inner.request_timeout, inner.acquire()).await {
            Ok(live) => live?,
            Err(_) => return Err(ClientError::Timeout),
        };
        let remaining = inner.request_timeout.saturating_sub(started.elapsed());
        let sent = Instant::now();
        let sent_us = inner.micros(sent);
        let mut conn = live.conn.clone();
        let result = tokio::time::timeout(remaining, conn.send(cmd)).await;
        let rtt = sent.elapsed();
        match result {
            Ok(Ok(value)) => {
                live.last_reply
                    .fetch_max(inner.micros(Instant::now()), Ordering::Relaxed);
                reply_value(value).map(|v| (v, rtt))
            }
            Ok(Err(e)) => {
                if e.is_unrecoverable_error() {
                    inner.drop_connection(live.epoch, &e.to_string());
                }
                Err(inner.map_error(&e))
            }
            Err(_) => {
                // Silent for a good while: nothing came back on this
                // connection since the request was sent, not even replies to
                // requests sent before it. Treat the store as gone (a host
                // that died without closing its sockets looks like this).
                let waited_long = rtt >= inner.request_timeout / 2;
                if waited_long && live.last_reply.load(Ordering::Relaxed) < sent_us {
                    inner.drop_connection(live.epoch, "no reply within the request timeout");
                }
                Err(ClientError::Timeout)
            }
        }
    }
}

/// State shared by the clones of a [`StoreClient`].
struct Inner {
    /// As returned by [`StoreClient::addr`].
    addr: String,
    /// `host:port` (never credentials), for messages.
    display_addr: String,
    backend: Backend,
    connector: Connector,
    request_timeout: Duration,
    connect_timeout: Duration,
    max_backoff: Duration,
    /// Time base of [`Live::last_reply`].
    origin: Instant,
    state: Mutex<ConnState>,
    /// Held by the one task opening a connection.
    connect_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct ConnState {
    live: Option<Live>,
    /// Epoch of the last connection opened.
    epoch: u64,
    /// Failed connection attempts since the last success.
    failures: u32,
    /// While in backoff: when the next attempt may be made.
    retry_at: Option<Instant>,
    /// Why the last attempt failed or the last connection was dropped.
    last_error: Option<ClientError>,
}

/// How connections are opened.
enum Connector {
    /// One server: one multiplexed connection.
    Single(redis::Client, AsyncConnectionConfig),
    /// A Redis Cluster: the `redis` crate's cluster client, which keeps a
    /// multiplexed connection to every master and routes each command by
    /// its key's slot (following `MOVED` and `ASK`).
    Cluster(redis::cluster::ClusterClient),
}

/// An open connection of either kind.
#[derive(Clone)]
enum Conn {
    Single(MultiplexedConnection),
    Cluster(redis::cluster_async::ClusterConnection),
}

impl Conn {
    async fn send(&mut self, cmd: &Cmd) -> Result<Value, RedisError> {
        match self {
            Self::Single(c) => c.send_packed_command(cmd).await,
            Self::Cluster(c) => redis::aio::ConnectionLike::req_packed_command(c, cmd).await,
        }
    }
}

/// An open connection.
#[derive(Clone)]
struct Live {
    conn: Conn,
    /// Tells apart successive connections, so a late error on an old one
    /// does not drop a new one.
    epoch: u64,
    /// When a reply last arrived on this connection, in microseconds since
    /// [`Inner::origin`].
    last_reply: Arc<AtomicU64>,
}

enum Ready {
    Live(Live),
    Connect,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, ConnState> {
        // Nothing panics while holding the lock; recover if it ever did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// The open connection, or whether a connection attempt may be made
    /// now; in backoff, the error to fail with.
    fn ready(&self) -> Result<Ready, ClientError> {
        let st = self.state();
        if let Some(live) = &st.live {
            return Ok(Ready::Live(live.clone()));
        }
        let now = Instant::now();
        match st.retry_at {
            Some(at) if now < at => Err(self.unavailable(&st, at - now)),
            _ => Ok(Ready::Connect),
        }
    }

    fn unavailable(&self, st: &ConnState, wait: Duration) -> ClientError {
        match &st.last_error {
            Some(ClientError::Auth(msg)) => ClientError::Auth(msg.clone()),
            last => {
                let why = match last {
                    Some(ClientError::ConnectionLost(msg)) => msg.clone(),
                    Some(other) => other.to_string(),
                    None => String::from("unknown error"),
                };
                ClientError::ConnectionLost(format!(
                    "store {} unavailable, reconnecting in {} ms (last error: {why})",
                    self.display_addr,
                    wait.as_millis()
                ))
            }
        }
    }

    /// The open connection, opening one if needed and allowed.
    async fn acquire(self: &Arc<Self>) -> Result<Live, ClientError> {
        if let Ready::Live(live) = self.ready()? {
            return Ok(live);
        }
        let guard = Arc::clone(&self.connect_lock).lock_owned().await;
        // Another task may have connected, or failed, while we waited.
        if let Ready::Live(live) = self.ready()? {
            return Ok(live);
        }
        // Connect in a task of its own, so that the attempt completes and
        // its outcome is recorded even if this request is cancelled or
        // times out.
        let inner = Arc::clone(self);
        let attempt = tokio::spawn(async move {
            let _guard = guard;
            inner.connect().await
        });
        match attempt.await {
            Ok(result) => result,
            Err(e) => Err(ClientError::ConnectionLost(format!(
                "connection attempt to store {} aborted: {e}",
                self.display_addr
            ))),
        }
    }

    /// One connection attempt; records its outcome.
    async fn connect(&self) -> Result<Live, ClientError> {
        let attempt = async {
            let mut conn = match &self.connector {
                Connector::Single(client, config) => Conn::Single(
                    client
                        .get_multiplexed_async_connection_with_config(config)
                        .await?,
                ),
                Connector::Cluster(client) => Conn::Cluster(client.get_async_connection().await?),
            };
            if self.backend == Backend::Scripts {
                self.load_scripts(&mut conn).await?;
            }
            Ok(conn)
        };
        let result = match tokio::time::timeout(self.connect_timeout, attempt).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.map_connect_error(&e)),
            Err(_) => Err(ClientError::ConnectionLost(format!(
                "cannot connect to store {}: timed out after {} ms",
                self.display_addr,
                self.connect_timeout.as_millis()
            ))),
        };
        let mut st = self.state();
        match result {
            Ok(conn) => {
                st.epoch += 1;
                let live = Live {
                    conn,
                    epoch: st.epoch,
                    last_reply: Arc::new(AtomicU64::new(self.micros(Instant::now()))),
                };
                if st.failures > 0 {
                    tracing::info!(store = %self.display_addr, "reconnected to store");
                }
                st.live = Some(live.clone());
                st.failures = 0;
                st.retry_at = None;
                st.last_error = None;
                Ok(live)
            }
            Err(e) => {
                st.failures = st.failures.saturating_add(1);
                let delay = backoff_delay(st.failures, self.max_backoff, random_u64());
                st.retry_at = Some(Instant::now() + delay);
                if st.failures == 1 {
                    tracing::warn!(store = %self.display_addr, error = %e, "store connection attempt failed");
                } else {
                    tracing::debug!(store = %self.display_addr, error = %e, failures = st.failures, "store connection attempt failed");
                }
                st.last_error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// `SCRIPT LOAD`s the session scripts on a new connection to Redis (one
    /// pipelined round trip), so that requests can use `EVALSHA` at once.
    /// A transport error fails the connection; an error reply (scripting
    /// disabled, or denied by an ACL) is only logged: the requests then
    /// fail with that error themselves.
    ///
    /// On a Redis Cluster each `SCRIPT LOAD` goes to every node, one after
    /// the other.
    async fn load_scripts(&self, conn: &mut Conn) -> Result<(), RedisError> {
        let loads = match conn {
            Conn::Single(c) => {
                let mut pipe = redis::pipe();
                for (source, _) in SCRIPTS.all() {
                    pipe.cmd("SCRIPT").arg("LOAD").arg(source);
                }
                c.send_packed_commands(&pipe, 0, 5).await
            }
            Conn::Cluster(c) => {
                let mut replies = Vec::new();
                let mut result = Ok(());
                for (source, _) in SCRIPTS.all() {
                    let mut cmd = redis::cmd("SCRIPT");
                    cmd.arg("LOAD").arg(source);
                    match redis::aio::ConnectionLike::req_packed_command(c, &cmd).await {
                        Ok(v) => replies.push(v),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                result.map(|()| replies)
            }
        };
        match loads {
            Ok(replies) => {
                for ((_, script), reply) in SCRIPTS.all().iter().zip(&replies) {
                    let loaded = match reply {
                        Value::BulkString(b) => b.as_slice() == script.get_hash().as_bytes(),
                        Value::SimpleString(s) => s == script.get_hash(),
                        _ => false,
                    };
                    if !loaded {
                        tracing::warn!(store = %self.display_addr, reply = describe(reply), "SCRIPT LOAD did not answer the script's digest");
                    }
                }
                Ok(())
            }
            Err(e) if e.code().is_some() => {
                tracing::warn!(store = %self.display_addr, error = %clip(&e.to_string()), "cannot load the session scripts");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Forgets connection `epoch` (if still current) so that the next
    /// request opens a new one.
    fn drop_connection(&self, epoch: u64, reason: &str) {
        let mut st = self.state();
        if st.live.as_ref().is_some_and(|l| l.epoch == epoch) {
            st.live = None;
            st.last_error = Some(ClientError::ConnectionLost(clip(reason)));
            tracing::warn!(store = %self.display_addr, reason, "store connection lost, reconnecting");
        }
    }

    fn map_connect_error(&self, e: &RedisError) -> ClientError {
        match error_from_redis(e) {
            ClientError::Auth(msg) => ClientError::Auth(msg),
            ClientError::Timeout => ClientError::ConnectionLost(format!(
                "cannot connect to store {}: timed out",
                self.display_addr
            )),
            _ => ClientError::ConnectionLost(format!(
                "cannot connect to store {}: {}",
                self.display_addr,
                clip(&e.to_string())
            )),
        }
    }

    fn map_error(&self, e: &RedisError) -> ClientError {
        match error_from_redis(e) {
            ClientError::ConnectionLost(msg) => {
                ClientError::ConnectionLost(format!("store {}: {msg}", self.display_addr))
            }
            other => other,
        }
    }
}

/// Scheme of a Redis Cluster address:
/// `redis+cluster://[user:password@]host:port,host:port[/?protocol=resp3]`.
const CLUSTER_SCHEME: &str = "redis+cluster://";

/// The cluster client for a Redis Cluster address (`rest` follows the
/// scheme), the address to show as [`StoreClient::addr`] and the nodes for
/// messages.
fn cluster_client(
    rest: &str,
    options: &ClientOptions,
) -> Result<(redis::cluster::ClusterClient, String, String), ClientError> {
    // Messages never quote the address: it may carry a password.
    let invalid = || {
        ClientError::InvalidConfig(String::from(
            "a Redis Cluster address is redis+cluster://[user:password@]host:port,host:port...",
        ))
    };
    let (hosts_etc, userinfo) = match rest.rsplit_once('@') {
        Some((creds, hosts)) => (hosts, format!("{creds}@")),
        None => (rest, String::new()),
    };
    let split = hosts_etc.find(['/', '?']).unwrap_or(hosts_etc.len());
    let (hosts, suffix) = hosts_etc.split_at(split);
    let mut nodes = Vec::new();
    for host in hosts.split(',') {
        if host.is_empty() {
            return Err(invalid());
        }
        let url = redis::parse_redis_url(&format!("redis://{userinfo}{host}{suffix}"))
            .ok_or_else(invalid)?;
        let info = url.into_connection_info().map_err(|_| invalid())?;
        let mut settings = info
            .redis_settings()
            .clone()
            .set_lib_name("sticky", env!("CARGO_PKG_VERSION"));
        if let Some(username) = &options.username {
            settings = settings.set_username(username);
        }
        if let Some(password) = &options.password {
            settings = settings.set_password(password);
        }
        nodes.push(info.set_redis_settings(settings));
    }
    let tcp = TcpSettings::default().set_nodelay(true);
    let client = redis::cluster::ClusterClientBuilder::new(nodes)
        .connection_timeout(options.connect_timeout)
        .response_timeout(options.request_timeout)
        .tcp_settings(tcp)
        .build()
        .map_err(|e| ClientError::InvalidConfig(clip(&e.to_string())))?;
    Ok((
        client,
        format!("{CLUSTER_SCHEME}{hosts}{suffix}"),
        hosts.to_owned(),
    ))
}

/// The connection info for `addr` with `options` applied, the address
/// to show as [`StoreClient::addr`], and the backend the address selects.
fn connection_info(
    addr: &str,
    options: &ClientOptions,
) -> Result<(redis::ConnectionInfo, String, Backend), ClientError> {
    const STICKY: &str = "sticky://";
    let (url_text, backend) = if let Some(rest) = addr.strip_prefix(STICKY) {
        (Cow::Owned(format!("redis://{rest}")), Backend::Native)
    } else if addr.contains("://") {
        (Cow::Borrowed(addr), Backend::Scripts)
    } else {
        (Cow::Owned(format!("redis://{addr}")), Backend::Native)
    };
    // Messages never quote `addr`: it may carry a password.
    let invalid = || {
        ClientError::InvalidConfig(String::from(
            "store address is neither host:port nor a sticky:// or redis:// URL",
        ))
    };
    let mut url = redis::parse_redis_url(&url_text).ok_or_else(invalid)?;
    let info = url.clone().into_connection_info().map_err(|_| invalid())?;
    let public_addr = if url.password().is_some() || !url.username().is_empty() {
        // Both only fail for URLs that cannot carry credentials.
        let _ = url.set_password(None);
        let _ = url.set_username("");
        match (backend, url.as_str().strip_prefix("redis://")) {
            // A `sticky://` URL, so that the address still selects the
            // native commands.
            (Backend::Native, Some(rest)) => format!("{STICKY}{rest}"),
            _ => url.to_string(),
        }
    } else {
        addr.to_owned()
    };
    let mut redis_settings = info
        .redis_settings()
        .clone()
        .set_lib_name("sticky", env!("CARGO_PKG_VERSION"));
    if let Some(username) = &options.username {
        redis_settings = redis_settings.set_username(username);
    }
    if let Some(password) = &options.password {
        redis_settings = redis_settings.set_password(password);
    }
    // Requests are small and latency-bound: no Nagle.
    let tcp_settings: TcpSettings = info.tcp_settings().clone().set_nodelay(true);
    let info = info
        .set_redis_settings(redis_settings)
        .set_tcp_settings(tcp_settings);
    Ok((info, public_addr, backend))
}

/// A TTL as sent: milliseconds, `0` for none. A TTL is rounded up to a
/// whole millisecond, so that a tiny TTL never becomes "no expiry".
fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, duration_ms)
}

/// `d` in milliseconds, rounded up, at least 1, at most `i64::MAX` (which
/// any integer parser takes).
fn duration_ms(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(ms)
        .unwrap_or(u64::MAX)
        .min(i64::MAX.unsigned_abs())
}

/// Backoff after the `failures`-th failed connection attempt in a row:
/// `MIN_BACKOFF * 2^(failures - 1)` capped at `max`, then reduced by up to
/// half using `jitter`, so that many clients do not reconnect in lockstep.
fn backoff_delay(failures: u32, max: Duration, jitter: u64) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    let full = MIN_BACKOFF.saturating_mul(1 << doublings).min(max);
    let half = full / 2;
    let half_ns = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    let extra = jitter.checked_rem(half_ns.saturating_add(1)).unwrap_or(0);
    half + Duration::from_nanos(extra)
}

/// A random number, good enough for jitter.
fn random_u64() -> u64 {
    RandomState::new().build_hasher().finish()
}

/// `s` cut to [`MAX_ERROR_TEXT`] bytes (on a character boundary).
fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A reply with RESP3 attributes removed and an error reply turned into
/// its [`ClientError`].
fn reply_value(value: Value) -> Result<Value, ClientError> {
    match value {
        Value::Attribute { data, .. } => reply_value(*data),
        Value::ServerError(e) => Err(server_error(e.code(), e.details())),
        other => Ok(other),
    }
}

/// The [`ClientError`] for the error reply `-<code> <detail>`.
fn server_error(code: &str, detail: Option<&str>) -> ClientError {
    let mut detail = detail.unwrap_or("").trim();
    // Redis quotes the arguments of an unknown command (key, payload...).
    if let Some(at) = detail.find(", with args beginning with") {
        detail = &detail[..at];
    }
    match code {
        command::ERR_STALE => match parse_stamp_detail(detail) {
            Some(stored) => ClientError::Stale { stored },
            None => ClientError::Protocol(format!(
                "{code} error without a valid stamp: {:?}",
                clip(detail)
            )),
        },
        command::ERR_DELETED => match parse_stamp_detail(detail) {
            Some(stamp) => ClientError::Deleted { stamp },
            None => ClientError::Protocol(format!(
                "{code} error without a valid stamp: {:?}",
                clip(detail)
            )),
        },
        command::ERR_NOSESSION => ClientError::NoSession,
        command::ERR_OOM => ClientError::OutOfMemory(clip(detail)),
        "NOAUTH" | "WRONGPASS" => ClientError::Auth(clip(&format!("{code} {detail}"))),
        _ if detail.is_empty() => ClientError::Server(clip(code)),
        _ => ClientError::Server(clip(&format!("{code} {detail}"))),
    }
}

/// The stamp in the `<gen> <seq>` detail of a `STALE` or `DELETED` error.
fn parse_stamp_detail(detail: &str) -> Option<Stamp> {
    let mut words = detail.split_ascii_whitespace();
    let generation = words.next()?.parse().ok()?;
    let seq = words.next()?.parse().ok()?;
    match words.next() {
        None => Some(Stamp::new(generation, seq)),
        Some(_) => None,
    }
}

/// The [`ClientError`] for an error of the `redis` crate.
fn error_from_redis(e: &RedisError) -> ClientError {
    if let Some(code) = e.code() {
        return server_error(code, e.detail());
    }
    if e.kind() == ErrorKind::AuthenticationFailed {
        return ClientError::Auth(clip(&e.to_string()));
    }
    if e.is_timeout() {
        return ClientError::Timeout;
    }
    if e.is_io_error() || e.is_unrecoverable_error() {
        if e.kind() == ErrorKind::Parse {
            // The parser's message may quote the bytes it choked on.
            return ClientError::ConnectionLost(String::from(
                "malformed reply, connection dropped",
            ));
        }
        return ClientError::ConnectionLost(clip(&e.to_string()));
    }
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            ClientError::Protocol(format!("{} from the redis client", e.category()))
        }
        _ => ClientError::Server(clip(&e.to_string())),
    }
}

/// `+OK`, or a [`ClientError::Protocol`].
fn expect_ok(reply: Value, what: &str) -> Result<(), ClientError> {
    match reply {
        Value::Okay => Ok(()),
        Value::SimpleString(s) if s == "OK" => Ok(()),
        other => Err(unexpected(what, "+OK", &other)),
    }
}

/// The reply of `SESS.TOUCH`: `:1` or `:0`.
fn parse_touch(reply: Value) -> Result<bool, ClientError> {
    match reply {
        Value::Int(1) | Value::Boolean(true) => Ok(true),
        Value::Int(0) | Value::Boolean(false) => Ok(false),
        other => Err(unexpected(
            SessionCommand::Touch.as_str(),
            ":0 or :1",
            &other,
        )),
    }
}

/// The reply of `SESS.GET`: null, or
/// `[kind, gen, seq, owner, pttl_ms, payload]`.
fn parse_session(reply: Value) -> Result<Option<StoredSession>, ClientError> {
    let items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => items,
        other => {
            return Err(unexpected(
                SessionCommand::Get.as_str(),
                "an array or null",
                &other,
            ))
        }
    };
    let n = items.len();
    let [kind, generation, seq, owner, pttl, payload]: [Value; 6] =
        items.try_into().map_err(|_| {
            ClientError::Protocol(format!(
                "{}: expected 6 elements, got {n}",
                SessionCommand::Get.as_str()
            ))
        })?;
    let bad = |field: &str, expected: &str, got: &Value| {
        ClientError::Protocol(format!(
            "{}: {field}: expected {expected}, got {}",
            SessionCommand::Get.as_str(),
            describe(got)
        ))
    };
    let deleted = match text(&kind) {
        Some(command::KIND_LIVE) => false,
        Some(command::KIND_TOMBSTONE) => true,
        Some(other) => {
            return Err(ClientError::Protocol(format!(
                "{}: unknown kind ({} bytes)",
                SessionCommand::Get.as_str(),
                other.len()
            )))
        }
        None => return Err(bad("kind", "a string", &kind)),
    };
    let stamp = Stamp::new(
        unsigned(&generation)
            .ok_or_else(|| bad("generation", "an unsigned integer", &generation))?,
        unsigned(&seq).ok_or_else(|| bad("seq", "an unsigned integer", &seq))?,
    );
    let ttl = match signed(&pttl) {
        Some(-1) => None,
        Some(ms) if ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
        _ => return Err(bad("pttl_ms", "-1 or a non-negative integer", &pttl)),
    };
    let owner = match owner {
        Value::Nil => String::new(),
        Value::BulkString(b) => String::from_utf8(b).map_err(|_| {
            ClientError::Protocol(format!(
                "{}: owner is not UTF-8",
                SessionCommand::Get.as_str()
            ))
        })?,
        Value::SimpleString(s) => s,
        other => return Err(bad("owner", "a string", &other)),
    };
    let payload = match payload {
        Value::Nil => Bytes::new(),
        Value::BulkString(b) => Bytes::from(b),
        Value::SimpleString(s) => Bytes::from(s.into_bytes()),
        other => return Err(bad("payload", "a bulk string", &other)),
    };
    Ok(Some(StoredSession {
        stamp,
        owner,
        ttl,
        payload,
        deleted,
    }))
}

/// A short text value (bulk or simple string), if `v` is one.
fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// An integer, or a string holding one.
fn signed(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => text(v)?.parse().ok(),
    }
}

/// An unsigned 64-bit integer, or a string holding one (RESP integers are
/// signed, so a store may send values over `i64::MAX` as strings).
fn unsigned(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => text(v)?.parse().ok(),
    }
}

fn unexpected(what: &str, expected: &str, got: &Value) -> ClientError {
    ClientError::Protocol(format!(
        "{what}: expected {expected}, got {}",
        describe(got)
    ))
}

/// The type of a reply, for messages: never its content, which may be a
/// payload.
fn describe(v: &Value) -> &'static str {
    match v {
        Value::Nil => "null",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a bulk string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) => "a status",
        Value::Okay => "+OK",
        Value::Map(_) => "a map",
        Value::Attribute { .. } => "an attribute",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        Value::VerbatimString { .. } => "a verbatim string",
        Value::Push { .. } => "a push",
        Value::ServerError(_) => "an error",
        _ => "an unsupported RESP type",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::resp::{parse_request, Limits, Reply, Version};
    use bytes::BytesMut;
    use std::sync::atomic::AtomicUsize;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    // ---- reply parsing, no server needed ----

    fn parse(wire: &[u8]) -> Value {
        redis::parse_redis_value(wire).unwrap()
    }

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    fn get_reply(kind: &str, g: i64, s: i64, owner: &str, pttl: i64, payload: &[u8]) -> Value {
        Value::Array(vec![
            bulk(kind.as_bytes()),
            Value::Int(g),
            Value::Int(s),
            bulk(owner.as_bytes()),
            Value::Int(pttl),
            bulk(payload),
        ])
    }

    #[test]
    fn error_replies_map_to_client_errors() {
        let cases = [
            (
                &b"-STALE 3 7\r\n"[..],
                ClientError::Stale {
                    stored: Stamp::new(3, 7),
                },
            ),
            (
                b"-DELETED 18446744073709551615 0\r\n",
                ClientError::Deleted {
                    stamp: Stamp::new(u64::MAX, 0),
                },
            ),
            (b"-NOSESSION no such session\r\n", ClientError::NoSession),
            (
                b"-OOM command not allowed when used memory > 'maxmemory'\r\n",
                ClientError::OutOfMemory(
                    "command not allowed when used memory > 'maxmemory'".into(),
                ),
            ),
            (
                b"-NOAUTH Authentication required.\r\n",
                ClientError::Auth("NOAUTH Authentication required.".into()),
            ),
            (
                b"-WRONGPASS invalid username-password pair\r\n",
                ClientError::Auth("WRONGPASS invalid username-password pair".into()),
            ),
            (
                b"-ERR new stamp must be higher\r\n",
                ClientError::Server("ERR new stamp must be higher".into()),
            ),
            (b"-WEIRD\r\n", ClientError::Server("WEIRD".into())),
            (
                b"-ERR unknown command 'SESS.PUT', with args beginning with: 'k' 'SECRET' \r\n",
                ClientError::Server("ERR unknown command 'SESS.PUT'".into()),
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(reply_value(parse(wire)), Err(want), "{wire:?}");
        }
    }

    #[test]
    fn malformed_stamps_in_errors_are_protocol_errors() {
        for wire in [
            &b"-STALE\r\n"[..],
            b"-STALE 3\r\n",
            b"-STALE 3 x\r\n",
            b"-STALE -1 2\r\n",
            b"-STALE 1 2 3\r\n",
            b"-DELETED 18446744073709551616 0\r\n",
        ] {
            assert!(
                matches!(reply_value(parse(wire)), Err(ClientError::Protocol(_))),
                "{wire:?}"
            );
        }
        assert_eq!(parse_stamp_detail("  3   7 "), Some(Stamp::new(3, 7)));
    }

    #[test]
    fn get_replies_parse() {
        assert_eq!(parse_session(Value::Nil), Ok(None));
        assert_eq!(parse_session(parse(b"_\r\n")), Ok(None), "RESP3 null");
        let live = parse_session(get_reply("live", 3, 7, "web-1", 1500, b"\x00\xffdata"))
            .unwrap()
            .unwrap();
        assert_eq!(
            live,
            StoredSession {
                stamp: Stamp::new(3, 7),
                owner: "web-1".into(),
                ttl: Some(Duration::from_millis(1500)),
                payload: Bytes::from_static(b"\x00\xffdata"),
                deleted: false,
            }
        );
        let tomb = parse_session(get_reply("tombstone", 4, 0, "", -1, b""))
            .unwrap()
            .unwrap();
        assert!(tomb.deleted);
        assert_eq!(tomb.ttl, None);
        assert_eq!(tomb.stamp, Stamp::new(4, 0));
        assert!(tomb.payload.is_empty() && tomb.owner.is_empty());

        // Stamps over i64::MAX sent as strings, nulls for tombstone fields.
        let big = Value::Array(vec![
            Value::SimpleString("tombstone".into()),
            bulk(b"18446744073709551615"),
            bulk(b"2"),
            Value::Nil,
            bulk(b"0"),
            Value::Nil,
        ]);
        let big = parse_session(big).unwrap().unwrap();
        assert_eq!(big.stamp, Stamp::new(u64::MAX, 2));
        assert_eq!(big.ttl, Some(Duration::ZERO));

        // The wire form, as the store sends it.
        let wire = b"*6\r\n$4\r\nlive\r\n:1\r\n:2\r\n$1\r\nw\r\n:-1\r\n$4\r\na\r\nb\r\n";
        let s = parse_session(parse(wire)).unwrap().unwrap();
        assert_eq!(s.payload, Bytes::from_static(b"a\r\nb"));
        assert_eq!(s.ttl, None);
    }

    #[test]
    fn malformed_get_replies_are_protocol_errors_without_payload() {
        let secret = b"SECRET-PAYLOAD";
        let bad = [
            Value::Okay,
            Value::Int(1),
            bulk(secret),
            Value::Array(vec![]),
            Value::Array(vec![bulk(b"live"), Value::Int(1), Value::Int(2)]),
            get_reply("SECRET-PAYLOAD", 1, 2, "w", 5, secret),
            get_reply("live", -1, 2, "w", 5, secret),
            get_reply("live", 1, -2, "w", 5, secret),
            get_reply("live", 1, 2, "w", -2, secret),
            Value::Array(vec![
                bulk(b"live"),
                Value::Int(1),
                Value::Int(2),
                bulk(b"\xff\xfe"),
                Value::Int(5),
                bulk(secret),
            ]),
            Value::Array(vec![
                bulk(b"live"),
                Value::Int(1),
                Value::Int(2),
                bulk(b"w"),
                Value::Int(5),
                Value::Array(vec![bulk(secret)]),
            ]),
            Value::Array(vec![
                bulk(secret),
                bulk(secret),
                bulk(secret),
                Value::Int(0),
                bulk(secret),
                Value::Int(0),
            ]),
            Value::Array(vec![Value::Nil; 7]),
        ];
        for v in bad {
            let err = parse_session(v.clone()).unwrap_err();
            assert!(matches!(err, ClientError::Protocol(_)), "{v:?} -> {err:?}");
            let msg = err.to_string();
            assert!(!msg.contains("SECRET"), "payload leaked: {msg}");
        }
    }

    #[test]
    fn ok_touch_and_ping_replies() {
        assert_eq!(expect_ok(parse(b"+OK\r\n"), "X"), Ok(()));
        assert_eq!(expect_ok(Value::SimpleString("OK".into()), "X"), Ok(()));
        assert!(matches!(
            expect_ok(Value::Int(1), "X"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            expect_ok(bulk(b"OK"), "X"),
            Err(ClientError::Protocol(_))
        ));
        assert_eq!(parse_touch(parse(b":1\r\n")), Ok(true));
        assert_eq!(parse_touch(parse(b":0\r\n")), Ok(false));
        assert_eq!(parse_touch(parse(b"#t\r\n")), Ok(true));
        assert!(matches!(
            parse_touch(Value::Int(2)),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_touch(Value::Nil),
            Err(ClientError::Protocol(_))
        ));
        // RESP3 attributes are transparent.
        let attr = Value::Attribute {
            data: Box::new(Value::Okay),
            attributes: vec![],
        };
        assert_eq!(reply_value(attr), Ok(Value::Okay));
    }

    #[test]
    fn redis_errors_map_to_client_errors() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        assert_eq!(
            error_from_redis(&io(std::io::ErrorKind::TimedOut)),
            ClientError::Timeout
        );
        assert!(matches!(
            error_from_redis(&io(std::io::ErrorKind::ConnectionRefused)),
            ClientError::ConnectionLost(_)
        ));
        assert!(matches!(
            error_from_redis(&io(std::io::ErrorKind::BrokenPipe)),
            ClientError::ConnectionLost(_)
        ));
        assert!(matches!(
            error_from_redis(&RedisError::from((
                ErrorKind::AuthenticationFailed,
                "Password authentication failed"
            ))),
            ClientError::Auth(_)
        ));
        let stale = redis::make_extension_error("STALE".into(), Some("5 6".into()));
        assert_eq!(
            error_from_redis(&stale),
            ClientError::Stale {
                stored: Stamp::new(5, 6)
            }
        );
        assert!(ClientError::Timeout.is_retryable());
        assert!(ClientError::ConnectionLost(String::new()).is_retryable());
        assert!(!ClientError::Stale {
            stored: Stamp::default()
        }
        .is_retryable());
        assert!(!ClientError::Auth(String::new()).is_retryable());
    }

    #[test]
    fn ttls_travel_as_milliseconds() {
        assert_eq!(ttl_ms(None), 0);
        assert_eq!(ttl_ms(Some(Duration::ZERO)), 1, "never 'no expiry'");
        assert_eq!(ttl_ms(Some(Duration::from_nanos(1))), 1);
        assert_eq!(ttl_ms(Some(Duration::from_micros(1500))), 2);
        assert_eq!(ttl_ms(Some(Duration::from_secs(30))), 30_000);
        assert_eq!(ttl_ms(Some(Duration::MAX)), i64::MAX.unsigned_abs());
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let max = Duration::from_secs(2);
        assert_eq!(backoff_delay(1, max, 0), Duration::from_millis(50));
        assert_eq!(
            backoff_delay(1, max, u64::MAX),
            Duration::from_millis(50) + Duration::from_nanos(u64::MAX % 50_000_001)
        );
        for failures in 1..100 {
            for jitter in [0, 1, 12_345_678, u64::MAX] {
                let d = backoff_delay(failures, max, jitter);
                let full = MIN_BACKOFF
                    .saturating_mul(1 << failures.saturating_sub(1).min(16))
                    .min(max);
                assert!(d >= full / 2 && d <= full, "{failures} {jitter} {d:?}");
            }
        }
        assert_eq!(backoff_delay(30, max, 0), Duration::from_secs(1));
        assert_eq!(backoff_delay(3, Duration::ZERO, 99), Duration::ZERO);
    }

    #[test]
    fn clip_cuts_on_char_boundaries() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(MAX_ERROR_TEXT);
        let cut = clip(&long);
        assert!(cut.len() <= MAX_ERROR_TEXT + 3 && cut.ends_with("..."));
    }

    #[test]
    fn new_parses_addresses_without_connecting() {
        // No runtime, no server: construction must not connect.
        let c = StoreClient::new("127.0.0.1:1", ClientOptions::default()).unwrap();
        assert_eq!(c.addr(), "127.0.0.1:1");
        let c = StoreClient::new("[::1]:7000", ClientOptions::default()).unwrap();
        assert_eq!(c.addr(), "[::1]:7000");
        let c =
            StoreClient::new("redis://:hunter2@localhost:7000/", ClientOptions::default()).unwrap();
        assert!(!c.addr().contains("hunter2"), "{}", c.addr());
        assert!(!format!("{c:?}").contains("hunter2"));
        let c = StoreClient::new("app:hunter2@localhost:7000", ClientOptions::default()).unwrap();
        assert!(!c.addr().contains("hunter2"), "{}", c.addr());
        assert_eq!(c.addr(), "sticky://localhost:7000");
        match StoreClient::new("redis://:hunter2@host:x", ClientOptions::default()) {
            Err(e @ ClientError::InvalidConfig(_)) => assert!(!e.to_string().contains("hunter2")),
            other => panic!("{other:?}"),
        }
        let opts = ClientOptions {
            password: Some("hunter2".into()),
            ..ClientOptions::default()
        };
        assert!(!format!("{opts:?}").contains("hunter2"));
        for bad in ["", "http://example.com", "host:notaport", "redis://"] {
            assert!(
                matches!(
                    StoreClient::new(bad, ClientOptions::default()),
                    Err(ClientError::InvalidConfig(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_address_selects_the_backend() {
        let backend = |addr: &str| {
            StoreClient::new(addr, ClientOptions::default())
                .unwrap()
                .inner
                .backend
        };
        for native in [
            "127.0.0.1:7000",
            "localhost:7000",
            "sticky://127.0.0.1:7000",
            "sticky://:pw@127.0.0.1:7000/?protocol=resp3",
        ] {
            assert_eq!(backend(native), Backend::Native, "{native}");
        }
        for redis in [
            "redis://127.0.0.1:6379",
            "redis://app:pw@127.0.0.1:6379/",
            "redis://127.0.0.1:6379/?protocol=resp3",
            "valkey://127.0.0.1:6379",
        ] {
            assert_eq!(backend(redis), Backend::Scripts, "{redis}");
        }
        let c = StoreClient::new("sticky://u:pw@127.0.0.1:7000", ClientOptions::default()).unwrap();
        assert_eq!(c.addr(), "sticky://127.0.0.1:7000");
        let c = StoreClient::new("redis://u:pw@127.0.0.1:6379", ClientOptions::default()).unwrap();
        assert_eq!(c.addr(), "redis://127.0.0.1:6379");
        assert!(format!("{c:?}").contains("Scripts"));
        assert!(matches!(
            StoreClient::new("sticky://", ClientOptions::default()),
            Err(ClientError::InvalidConfig(_))
        ));

        // Redis Cluster: scripts, through the cluster client.
        let c = StoreClient::new(
            "redis+cluster://app:p@ss@127.0.0.1:7001,127.0.0.1:7002/?protocol=resp3",
            ClientOptions::default(),
        )
        .unwrap();
        assert_eq!(c.inner.backend, Backend::Scripts);
        assert!(matches!(c.inner.connector, Connector::Cluster(_)));
        assert_eq!(
            c.addr(),
            "redis+cluster://127.0.0.1:7001,127.0.0.1:7002/?protocol=resp3"
        );
        assert_eq!(c.inner.display_addr, "127.0.0.1:7001,127.0.0.1:7002");
        assert!(!format!("{c:?}").contains("p@ss"));
        for bad in [
            "redis+cluster://",
            "redis+cluster://127.0.0.1:7001,,127.0.0.1:7002",
            "redis+cluster://:secret@h:x",
        ] {
            match StoreClient::new(bad, ClientOptions::default()) {
                Err(e @ ClientError::InvalidConfig(_)) => {
                    assert!(!e.to_string().contains("secret"), "{e}")
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn redis_backend_sends_evalsha_and_falls_back_to_eval() {
        // A fake Redis that has no scripts loaded: SCRIPT LOAD is refused,
        // EVALSHA answers NOSCRIPT, EVAL answers like the script would.
        let store = FakeStore::start(|args: &[Bytes]| {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            Act::Reply(match name.as_str() {
                "SCRIPT" => Reply::error("ERR scripting is disabled"),
                "EVALSHA" => Reply::error("NOSCRIPT No matching script. Please use EVAL."),
                "EVAL" if &args[3][..] == b"sticky:{gone}" => Reply::Null,
                "EVAL" => Reply::error("STALE 4 2"),
                "PING" => Reply::Simple("PONG"),
                _ => Reply::error(format!("ERR unknown command '{name}'")),
            })
        })
        .await;
        let c = StoreClient::new(&format!("redis://{}", store.addr), options(2000)).unwrap();
        assert_eq!(
            c.put(b"k", Stamp::new(4, 1), "ws1", None, b"p").await,
            Err(ClientError::Stale {
                stored: Stamp::new(4, 2)
            })
        );
        let sent = store.commands();
        let names: Vec<String> = sent
            .iter()
            .map(|c| String::from_utf8_lossy(&c[0]).to_ascii_uppercase())
            .collect();
        // SCRIPT LOAD x5 on connect (refused, logged), then EVALSHA, EVAL.
        assert_eq!(
            names,
            ["SCRIPT", "SCRIPT", "SCRIPT", "SCRIPT", "SCRIPT", "EVALSHA", "EVAL"],
            "{names:?}"
        );
        assert_eq!(
            sent[5],
            args(&[
                b"EVALSHA",
                SCRIPTS.put.get_hash().as_bytes(),
                b"1",
                b"sticky:{k}",
                b"4",
                b"1",
                b"ws1",
                b"0",
                b"p"
            ])
        );
        assert_eq!(&sent[6][1][..], scripts::PUT.as_bytes());
        assert_eq!(&sent[6][2..], &sent[5][2..]);
        assert_eq!(c.get(b"gone").await, Ok(None));
        // Deletes without a TTL leave it to the script's default.
        let _ = c.delete(b"k", Stamp::new(9, 0), None).await;
        assert_eq!(
            store.last_command(),
            args(&[
                b"EVAL",
                scripts::DEL.as_bytes(),
                b"1",
                b"sticky:{k}",
                b"9",
                b"0"
            ])
        );
    }

    #[test]
    fn stored_session_debug_hides_payload() {
        let s = StoredSession {
            stamp: Stamp::new(1, 2),
            owner: "w".into(),
            ttl: None,
            payload: Bytes::from_static(b"SECRET"),
            deleted: false,
        };
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("SECRET") && dbg.contains("payload_len: 6"),
            "{dbg}"
        );
    }

    // ---- against a scripted fake store ----

    /// What the fake store does with a command.
    enum Act {
        Reply(Reply),
        /// Stop answering on this connection (a frozen store).
        Hang,
    }

    type Handler = Arc<dyn Fn(&[Bytes]) -> Act + Send + Sync>;

    /// A fake store speaking RESP2 through `crate::resp`, answering with a
    /// handler; `CLIENT ...` (sent by the handshake) gets `+OK`.
    struct FakeStore {
        addr: std::net::SocketAddr,
        accepted: Arc<AtomicUsize>,
        log: Arc<Mutex<Vec<Vec<Bytes>>>>,
        tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    }

    impl FakeStore {
        async fn start(handler: impl Fn(&[Bytes]) -> Act + Send + Sync + 'static) -> Self {
            Self::start_on("127.0.0.1:0".parse().unwrap(), Arc::new(handler)).await
        }

        async fn start_on(addr: std::net::SocketAddr, handler: Handler) -> Self {
            let listener = TcpListener::bind(addr).await.unwrap();
            let addr = listener.local_addr().unwrap();
            let accepted = Arc::new(AtomicUsize::new(0));
            let log = Arc::new(Mutex::new(Vec::new()));
            let tasks = Arc::new(Mutex::new(Vec::new()));
            let (acc, lg, ts) = (accepted.clone(), log.clone(), tasks.clone());
            let accept = tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    acc.fetch_add(1, Ordering::SeqCst);
                    let task = tokio::spawn(serve(stream, handler.clone(), lg.clone()));
                    ts.lock().unwrap().push(task.abort_handle());
                }
            });
            tasks.lock().unwrap().push(accept.abort_handle());
            Self {
                addr,
                accepted,
                log,
                tasks,
            }
        }

        /// Closes the listener and every connection.
        fn stop(&self) {
            for t in self.tasks.lock().unwrap().drain(..) {
                t.abort();
            }
        }

        fn accepted(&self) -> usize {
            self.accepted.load(Ordering::SeqCst)
        }

        /// Every command received, but the handshake's `CLIENT` and `HELLO`.
        fn commands(&self) -> Vec<Vec<Bytes>> {
            let log = self.log.lock().unwrap();
            log.iter()
                .filter(|c| {
                    let name = c[0].to_ascii_uppercase();
                    name != b"CLIENT" && name != b"HELLO"
                })
                .cloned()
                .collect()
        }

        fn last_command(&self) -> Vec<Bytes> {
            self.log.lock().unwrap().last().cloned().unwrap_or_default()
        }
    }

    impl Drop for FakeStore {
        fn drop(&mut self) {
            self.stop();
        }
    }

    async fn serve(mut stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Vec<Bytes>>>>) {
        let mut buf = BytesMut::new();
        loop {
            while let Some(args) = parse_request(&mut buf, &Limits::default()).unwrap() {
                let Some(name) = args.first() else { continue };
                let act = if name.eq_ignore_ascii_case(b"CLIENT") {
                    Act::Reply(Reply::OK)
                } else {
                    log.lock().unwrap().push(args.clone());
                    handler(&args)
                };
                match act {
                    Act::Reply(reply) => {
                        let mut out = BytesMut::new();
                        reply.encode(Version::Resp2, &mut out);
                        if stream.write_all(&out).await.is_err() {
                            return;
                        }
                    }
                    Act::Hang => std::future::pending::<()>().await,
                }
            }
            match stream.read_buf(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    }

    fn options(request_ms: u64) -> ClientOptions {
        ClientOptions {
            request_timeout: Duration::from_millis(request_ms),
            connect_timeout: Duration::from_millis(request_ms),
            max_backoff: Duration::from_millis(400),
            ..ClientOptions::default()
        }
    }

    fn client(store: &FakeStore, request_ms: u64) -> StoreClient {
        StoreClient::new(&store.addr.to_string(), options(request_ms)).unwrap()
    }

    fn args(list: &[&[u8]]) -> Vec<Bytes> {
        list.iter().map(|a| Bytes::copy_from_slice(a)).collect()
    }

    /// A fake store with a little logic: puts answer `STALE 5 5` for stamps
    /// up to (5, 5), keys name the reply of the other commands.
    fn scripted(args: &[Bytes]) -> Act {
        let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
        let key = args.get(1).cloned().unwrap_or_default();
        let stamp_arg =
            |i: usize| -> u64 { std::str::from_utf8(&args[i]).unwrap().parse().unwrap() };
        let reply = match name.as_str() {
            "PING" => Reply::Simple("PONG"),
            "SESS.PUT" | "SESS.DEL" => {
                let sent = Stamp::new(stamp_arg(2), stamp_arg(3));
                if &key[..] == b"oom" {
                    Reply::error("OOM over --max-memory")
                } else if sent <= Stamp::new(5, 5) {
                    Reply::error("STALE 5 5")
                } else {
                    Reply::OK
                }
            }
            "SESS.GET" => match &key[..] {
                b"none" => Reply::Null,
                b"live" => Reply::Array(vec![
                    Reply::bulk("live"),
                    Reply::Int(2),
                    Reply::Int(9),
                    Reply::bulk("web-2"),
                    Reply::Int(60_000),
                    Reply::bulk(b"\x00payload\r\n"),
                ]),
                b"tomb" => Reply::Array(vec![
                    Reply::bulk("tombstone"),
                    Reply::Int(3),
                    Reply::Int(0),
                    Reply::bulk(""),
                    Reply::Int(-1),
                    Reply::bulk(""),
                ]),
                b"short" => Reply::Array(vec![Reply::bulk("live")]),
                b"hang" => return Act::Hang,
                _ => Reply::Int(7),
            },
            "SESS.CLAIM" => match &key[..] {
                b"ok" => Reply::OK,
                b"stale" => Reply::error("STALE 2 10"),
                b"deleted" => Reply::error("DELETED 3 0"),
                b"none" => Reply::error("NOSESSION no such session"),
                _ => Reply::error("ERR new stamp must be higher than the expected one"),
            },
            "SESS.TOUCH" => Reply::Int(i64::from(&key[..] == b"live")),
            _ => Reply::error(format!("ERR unknown command '{name}'")),
        };
        Act::Reply(reply)
    }

    #[tokio::test]
    async fn session_commands_against_a_fake_store() {
        let store = FakeStore::start(scripted).await;
        let c = client(&store, 2000);

        assert!(c.ping().await.unwrap() < Duration::from_secs(2));

        let key: &[u8] = b"k\x00\xff\r\n";
        let payload: &[u8] = b"\x00\x01binary\r\n\xff";
        let ttl = Some(Duration::from_secs(30));
        c.put(key, Stamp::new(6, 0), "web-1", ttl, payload)
            .await
            .unwrap();
        assert_eq!(
            store.last_command(),
            args(&[b"SESS.PUT", key, b"6", b"0", b"web-1", b"30000", payload])
        );
        // STALE naming our own stamp: an earlier attempt landed.
        c.put(b"k", Stamp::new(5, 5), "web-1", None, b"x")
            .await
            .unwrap();
        assert_eq!(store.last_command()[5], Bytes::from_static(b"0"), "no TTL");
        assert_eq!(
            c.put(b"k", Stamp::new(5, 4), "web-1", None, b"x").await,
            Err(ClientError::Stale {
                stored: Stamp::new(5, 5)
            })
        );
        assert!(matches!(
            c.put(b"oom", Stamp::new(9, 9), "web-1", None, b"x").await,
            Err(ClientError::OutOfMemory(_))
        ));

        assert_eq!(c.get(b"none").await, Ok(None));
        let live = c.get(b"live").await.unwrap().unwrap();
        assert_eq!(live.stamp, Stamp::new(2, 9));
        assert_eq!(live.owner, "web-2");
        assert_eq!(live.ttl, Some(Duration::from_secs(60)));
        assert_eq!(live.payload, Bytes::from_static(b"\x00payload\r\n"));
        assert!(!live.deleted);
        let tomb = c.get(b"tomb").await.unwrap().unwrap();
        assert!(tomb.deleted);
        assert!(matches!(
            c.get(b"short").await,
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(c.get(b"int").await, Err(ClientError::Protocol(_))));

        let (old, new) = (Stamp::new(2, 9), Stamp::new(3, 0));
        c.claim(b"ok", old, new, "web-3", Some(Duration::from_millis(1500)))
            .await
            .unwrap();
        assert_eq!(
            store.last_command(),
            args(&[
                b"SESS.CLAIM",
                b"ok",
                b"2",
                b"9",
                b"3",
                b"0",
                b"web-3",
                b"1500"
            ])
        );
        assert_eq!(
            c.claim(b"stale", old, new, "w", None).await,
            Err(ClientError::Stale {
                stored: Stamp::new(2, 10)
            })
        );
        assert_eq!(
            c.claim(b"deleted", old, new, "w", None).await,
            Err(ClientError::Deleted {
                stamp: Stamp::new(3, 0)
            })
        );
        assert_eq!(
            c.claim(b"none", old, new, "w", None).await,
            Err(ClientError::NoSession)
        );
        assert!(matches!(
            c.claim(b"other", old, new, "w", None).await,
            Err(ClientError::Server(m)) if m.starts_with("ERR new stamp")
        ));

        assert_eq!(
            c.touch(b"live", Some(Duration::from_secs(5))).await,
            Ok(true)
        );
        assert_eq!(
            store.last_command(),
            args(&[b"SESS.TOUCH", b"live", b"5000"])
        );
        assert_eq!(c.touch(b"gone", None).await, Ok(false));
        assert_eq!(store.last_command(), args(&[b"SESS.TOUCH", b"gone", b"0"]));

        c.delete(b"k", Stamp::new(7, 1), None).await.unwrap();
        assert_eq!(store.last_command(), args(&[b"SESS.DEL", b"k", b"7", b"1"]));
        c.delete(b"k", Stamp::new(7, 2), Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            store.last_command(),
            args(&[b"SESS.DEL", b"k", b"7", b"2", b"60000"])
        );
        c.delete(b"k", Stamp::new(5, 5), None).await.unwrap();
        assert_eq!(
            c.delete(b"k", Stamp::new(1, 0), None).await,
            Err(ClientError::Stale {
                stored: Stamp::new(5, 5)
            })
        );

        // Everything above went over one connection, and so do many
        // concurrent requests from clones.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u64 {
            let c = c.clone();
            tasks.spawn(async move {
                if i % 2 == 0 {
                    c.get(b"live").await.map(|s| s.is_some())
                } else {
                    c.put(b"k", Stamp::new(10, i), "w", None, b"p")
                        .await
                        .map(|()| true)
                }
            });
        }
        while let Some(r) = tasks.join_next().await {
            assert_eq!(r.unwrap(), Ok(true));
        }
        assert_eq!(store.accepted(), 1);
    }

    #[tokio::test]
    async fn lazy_connect_and_auth() {
        let store = FakeStore::start(|args: &[Bytes]| {
            let name = String::from_utf8_lossy(&args[0]).to_ascii_uppercase();
            Act::Reply(match (name.as_str(), args.len()) {
                ("AUTH", 3) if &args[1][..] == b"app" && &args[2][..] == b"s3cret" => Reply::OK,
                ("AUTH", _) => Reply::error("WRONGPASS invalid username-password pair"),
                ("PING", _) => Reply::Simple("PONG"),
                _ => Reply::error("NOAUTH Authentication required."),
            })
        })
        .await;
        let addr = store.addr.to_string();

        let c = StoreClient::new(&addr, options(1000)).unwrap();
        tokio::task::yield_now().await;
        assert_eq!(store.accepted(), 0, "new() must not connect");
        // No password: the fake store wants one for everything but PING.
        assert!(matches!(c.get(b"k").await, Err(ClientError::Auth(m)) if m.contains("NOAUTH")));
        assert_eq!(store.accepted(), 1);

        let wrong = ClientOptions {
            username: Some("app".into()),
            password: Some("nope".into()),
            ..options(1000)
        };
        let c = StoreClient::new(&addr, wrong).unwrap();
        let err = c.ping().await.unwrap_err();
        assert!(matches!(err, ClientError::Auth(_)), "{err:?}");
        assert!(!err.is_retryable());
        assert!(!err.to_string().contains("nope"));
        // In backoff: fails at once, with the same kind of error.
        assert!(matches!(c.ping().await, Err(ClientError::Auth(_))));

        let right = ClientOptions {
            username: Some("app".into()),
            password: Some("s3cret".into()),
            ..options(1000)
        };
        let c = StoreClient::new(&addr, right).unwrap();
        c.ping().await.unwrap();
        let c = StoreClient::new(&format!("sticky://app:s3cret@{addr}"), options(1000)).unwrap();
        c.ping().await.unwrap();
        assert_eq!(c.addr(), format!("sticky://{addr}"));
    }

    #[tokio::test]
    async fn frozen_store_times_out_and_connection_is_replaced() {
        let store = FakeStore::start(scripted).await;
        let c = client(&store, 300);
        c.ping().await.unwrap();
        let t = Instant::now();
        assert_eq!(c.get(b"hang").await, Err(ClientError::Timeout));
        let took = t.elapsed();
        assert!(
            took >= Duration::from_millis(290) && took < Duration::from_secs(2),
            "{took:?}"
        );
        // The silent connection was dropped: the next request uses a new one.
        c.ping().await.unwrap();
        assert_eq!(store.accepted(), 2);
    }

    #[tokio::test]
    async fn store_down_fails_fast_backs_off_and_recovers() {
        // A port with nothing listening.
        let port_holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = port_holder.local_addr().unwrap();
        drop(port_holder);

        let c = StoreClient::new(&addr.to_string(), options(1000)).unwrap();
        let t = Instant::now();
        let err = c.ping().await.unwrap_err();
        assert!(matches!(err, ClientError::ConnectionLost(_)), "{err:?}");
        assert!(err.is_retryable());
        // While in backoff, requests fail at once without connecting.
        let err = c.get(b"k").await.unwrap_err();
        assert!(
            matches!(&err, ClientError::ConnectionLost(m) if m.contains("unavailable, reconnecting")),
            "{err:?}"
        );
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{:?}",
            t.elapsed()
        );

        // The store comes up: the client recovers within a few backoffs.
        let store = FakeStore::start_on(addr, Arc::new(scripted)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match c.ping().await {
                Ok(_) => break,
                Err(e) => {
                    assert!(e.is_retryable(), "{e:?}");
                    assert!(Instant::now() < deadline, "no recovery: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
        assert_eq!(store.accepted(), 1);

        // The store stops: in-flight connection breaks, retryable errors,
        // then recovery once it is back.
        store.stop();
        let err = loop {
            match c.ping().await {
                Ok(_) => {
                    assert!(Instant::now() < deadline, "stop not noticed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => break e,
            }
        };
        assert!(err.is_retryable(), "{err:?}");
        drop(store);
        let store = FakeStore::start_on(addr, Arc::new(scripted)).await;
        let deadline = Instant::now() + Duration::from_secs(5);
        while let Err(e) = c.ping().await {
            assert!(e.is_retryable(), "{e:?}");
            assert!(Instant::now() < deadline, "no recovery: {e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(store.accepted(), 1);
    }

    #[tokio::test]
    async fn backoff_does_not_hammer_a_failing_store() {
        // Accepts connections and closes them at once.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = accepted.clone();
        let server = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                drop(stream);
            }
        });

        let c = StoreClient::new(&addr.to_string(), options(1000)).unwrap();
        let t = Instant::now();
        let mut requests = 0;
        while t.elapsed() < Duration::from_millis(600) {
            let mut tasks = tokio::task::JoinSet::new();
            for _ in 0..20 {
                let c = c.clone();
                tasks.spawn(async move { c.ping().await });
            }
            while let Some(r) = tasks.join_next().await {
                assert!(r.unwrap().unwrap_err().is_retryable());
                requests += 1;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        server.abort();
        // Backoffs of >= 50, 100, 200, 200 ms (jitter halves at most; the
        // cap is 400 ms) leave room for at most 6 attempts in 600 ms.
        let attempts = accepted.load(Ordering::SeqCst);
        assert!(
            (1..=6).contains(&attempts),
            "{attempts} connection attempts for {requests} requests"
        );
        assert!(requests > 100);
    }
}
