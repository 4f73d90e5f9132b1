//! The cluster file: one TOML file describing a whole Sticky cluster, read
//! by every `sticky` subcommand (see `docs/configuration.md`).
//!
//! # Layout
//!
//! - `cluster`: [`ClusterFile`] and its sections, loaded with
//!   [`ClusterFile::load`].
//! - `check`: [`check_text`], every [`Problem`] of a cluster file at
//!   once, for `sticky check`.
//! - `problem`: [`Problem`], one of them: field, what is wrong, what to do.
//! - `mode`: [`Mode`], the replication mode (`sync`, `async`) that the
//!   cluster file, the session library and the command line share.
//! - `size`: [`ByteSize`], sizes such as `64MiB` or `1gb`.
//! - `duration`: [`parse_duration`], durations such as `500ms` or `30m`,
//!   and the cluster file's fields that take them.

mod check;
mod cluster;
mod duration;
mod mode;
mod problem;
mod size;

pub use check::check_text;
pub use cluster::{
    ClusterFile, ConfigError, DirectorPeer, DirectorSection, SessionSection, StoreEntry, WebEntry,
    FIRST_DIRECTOR,
};
pub use duration::{
    format_duration, parse_duration, parse_duration_or, ParseDurationError, TimeUnit,
};
pub use mode::{Mode, ParseModeError};
pub use problem::Problem;
pub use size::{ByteSize, ParseSizeError};
