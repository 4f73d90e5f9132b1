//! The cluster file: one TOML file describing a whole Sticky cluster, read
//! by every `sticky` subcommand (see `docs/configuration.md`).
//!
//! # Layout
//!
//! - `cluster`: [`ClusterFile`] and its sections, loaded with
//!   [`ClusterFile::load`].
//! - `mode`: [`Mode`], the replication mode (`sync`, `async`) that the
//!   cluster file, the session library and the command line share.
//! - `size`: [`ByteSize`], sizes such as `64MiB` or `1gb`.

mod cluster;
mod mode;
mod size;

pub use cluster::{
    ClusterFile, ConfigError, DirectorPeer, DirectorSection, SessionSection, StoreEntry, WebEntry,
    FIRST_DIRECTOR,
};
pub use mode::{Mode, ParseModeError};
pub use size::{ByteSize, ParseSizeError};
