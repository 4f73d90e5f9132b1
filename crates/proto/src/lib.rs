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
//!   `/.sticky/fence`): paths, the admin token, the health report; and the
//!   `sticky up` supervisor's process actions (kill, pause, resume,
//!   restart), the one fault vocabulary of `up`, `chaos` and the dashboard;
//!   and `request`, the one-shot HTTP request to a control endpoint that
//!   `up`, `status`, `chaos` and the director's supervisor proxy send.
//! - [`probe`]: a one-shot `PING` and `INFO` of a store, for operators'
//!   tools (dashboard, `sticky status`).
//! - [`tls`]: rustls server configurations from PEM files (the director's
//!   and `sticky store`'s), CA files, the one crypto provider.
//! - [`rendezvous`]: rendezvous (highest-random-weight) hashing, shared by
//!   session placement over stores and the director's routing of moved
//!   clients, with both pinned hashes.

pub mod command;
pub mod control;
pub mod probe;
pub mod rendezvous;
pub mod resp;
pub mod stamp;
pub mod tls;

pub use stamp::Stamp;
