//! Sticky's store protocol, shared by the store server and its clients
//! (the session client itself is the `sticky-client` crate, which alone
//! links the `redis` crate).
//!
//! # Layout
//!
//! - [`stamp`]: [`Stamp`], the `(generation, seq)` fencing stamp every stored
//!   session copy carries.
//! - [`resp`]: RESP2/RESP3 request parsing with hard limits on every size a
//!   peer controls, and reply encoding.
//! - [`command`]: the session commands ([`command::SessionCommand`]:
//!   `SESS.PUT`, `SESS.GET`, ...) and their reply words, documented in
//!   `docs/protocol.md`.
//! - [`control`]: the web servers' control endpoints (`/.sticky/health`,
//!   `/.sticky/fence`): paths, the admin token, the health report.
//! - [`probe`]: a one-shot `PING` and `INFO` of a store, for operators'
//!   tools (dashboard, `sticky status`).

pub mod command;
pub mod control;
pub mod probe;
pub mod resp;
pub mod stamp;

pub use stamp::Stamp;
