//! The async client web servers use to talk to one session store, split
//! off `sticky-proto` so that only its users link the `redis` crate (a
//! `sticky store` does not).
//!
//! [`StoreClient`] speaks the session commands of `docs/protocol.md`
//! (`SESS.PUT`, `SESS.GET`, `SESS.CLAIM`, `SESS.TOUCH`, `SESS.DEL`, and the
//! ownership commands of `docs/safety.md`: `SESS.LEASE`, `SESS.KILL`,
//! `SESS.GET ... WITHLEASE`, `SESS.PREPARE`, `SESS.OWNED`) over one
//! multiplexed, pipelined connection (a [`redis::aio::MultiplexedConnection`])
//! shared by all clones of the client (or one per thread that sends
//! requests, with [`ClientOptions::connection_per_thread`]).
//!
//! # Backends
//!
//! - `host:port` or `sticky://[user:password@]host:port[/?protocol=resp3]`:
//!   a `sticky store`, sent the native `SESS.*` commands.
//! - `redis://[user:password@]host:port[/?protocol=resp3]` (or `valkey://`,
//!   `redis+unix://`...): Redis or a Redis-compatible server. The same
//!   commands run as server-side Lua scripts ([`scripts`]), loaded
//!   with `SCRIPT LOAD` on every new connection and called with `EVALSHA`
//!   (falling back to `EVAL` on `NOSCRIPT`); each session is a hash under
//!   `sticky:{<key>}` (leases, dead records and promises are keys of their
//!   own, see [`scripts`]). Replies, errors and fencing are the same, so callers
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
//!   it is being opened wait for that single attempt. With
//!   [`ClientOptions::connection_per_thread`], each thread has a
//!   connection of its own, opened by its first request and driven by a
//!   task of that thread's runtime; the backoff below is shared (a failed
//!   attempt on one thread holds back the others too).
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

//!
//! # Layout
//!
//! - `client`: [`StoreClient`], the API: one method per
//!   session command, their arguments and what their replies mean; and
//!   [`StoreClient::put_many`] ([`Put`]), many `SESS.PUT`s as one
//!   pipeline (the web servers' re-copy).
//! - `options`: [`ClientOptions`], credentials, time limits, and the claim
//!   window the Redis scripts keep promises and dead leases for.
//! - `error`: [`ClientError`], and how error replies and the `redis`
//!   crate's errors map to it.
//! - `reply`: decoding of replies; [`StoredSession`], a decoded `SESS.GET`;
//!   [`LeaseState`] and [`Prepared`], what the ownership commands answer.
//! - `addr`: store addresses: the backend an address selects and its
//!   connection settings.
//! - `backend`: how a command reaches each backend (native `SESS.*`, or
//!   `EVALSHA`/`EVAL` of a script).
//! - `connection`: the connection state machine (lazy connect, backoff,
//!   dropping broken or silent connections) and the request timeout, for
//!   one command or a pipeline of them.
//! - [`scripts`]: the session and ownership commands as Redis Lua
//!   scripts, the keys each touches, and the Redis key layout.
//!
//! Module dependencies point one way (no circles): `client` -> `addr`,
//! `connection` -> `backend` -> `scripts`; `client` -> `scripts` (the
//! lease-state script, the `SCAN` page size); `client`, `connection` ->
//! `reply` -> `error`; `error` and `options` use no other module.

mod addr;
mod backend;
mod client;
mod connection;
mod error;
#[cfg(test)]
mod fake_store;
mod options;
mod reply;
pub mod scripts;

pub use client::{Put, StoreClient};
pub use error::ClientError;
pub use options::ClientOptions;
pub use reply::{LeaseState, Prepared, PreparedNext, StoredSession};
