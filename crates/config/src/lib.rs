//! The cluster file: one TOML file describing a whole Sticky cluster, read
//! by every `sticky` subcommand (see `docs/configuration.md`).
//!
//! # Layout
//!
//! - `cluster`: [`ClusterFile`] and its sections, loaded with
//!   [`ClusterFile::load`].
//! - `size`: [`ByteSize`], sizes such as `64MiB` or `1gb`.

mod cluster;
mod size;

pub use cluster::{
    ClusterFile, ConfigError, DirectorSection, ReplicationMode, SessionSection, StoreEntry,
    WebEntry,
};
pub use size::{ByteSize, ParseSizeError};
