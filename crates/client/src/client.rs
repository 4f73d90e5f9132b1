//! [`StoreClient`], the API web servers call: one method per session
//! command (`put`, `get`, `claim`, `touch`, `delete`) plus `ping`, their
//! arguments as sent (TTLs in milliseconds) and what their replies mean
//! (a `STALE` naming the caller's own stamp is a success for `put` and
//! `delete`). How a command reaches the store is [`crate::backend`]'s
//! business, the connection [`crate::connection`]'s.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use redis::{AsyncConnectionConfig, Cmd, Value};
use sticky_proto::command::SessionCommand;
use sticky_proto::Stamp;

use crate::addr::{cluster_client, connection_info, CLUSTER_SCHEME};
use crate::backend::Backend;
use crate::connection::{Connector, Inner};
use crate::error::{clip, ClientError};
use crate::options::ClientOptions;
use crate::reply::{expect_ok, parse_session, parse_touch, unexpected, StoredSession};

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

impl StoreClient {
    /// A client of the store at `addr`: `host:port` or
    /// `sticky://[user:password@]host:port[/?protocol=resp3]` for a `sticky
    /// store`; a `redis://[user:password@]host:port[/?protocol=resp3]` URL
    /// (or `valkey://`, `redis+unix://`...) for Redis, where the session
    /// commands run as Lua scripts (see the [crate docs](crate));
    /// `redis+cluster://[user:password@]host:port,host:port...` for a Redis
    /// Cluster.
    ///
    /// Does not connect: see the [crate docs](crate) for when it does.
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
            inner: Arc::new(Inner::new(
                public_addr,
                display_addr,
                backend,
                connector,
                &options,
            )),
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
            .call(SessionCommand::Put, key, args)
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
        let reply = match self.call(SessionCommand::Get, key, |_| {}).await? {
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
        let reply = self.call(SessionCommand::Claim, key, args).await?;
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
        let reply = self.call(SessionCommand::Touch, key, args).await?;
        parse_touch(reply)
    }

    /// `SESS.DEL`: destroys session `key`, leaving a tombstone with `stamp`
    /// kept for `tombstone_ttl` (`None`: the store's `--tombstone-ttl`).
    ///
    /// On Redis, `None` means [`DEFAULT_TOMBSTONE_TTL_MS`](crate::scripts::DEFAULT_TOMBSTONE_TTL_MS)
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
            .call(SessionCommand::Del, key, args)
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
        let (reply, rtt) = self.inner.execute(&redis::cmd("PING")).await?;
        match reply {
            Value::SimpleString(s) if s == "PONG" => Ok(rtt),
            Value::BulkString(b) if b == b"PONG" => Ok(rtt),
            other => Err(unexpected("PING", "PONG", &other)),
        }
    }

    /// Runs session command `cmd` on `key` with the arguments `args` adds,
    /// as the backend sends it ([`Backend::request`]); on Redis, sent again
    /// by `EVAL` if the store answers `NOSCRIPT` ([`Backend::fallback`]).
    async fn call(
        &self,
        cmd: SessionCommand,
        key: &[u8],
        args: impl Fn(&mut Cmd),
    ) -> Result<Value, ClientError> {
        let backend = self.inner.backend;
        let request = backend.request(cmd, key, &args);
        match self.inner.execute(&request).await {
            Err(ClientError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                let Some(eval) = backend.fallback(cmd, key, &args) else {
                    return Err(ClientError::Server(msg));
                };
                tracing::debug!(store = %self.inner.display_addr, "script not loaded; sending it with EVAL");
                self.inner.execute(&eval).await.map(|(v, _)| v)
            }
            other => other.map(|(v, _)| v),
        }
    }
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

#[cfg(test)]
mod tests;
