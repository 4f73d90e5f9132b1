//! The connection to one store and its state machine: opened lazily by
//! the first request, shared by all requests (one multiplexed, pipelined
//! connection, or the cluster client's; or one per thread with
//! [`ClientOptions::connection_per_thread`]), dropped when it breaks or
//! falls silent, reopened after a jittered, doubling backoff; and
//! [`Inner::execute`], which sends one command within the request timeout.
//! See the crate docs for the behaviour callers see.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Cmd, Pipeline, RedisError, Value};

use crate::backend::Backend;
use crate::error::{clip, error_from_redis, ClientError};
use crate::options::ClientOptions;
use crate::reply::{describe, reply_value};
use crate::scripts::SCRIPTS;

/// Shortest backoff after a failed connection attempt.
const MIN_BACKOFF: Duration = Duration::from_millis(100);

/// State shared by the clones of a [`StoreClient`](crate::StoreClient): the
/// store's address and backend, and its connection.
pub(crate) struct Inner {
    /// As returned by [`StoreClient::addr`](crate::StoreClient::addr).
    pub(crate) addr: String,
    /// `host:port` (never credentials), for messages.
    pub(crate) display_addr: String,
    pub(crate) backend: Backend,
    pub(crate) connector: Connector,
    request_timeout: Duration,
    connect_timeout: Duration,
    max_backoff: Duration,
    /// [`ClientOptions::connection_per_thread`].
    per_thread: bool,
    /// Time base of [`Live::last_reply`].
    origin: Instant,
    state: Mutex<ConnState>,
    /// Held by the one task opening a connection.
    connect_lock: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Default)]
struct ConnState {
    /// The open connections: one, shared (keyed `None`), or one per thread
    /// that sent a request (keyed by its id).
    live: Vec<(Option<ThreadId>, Live)>,
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
pub(crate) enum Connector {
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

    /// The `count` commands of `pipe` in one message; their replies, error
    /// replies among them as values.
    async fn send_pipeline(
        &mut self,
        pipe: &Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, RedisError> {
        match self {
            Self::Single(c) => c.send_packed_commands(pipe, 0, count).await,
            Self::Cluster(c) => {
                redis::aio::ConnectionLike::req_packed_commands(c, pipe, 0, count).await
            }
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
    /// The shared state of a client of the store at `addr` (shown as
    /// `display_addr` in messages), not connected yet.
    pub(crate) fn new(
        addr: String,
        display_addr: String,
        backend: Backend,
        connector: Connector,
        options: &ClientOptions,
    ) -> Self {
        Self {
            addr,
            display_addr,
            backend,
            connector,
            request_timeout: options.request_timeout,
            connect_timeout: options.connect_timeout,
            max_backoff: options.max_backoff,
            per_thread: options.connection_per_thread,
            origin: Instant::now(),
            state: Mutex::new(ConnState::default()),
            connect_lock: Arc::new(tokio::sync::Mutex::new(())),
        }
    }

    /// Sends `cmd` and returns its reply (error replies turned into
    /// [`ClientError`]s) and the time the store took to answer.
    pub(crate) async fn execute(
        self: &Arc<Self>,
        cmd: &Cmd,
    ) -> Result<(Value, Duration), ClientError> {
        let (value, rtt) = self
            .execute_with(|mut conn| async move { conn.send(cmd).await })
            .await?;
        reply_value(value).map(|v| (v, rtt))
    }

    /// Whether [`execute_pipeline`](Self::execute_pipeline) sends its
    /// commands in one message: to a single server (a Redis Cluster's
    /// commands go each to its key's node).
    pub(crate) fn pipelines(&self) -> bool {
        matches!(self.connector, Connector::Single(..))
    }

    /// Sends the `count` commands of `pipe` at once, within one request
    /// timeout, and returns their replies (error replies as
    /// [`Value::ServerError`], for the caller to take apart).
    pub(crate) async fn execute_pipeline(
        self: &Arc<Self>,
        pipe: &Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, ClientError> {
        let (values, _) = self
            .execute_with(|mut conn| async move { conn.send_pipeline(pipe, count).await })
            .await?;
        if values.len() == count {
            Ok(values)
        } else {
            Err(ClientError::Protocol(format!(
                "{} replies to a pipeline of {count} commands",
                values.len()
            )))
        }
    }

    /// Sends by `send` on the open connection within the request timeout;
    /// its outcome and the time the store took to answer.
    async fn execute_with<T, F, Fut>(
        self: &Arc<Self>,
        send: F,
    ) -> Result<(T, Duration), ClientError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: std::future::Future<Output = Result<T, RedisError>>,
    {
        let started = Instant::now();
        let live = match tokio::time::timeout(self.request_timeout, self.acquire()).await {
            Ok(live) => live?,
            Err(_) => return Err(ClientError::Timeout),
        };
        let remaining = self.request_timeout.saturating_sub(started.elapsed());
        let sent = Instant::now();
        let sent_us = self.micros(sent);
        let result = tokio::time::timeout(remaining, send(live.conn.clone())).await;
        let rtt = sent.elapsed();
        match result {
            Ok(Ok(value)) => {
                live.last_reply
                    .fetch_max(self.micros(Instant::now()), Ordering::Relaxed);
                Ok((value, rtt))
            }
            Ok(Err(e)) => {
                if e.is_unrecoverable_error() {
                    self.drop_connection(live.epoch, &e.to_string());
                }
                Err(self.map_error(&e))
            }
            Err(_) => {
                // Silent for a good while: nothing came back on this
                // connection since the request was sent, not even replies to
                // requests sent before it. Treat the store as gone (a host
                // that died without closing its sockets looks like this).
                let waited_long = rtt >= self.request_timeout / 2;
                if waited_long && live.last_reply.load(Ordering::Relaxed) < sent_us {
                    self.drop_connection(live.epoch, "no reply within the request timeout");
                }
                Err(ClientError::Timeout)
            }
        }
    }

    fn state(&self) -> MutexGuard<'_, ConnState> {
        // Nothing panics while holding the lock; recover if it ever did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn micros(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.origin).as_micros()).unwrap_or(u64::MAX)
    }

    /// The open connection, or whether a connection attempt may be made
    /// now; in backoff, the error to fail with.
    fn ready(&self, slot: Option<ThreadId>) -> Result<Ready, ClientError> {
        let st = self.state();
        if let Some((_, live)) = st.live.iter().find(|(s, _)| *s == slot) {
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
        let slot = self.per_thread.then(|| std::thread::current().id());
        if let Ready::Live(live) = self.ready(slot)? {
            return Ok(live);
        }
        let guard = Arc::clone(&self.connect_lock).lock_owned().await;
        // Another task may have connected, or failed, while we waited.
        if let Ready::Live(live) = self.ready(slot)? {
            return Ok(live);
        }
        // Connect in a task of its own, so that the attempt completes and
        // its outcome is recorded even if this request is cancelled or
        // times out. On this thread's runtime: the connection's driver
        // task is spawned where it is opened.
        let inner = Arc::clone(self);
        let attempt = tokio::spawn(async move {
            let _guard = guard;
            inner.connect(slot).await
        });
        match attempt.await {
            Ok(result) => result,
            Err(e) => Err(ClientError::ConnectionLost(format!(
                "connection attempt to store {} aborted: {e}",
                self.display_addr
            ))),
        }
    }

    /// One connection attempt for `slot`; records its outcome.
    async fn connect(&self, slot: Option<ThreadId>) -> Result<Live, ClientError> {
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
                st.live.retain(|(s, _)| *s != slot);
                st.live.push((slot, live.clone()));
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

    /// `SCRIPT LOAD`s the scripts on a new connection to Redis (one
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
                c.send_packed_commands(&pipe, 0, SCRIPTS.all().len()).await
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
    /// request opens a new one; with a connection per thread, every
    /// thread's: a store that closed or stopped answering one connection
    /// has done so to all, and a thread that had not used its connection
    /// since must not find out by failing a request after the store is
    /// back (its caller would mark the store down again).
    fn drop_connection(&self, epoch: u64, reason: &str) {
        let mut st = self.state();
        if st.live.iter().any(|(_, l)| l.epoch == epoch) {
            st.live.clear();
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
