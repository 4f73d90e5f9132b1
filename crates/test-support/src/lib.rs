//! Dev-only support for Sticky's tests (never published): real processes
//! on loopback ports, an in-process store, one HTTP client, one fake store,
//! and the checks the tests share.
//!
//! The `sticky` crate's tests pass the binary Cargo built for them, since
//! only they see `CARGO_BIN_EXE_sticky`:
//!
//! ```ignore
//! use sticky_test_support::{Cluster, Browser, Sticky};
//!
//! const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));
//!
//! let c = Cluster::start(STICKY, 3, &["ws1"], |cfg| cfg.replicas(2));
//! assert_eq!(Browser::new().increment(c.web("ws1").addr()).value, 1);
//! ```
//!
//! Timeouts are generous on purpose: tests run in parallel with each other
//! and with builds on a small, loaded machine. A failed expectation here is
//! a failed test, so this crate panics (with what it saw) instead of
//! returning errors.
//!
//! # Layout
//!
//! - `process`: [`Sticky`] (the binary under test), [`ChildProcess`]
//!   (reaped once, killed on drop), signals, log files, temporary paths,
//!   free ports.
//! - `wait`: deadlines and [`wait_until`].
//! - `skip`: skipping loudly when a program or root is missing
//!   ([`require_program`], [`have_redis`], [`require_root`]), failing
//!   instead in CI.
//! - `resp`: a blocking RESP client showing replies as sent ([`Resp`],
//!   [`RespConn`]).
//! - `store`: [`StoreProcess`] (a `sticky store` child) and [`StoreServer`]
//!   (a [`sticky_store::Store`] served in-process on port 0).
//! - `redis_server`: [`RedisProcess`] and [`RedisClusterNodes`].
//! - `backend`: [`StoreBackend`], the store backend a suite runs on, and
//!   [`StoreNode`], one store of either.
//! - `fake_store`: [`FakeStore`], a store that hangs or answers garbage.
//! - `http`: the one HTTP client ([`http_request`], [`HttpClient`],
//!   [`raw_exchange`]) and its [`Response`].
//! - `demo`: clients of the demo shop ([`Browser`], [`CookieJar`]) and its
//!   [`Answer`]s with their [`Stamp`].
//! - `web`: [`WebProcess`], a `sticky web` child, its [`Heartbeat`], and
//!   the [`admin_token`] of its control endpoints.
//! - `cluster`: [`ClusterConfig`] (a cluster file), [`Cluster`] (stores and
//!   web servers), [`run_bench`] and signed cookies.
//! - `copies`: what the stores hold ([`StoredCopy`], [`copies_by_store`],
//!   [`redis_copies_by_store`], [`sess_command_calls`], [`command_calls`]).
//! - `checks`: session checks shared by both backends ([`create_sessions`],
//!   [`holders`], [`assert_no_newer_copy`]).
//! - `up`: [`UpProcess`], a whole `sticky up` cluster.
//! - `app`: the example apps behind a sidecar web server ([`AppKind`],
//!   [`AppProcess`]).
//! - `tls`: a certificate authority made at test time ([`TestCa`]) and a
//!   real HTTPS client, HTTP/2 or HTTP/1.1 ([`HttpsClient`]).
//! - [`director`]: `sticky director` in front of stand-in web servers.
//! - [`module_graph`]: no import circles between a crate's modules
//!   ([`module_graph::assert_no_cycles`]), run by each crate's
//!   `tests/module_graph.rs`.
//! - `random`: random values for tests.
//! - [`Net`] (re-exported from `sticky-netfault`, which `sticky up --netns`
//!   uses too): hosts in network namespaces on one bridge, and the network
//!   faults between them (cut, cut one way, isolate, slow, lossy); needs
//!   root ([`require_root`]). Unlike the rest it returns errors
//!   ([`NetError`]).

// Test support: a failed expectation is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod app;
mod backend;
mod checks;
mod cluster;
mod copies;
mod demo;
pub mod director;
mod fake_store;
mod http;
pub mod module_graph;
mod process;
mod random;
mod redis_server;
mod resp;
mod skip;
mod store;
mod tls;
mod unit_file;
mod up;
mod wait;
mod web;

pub use app::{examples_dir, AppKind, AppProcess, APP_STARTUP_DEADLINE};
pub use backend::{StoreBackend, StoreNode};
pub use checks::{assert_no_newer_copy, create_sessions, holders};
pub use cluster::{run_bench, sign_cookie, Cluster, ClusterConfig};
pub use copies::{
    command_calls, copies_by_id, copies_by_store, redis_copies_by_store, redis_copy,
    redis_try_copy, sess_command_calls, sess_get, store_sessions, store_sessions_auth, Acked,
    CopiesById, StoredCopy,
};
pub use demo::{Answer, Browser, CookieJar, Stamp, COOKIE_NAME};
pub use fake_store::{FakeStore, Misbehavior};
pub use http::{
    http_request, http_request_timeout, raw_exchange, read_response, HttpClient, Response,
    HTTP_TIMEOUT,
};
pub use process::{
    free_port, log_tail, log_to, log_to_path, pid_alive, read_text, rss_bytes, signal, tail,
    temp_dir, temp_path, tmp_root, ChildProcess, NotReady, Paused, Sticky,
};
pub use random::{random_hex, random_u64};
pub use redis_server::{RedisClusterNodes, RedisProcess};
pub use resp::{encode_request, read_reply, read_to_close, resp_cmd, Resp, RespConn};
pub use skip::{find_program, have_redis, require_program, require_program_from, require_root};
pub use sticky_netfault::{Host, Net, NetError, Slow};
pub use store::{StoreProcess, StoreServer};
pub use tls::{client_config, tls_stream, CertFiles, HttpVersion, HttpsClient, TestCa};
pub use unit_file::service_values;
pub use up::{UpProcess, UP_DEADLINE, UP_READY_LINE, UP_STOP_DEADLINE};
pub use wait::{wait_until, DEADLINE, IO_TIMEOUT, POLL, STARTUP_DEADLINE};
pub use web::{admin_token, Heartbeat, WebProcess, WEB_STARTUP_DEADLINE};
