//! [`StoreClient`], the API web servers call: one method per session
//! command (`put`, `get`, `claim`, `touch`, `delete`; the ownership
//! commands `lease`, `kill`, `get_with_lease`, `prepare`, `owned`) plus
//! `ping`, their
//! arguments as sent (TTLs in milliseconds) and what their replies mean
//! (a `STALE` naming the caller's own stamp is a success for `put` and
//! `delete`). How a command reaches the store is [`crate::backend`]'s
//! business, the connection [`crate::connection`]'s.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use redis::{AsyncConnectionConfig, Cmd, Value};
use sticky_proto::command::{self, SessionCommand};
use sticky_proto::Stamp;

use crate::addr::{cluster_client, connection_info, CLUSTER_SCHEME};
use crate::backend::{self, Backend};
use crate::connection::{Connector, Inner};
use crate::error::{clip, first_number, ClientError};
use crate::options::ClientOptions;
use crate::reply::{
    expect_ok, parse_lease_state, parse_owned, parse_prepared_next, parse_session,
    parse_session_with_lease, parse_touch, reply_value, unexpected, LeaseState, Prepared,
    PreparedNext, StoredSession,
};
use crate::scripts::{Script, OWNED_SCAN_COUNT};

/// Async client of one session store. Cheap to clone: clones share one
/// connection.
#[derive(Clone)]
pub struct StoreClient {
    inner: Arc<Inner>,
    /// [`ClientOptions::claim_window`] in ms, sent to the Redis scripts.
    claim_window_ms: u64,
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
    /// store` (`sticky+tls://...` for one started with `--tls-cert`); a
    /// `redis://[user:password@]host:port[/?protocol=resp3]` URL (`rediss://`
    /// over TLS, verified against [`ClientOptions::tls_ca`] or the system's
    /// trust store)
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
                let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
                let client = match (&options.tls_ca, tls) {
                    (Some(ca), true) => {
                        let root_cert = sticky_proto::tls::read_ca(ca, "the store CA file")
                            .map_err(|e| ClientError::InvalidConfig(e.to_string()))?;
                        let certs = redis::TlsCertificates {
                            client_tls: None,
                            root_cert: Some(root_cert),
                        };
                        redis::Client::build_with_tls(info, certs)
                    }
                    _ => redis::Client::open(info),
                }
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
            claim_window_ms: duration_ms(options.claim_window),
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
    /// [`ClientError::Promised`] when a takeover promised a higher
    /// generation (or this one to another owner),
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
        put_result(
            stamp,
            self.call(SessionCommand::Put, key, args, |_| {}).await,
        )
    }

    /// Many [`put`](Self::put)s at once, each outcome as `put` would answer
    /// it, in the order of `puts`. To a single store (not a Redis Cluster)
    /// they go as one pipeline: one message, one write, one batch of
    /// replies, and one request timeout for all of them.
    pub async fn put_many(&self, puts: &[Put<'_>]) -> Vec<Result<(), ClientError>> {
        if puts.len() < 2 || !self.inner.pipelines() {
            let each = puts
                .iter()
                .map(|p| self.put(p.key, p.stamp, p.owner, p.ttl, p.payload));
            return futures_util::future::join_all(each).await;
        }
        let backend = self.inner.backend;
        let mut pipe = redis::pipe();
        for p in puts {
            pipe.add_command(backend.request(SessionCommand::Put, p.key, p.args(), |_| {}));
        }
        let values = match self.inner.execute_pipeline(&pipe, puts.len()).await {
            Ok(values) => values,
            Err(e) => return puts.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut out = Vec::with_capacity(puts.len());
        for (p, value) in puts.iter().zip(values) {
            let r = match reply_value(value) {
                // Redis lost the script: this one by `EVAL`.
                Err(ClientError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                    self.put(p.key, p.stamp, p.owner, p.ttl, p.payload).await
                }
                r => put_result(p.stamp, r),
            };
            out.push(r);
        }
        out
    }

    /// `SESS.GET`: the stored copy or tombstone of session `key`, `None`
    /// when the store has neither. Does not extend the TTL.
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] for a malformed reply, or any transport
    /// error.
    pub async fn get(&self, key: &[u8]) -> Result<Option<StoredSession>, ClientError> {
        let reply = self.call(SessionCommand::Get, key, |_| {}, |_| {}).await?;
        parse_session(self.nil_if_false(reply))
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
    /// [`ClientError::Promised`] when a takeover promised a higher
    /// generation than `new`'s (or `new`'s to another owner),
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
        let reply = self.call(SessionCommand::Claim, key, args, |_| {}).await?;
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
        let reply = self.call(SessionCommand::Touch, key, args, |_| {}).await?;
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
    /// [`ClientError::Stale`] when the store holds a higher stamp,
    /// [`ClientError::Promised`] when a takeover promised a higher
    /// generation, or any transport error.
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
            .call(SessionCommand::Del, key, args, |_| {})
            .await
            .and_then(|v| expect_ok(v, SessionCommand::Del.as_str()))
        {
            Err(ClientError::Stale { stored }) if stored == stamp => Ok(()),
            other => other,
        }
    }

    /// `SESS.LEASE`: grants or extends the lease of web-server process
    /// `owner` (`name@epoch`) at this store for `ttl` (at most 10 minutes;
    /// rounded up to a whole millisecond), measured on the store's clock
    /// from when the store receives the command. See `docs/safety.md` §2 for
    /// what a web server may conclude from a quorum of these.
    ///
    /// On Redis the lease is a key with a `PX` expiry, so Redis's own clock
    /// measures it (`docs/redis.md`).
    ///
    /// # Errors
    ///
    /// [`ClientError::Dead`] when the lease was killed here (take a new
    /// epoch), [`ClientError::Recovering`] when the store restarted and is
    /// inside its recovery window, [`ClientError::Server`] for a bad owner
    /// or a store holding too many leases, or any transport error.
    pub async fn lease(&self, owner: &str, ttl: Duration) -> Result<(), ClientError> {
        let args = |cmd: &mut Cmd| {
            cmd.arg(duration_ms(ttl));
        };
        let reply = self
            .call(SessionCommand::Lease, owner.as_bytes(), args, |_| {})
            .await?;
        expect_ok(reply, SessionCommand::Lease.as_str())
    }

    /// `SESS.KILL`: records the lease of `owner` **dead** at this store, so
    /// that it refuses every later renewal for the claim window. Without
    /// `force`, only if the lease is not live here (a takeover's step 1);
    /// with `force`, whatever its state: for proven death only (the process
    /// is gone, or it was fenced and reported its new epoch).
    ///
    /// # Errors
    ///
    /// [`ClientError::Live`] when the lease is live here (without `force`),
    /// [`ClientError::Recovering`] when a restarted store is inside its
    /// recovery window (without `force`), [`ClientError::Server`] for a bad
    /// owner, or any transport error.
    pub async fn kill(&self, owner: &str, force: bool) -> Result<(), ClientError> {
        let args = |cmd: &mut Cmd| {
            if force {
                cmd.arg(command::OPT_FORCE);
            }
        };
        let window = self.claim_window_ms;
        let reply = self
            .call(SessionCommand::Kill, owner.as_bytes(), args, |cmd| {
                cmd.arg(window);
            })
            .await?;
        expect_ok(reply, SessionCommand::Kill.as_str())
    }

    /// `SESS.GET key WITHLEASE`: as [`get`](Self::get), with what this store
    /// knows of the copy owner's lease ([`LeaseState::Absent`] for a
    /// tombstone). A takeover's step 0: if the owner's lease is live at any
    /// store, the claimer stops.
    ///
    /// On Redis this is two round trips (the copy, then the lease, which
    /// lives in its owner's slot).
    ///
    /// # Errors
    ///
    /// [`ClientError::Protocol`] for a malformed reply, or any transport
    /// error.
    pub async fn get_with_lease(
        &self,
        key: &[u8],
    ) -> Result<Option<(StoredSession, LeaseState)>, ClientError> {
        const WHAT: &str = "SESS.GET WITHLEASE";
        match self.inner.backend {
            Backend::Native => {
                let reply = self
                    .call(
                        SessionCommand::Get,
                        key,
                        |cmd| {
                            cmd.arg(command::OPT_WITHLEASE);
                        },
                        |_| {},
                    )
                    .await?;
                parse_session_with_lease(reply, WHAT)
            }
            Backend::Scripts => match self.get(key).await? {
                None => Ok(None),
                Some(session) => {
                    let lease = self.script_lease_state(&session).await?;
                    Ok(Some((session, lease)))
                }
            },
        }
    }

    /// `SESS.PREPARE`: a takeover's promise of `generation` to `owner`, the
    /// claimer. Each generation has one claimer: unless refused, the store
    /// refuses, for its claim window, writes of `key` below `generation`,
    /// writes of `generation` by any other owner, and prepares of a lower
    /// generation or of this one by another owner; a write of `generation`
    /// or higher fulfils the promise.
    ///
    /// `horizon` is how long ago a restarted store must have started for
    /// its "no copy" to count (the longest a session can live,
    /// `docs/safety.md` §3): a younger one answers [`Prepared::Forgetful`].
    /// Redis never does.
    ///
    /// On Redis this is two round trips when there is a copy (the promise
    /// with the copy, then the owner's lease).
    ///
    /// # Errors
    ///
    /// [`ClientError::Stale`] when the copy's generation is already
    /// `generation` or higher (another claim won: start over),
    /// [`ClientError::Promised`] when a higher generation, or this one to
    /// another owner, was promised (claim above it),
    /// [`ClientError::Recovering`] when a restarted store is inside its
    /// recovery window, [`ClientError::Server`] for a bad generation or
    /// owner, or any transport error.
    pub async fn prepare(
        &self,
        key: &[u8],
        generation: u64,
        owner: &str,
        horizon: Duration,
    ) -> Result<Prepared, ClientError> {
        const WHAT: &str = SessionCommand::Prepare.as_str();
        let horizon_ms = horizon_ms(horizon);
        let args = |cmd: &mut Cmd| {
            cmd.arg(generation).arg(owner).arg(horizon_ms);
        };
        let window = self.claim_window_ms;
        let reply = match self
            .call(SessionCommand::Prepare, key, args, |cmd| {
                cmd.arg(window);
            })
            .await
        {
            Ok(reply) => self.nil_if_false(reply),
            Err(ClientError::Server(msg)) => return forgetful(msg),
            Err(e) => return Err(e),
        };
        let found = match self.inner.backend {
            Backend::Native => parse_session_with_lease(reply, WHAT)?,
            Backend::Scripts => match parse_session(reply)? {
                None => None,
                Some(session) => {
                    let lease = self.script_lease_state(&session).await?;
                    Some((session, lease))
                }
            },
        };
        Ok(match found {
            Some((session, lease)) => Prepared::Copy { session, lease },
            None => Prepared::NoCopy,
        })
    }

    /// Whether this store answers [`prepare_next`](Self::prepare_next):
    /// `sticky store` does, Redis does not (the copy's owner's lease lives
    /// in another slot there, so a script cannot read it with the copy).
    pub fn prepares_next(&self) -> bool {
        matches!(self.inner.backend, Backend::Native)
    }

    /// `SESS.PREPARE key NEXT`: a takeover's read and promise in one round
    /// trip. The store promises to `owner` the generation one above its
    /// copy's and any live promise's (so never one it promised to another
    /// claimer), unless the copy is a tombstone or its owner (not `owner`)
    /// holds a live lease at this store: then it answers the copy without
    /// a promise, generation 0. With `release`, the store first records
    /// that lease dead, as [`kill`](Self::kill) with force does: only for
    /// a lease whose process is proven gone.
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] on a store that does not support it (Redis:
    /// see [`prepares_next`](Self::prepares_next), or a `sticky store`
    /// older than this command), [`ClientError::Recovering`] when a
    /// restarted store is inside its recovery window,
    /// [`ClientError::Forgetful`] when a restarted store holds no copy but
    /// may have forgotten one, [`ClientError::Protocol`] for a malformed reply, or any transport
    /// error.
    pub async fn prepare_next(
        &self,
        key: &[u8],
        owner: &str,
        horizon: Duration,
        release: Option<&str>,
    ) -> Result<PreparedNext, ClientError> {
        const WHAT: &str = "SESS.PREPARE NEXT";
        if !self.prepares_next() {
            return Err(ClientError::Server(format!(
                "{WHAT} is not available on Redis"
            )));
        }
        let horizon_ms = horizon_ms(horizon);
        let args = |cmd: &mut Cmd| {
            cmd.arg(command::ARG_NEXT).arg(owner).arg(horizon_ms);
            if let Some(dead) = release {
                cmd.arg(command::OPT_RELEASE).arg(dead);
            }
        };
        prepared_next(self.call(SessionCommand::Prepare, key, args, |_| {}).await)
    }

    /// Many [`prepare_next`](Self::prepare_next)s (without `RELEASE`) at
    /// once, each outcome as `prepare_next` would answer it, in the order
    /// of `keys`: one pipeline (one message, one write, one batch of
    /// replies, one request timeout), as [`put_many`](Self::put_many).
    /// The claims of an adoption are made in such batches.
    pub async fn prepare_next_many(
        &self,
        keys: &[&[u8]],
        owner: &str,
        horizon: Duration,
    ) -> Vec<Result<PreparedNext, ClientError>> {
        if keys.len() < 2 || !self.inner.pipelines() || !self.prepares_next() {
            let each = keys
                .iter()
                .map(|key| self.prepare_next(key, owner, horizon, None));
            return futures_util::future::join_all(each).await;
        }
        let horizon_ms = horizon_ms(horizon);
        let args = |cmd: &mut Cmd| {
            cmd.arg(command::ARG_NEXT).arg(owner).arg(horizon_ms);
        };
        let backend = self.inner.backend;
        let mut pipe = redis::pipe();
        for key in keys {
            pipe.add_command(backend.request(SessionCommand::Prepare, key, args, |_| {}));
        }
        match self.inner.execute_pipeline(&pipe, keys.len()).await {
            Ok(values) => values
                .into_iter()
                .map(|value| prepared_next(reply_value(value)))
                .collect(),
            Err(e) => keys.iter().map(|_| Err(e.clone())).collect(),
        }
    }

    /// `SESS.OWNED`: one page of the keys of the live copies owned by
    /// `owner`, and the cursor of the next page. Start with cursor `0`; a
    /// next cursor of `0` means the scan is done. A key owned by `owner`
    /// throughout the scan is listed at least once.
    ///
    /// On `sticky store` a page is one or more whole shards (one once the
    /// store is large), and no key comes twice. On
    /// Redis a page is one `SCAN` step over the session keys (the cursor is
    /// Redis's), and a key may come twice. Not available on a Redis
    /// Cluster, whose keys are spread over nodes that one cursor cannot
    /// walk: [`ClientError::Server`].
    ///
    /// # Errors
    ///
    /// [`ClientError::Server`] for a bad owner or on a Redis Cluster,
    /// [`ClientError::Protocol`] for a malformed reply, or any transport
    /// error.
    pub async fn owned(&self, owner: &str, cursor: u64) -> Result<(u64, Vec<Bytes>), ClientError> {
        if matches!(self.inner.connector, Connector::Cluster(_)) {
            return Err(ClientError::Server(String::from(
                "SESS.OWNED is not available on a Redis Cluster store",
            )));
        }
        let args = |cmd: &mut Cmd| {
            cmd.arg(cursor);
        };
        let reply = self
            .call(SessionCommand::Owned, owner.as_bytes(), args, |cmd| {
                cmd.arg(OWNED_SCAN_COUNT);
            })
            .await?;
        parse_owned(reply)
    }

    /// Who holds the data now: `INFO server`'s `run_id` (random per process
    /// start, on `sticky store` and Redis) and, on `sticky store`, its count
    /// of `FLUSHALL`s. When it changes, the store lost every copy written
    /// to it before: a web server must copy its sessions there again
    /// (claim 9). A `FLUSHALL` on Redis does not change it (Redis counts
    /// none): see `docs/redis.md`. Not available on a Redis Cluster, whose
    /// nodes each have their own run id: [`ClientError::Server`].
    ///
    /// # Errors
    ///
    /// Any transport error, [`ClientError::Protocol`] when the answer has
    /// no `run_id`, or [`ClientError::Server`] on a Redis Cluster.
    pub async fn data_identity(&self) -> Result<String, ClientError> {
        if matches!(self.inner.connector, Connector::Cluster(_)) {
            return Err(ClientError::Server(String::from(
                "a Redis Cluster store has no single run id",
            )));
        }
        let (reply, _) = self.inner.execute(redis::cmd("INFO").arg("server")).await?;
        let text = match reply {
            Value::BulkString(b) => String::from_utf8_lossy(&b).into_owned(),
            Value::VerbatimString { text, .. } => text,
            Value::SimpleString(s) => s,
            other => return Err(unexpected("INFO server", "a bulk string", &other)),
        };
        parse_identity(&text)
            .ok_or_else(|| ClientError::Protocol(String::from("INFO server has no run_id")))
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

    /// Runs session command `cmd` on `subject` (the key or owner it names
    /// first) with the arguments `args` adds, as the backend sends it
    /// ([`Backend::request`]; a script gets the arguments `script_args`
    /// adds after them); on Redis, sent again by `EVAL` if the store
    /// answers `NOSCRIPT` ([`Backend::fallback`]).
    async fn call(
        &self,
        cmd: SessionCommand,
        subject: &[u8],
        args: impl Fn(&mut Cmd),
        script_args: impl Fn(&mut Cmd),
    ) -> Result<Value, ClientError> {
        let backend = self.inner.backend;
        let request = backend.request(cmd, subject, &args, &script_args);
        self.run(&request, || {
            backend.fallback(cmd, subject, &args, &script_args)
        })
        .await
    }

    /// Sends `request`; if the store answers `NOSCRIPT`, sends what
    /// `fallback` makes (the script by `EVAL`) instead.
    async fn run(
        &self,
        request: &Cmd,
        fallback: impl FnOnce() -> Option<Cmd>,
    ) -> Result<Value, ClientError> {
        match self.inner.execute(request).await {
            Err(ClientError::Server(msg)) if msg.starts_with("NOSCRIPT") => {
                let Some(eval) = fallback() else {
                    return Err(ClientError::Server(msg));
                };
                tracing::debug!(store = %self.inner.display_addr, "script not loaded; sending it with EVAL");
                self.inner.execute(&eval).await.map(|(v, _)| v)
            }
            other => other.map(|(v, _)| v),
        }
    }

    /// On Redis, what the store knows of the lease of `session`'s owner
    /// (none for a tombstone): the lease part of `SESS.GET ... WITHLEASE`.
    async fn script_lease_state(&self, session: &StoredSession) -> Result<LeaseState, ClientError> {
        if session.deleted || session.owner.is_empty() {
            return Ok(LeaseState::Absent);
        }
        let owner = session.owner.as_bytes();
        let request = backend::evalsha(Script::LeaseState, owner);
        let reply = self
            .run(&request, || {
                Some(backend::eval(Script::LeaseState, owner, |_| {}, |_| {}))
            })
            .await?;
        parse_lease_state(reply, "SESS.GET WITHLEASE")
    }

    /// A script's "nothing" (Lua `false`) arrives as a RESP3 boolean: null.
    fn nil_if_false(&self, reply: Value) -> Value {
        match reply {
            Value::Boolean(false) if self.inner.backend == Backend::Scripts => Value::Nil,
            other => other,
        }
    }
}

/// One `SESS.PUT` of [`StoreClient::put_many`]: its arguments as
/// [`StoreClient::put`] takes them.
#[derive(Debug, Clone, Copy)]
pub struct Put<'a> {
    /// The session key.
    pub key: &'a [u8],
    /// The version's stamp.
    pub stamp: Stamp,
    /// The owner recorded on the copy.
    pub owner: &'a str,
    /// Expires after this (`None`: never).
    pub ttl: Option<Duration>,
    /// The serialized session.
    pub payload: &'a [u8],
}

impl Put<'_> {
    /// Adds the arguments after the key.
    fn args(&self) -> impl Fn(&mut Cmd) + '_ {
        move |cmd: &mut Cmd| {
            cmd.arg(self.stamp.generation)
                .arg(self.stamp.seq)
                .arg(self.owner)
                .arg(ttl_ms(self.ttl))
                .arg(self.payload);
        }
    }
}

/// What a `SESS.PUT` of `stamp` answered means: `+OK`, or a `STALE`
/// naming `stamp` itself (an earlier attempt landed), is success.
fn put_result(stamp: Stamp, reply: Result<Value, ClientError>) -> Result<(), ClientError> {
    match reply.and_then(|v| expect_ok(v, SessionCommand::Put.as_str())) {
        Err(ClientError::Stale { stored }) if stored == stamp => Ok(()),
        other => other,
    }
}

/// A TTL as sent: milliseconds, `0` for none. A TTL is rounded up to a
/// whole millisecond, so that a tiny TTL never becomes "no expiry".
fn ttl_ms(ttl: Option<Duration>) -> u64 {
    ttl.map_or(0, duration_ms)
}

/// A prepare's horizon in milliseconds, rounded up (`0` stays `0`: a
/// horizon already passed).
fn horizon_ms(d: Duration) -> u64 {
    if d.is_zero() {
        0
    } else {
        duration_ms(d)
    }
}

/// A prepare's error reply `msg`: [`Prepared::Forgetful`] for
/// `FORGETFUL <uptime_ms> ...`, else the error itself.
/// The outcome of `SESS.PREPARE key NEXT` from its reply.
fn prepared_next(reply: Result<Value, ClientError>) -> Result<PreparedNext, ClientError> {
    const WHAT: &str = "SESS.PREPARE NEXT";
    match reply {
        Ok(reply) => parse_prepared_next(reply, WHAT),
        Err(ClientError::Server(msg)) => Err(match forgetful(msg) {
            Ok(Prepared::Forgetful { uptime }) => ClientError::Forgetful { uptime },
            Ok(_) => ClientError::Protocol(format!("{WHAT}: unexpected reply")),
            Err(e) => e,
        }),
        Err(e) => Err(e),
    }
}

fn forgetful(msg: String) -> Result<Prepared, ClientError> {
    let Some(detail) = msg
        .strip_prefix(command::ERR_FORGETFUL)
        .filter(|d| d.is_empty() || d.starts_with(' '))
    else {
        return Err(ClientError::Server(msg));
    };
    match first_number(detail) {
        Some(ms) => Ok(Prepared::Forgetful {
            uptime: Duration::from_millis(ms),
        }),
        None => Err(ClientError::Protocol(format!(
            "{} error without a valid uptime",
            command::ERR_FORGETFUL
        ))),
    }
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

#[cfg(test)]
mod pipelining_tests;

/// `run_id[/flushes]` from an `INFO server` answer.
fn parse_identity(info: &str) -> Option<String> {
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.trim_end().strip_prefix(name)?.strip_prefix(':'))
    };
    let run_id = field("run_id")?;
    Some(match field("sticky_flushes") {
        Some(f) => format!("{run_id}/{f}"),
        None => run_id.to_owned(),
    })
}

#[cfg(test)]
mod identity_tests {
    use super::parse_identity;

    #[test]
    fn the_identity_is_the_run_id_and_the_flush_count() {
        let sticky = "# Server\r\nredis_version:7.2.0\r\nrun_id:abc\r\nsticky_flushes:2\r\n\r\n";
        assert_eq!(parse_identity(sticky).as_deref(), Some("abc/2"));
        let redis = "# Server\r\nredis_version:7.0.15\r\nrun_id:f00d\r\ntcp_port:6379\r\n";
        assert_eq!(parse_identity(redis).as_deref(), Some("f00d"));
        assert_eq!(parse_identity("# Server\r\nrun_idx:1\r\n"), None);
    }
}
