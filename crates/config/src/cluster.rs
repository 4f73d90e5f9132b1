//! The cluster file's schema.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ByteSize;

/// A cluster file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read cluster file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not match the schema.
    #[error("invalid cluster file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong and where (from the TOML parser).
        message: String,
    },
    /// The file parses but is inconsistent.
    #[error("invalid cluster file {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// One cluster, as described in `docs/configuration.md`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The session stores (`[[store]]` tables).
    #[serde(default)]
    pub store: Vec<StoreEntry>,
}

/// One `[[store]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreEntry {
    /// Unique name, e.g. `s1`.
    pub name: String,
    /// Address the store listens on and web servers connect to.
    pub listen: SocketAddr,
    /// Password clients must present with `AUTH`.
    pub requirepass: Option<String>,
    /// File holding that password (first line), instead of `requirepass`.
    pub requirepass_file: Option<PathBuf>,
    /// Refuse writes past this much accounted memory.
    pub max_memory: Option<ByteSize>,
    /// Address of the Prometheus metrics endpoint.
    pub metrics: Option<SocketAddr>,
}

impl ClusterFile {
    /// Reads and checks the cluster file at `path`.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the file and what is wrong with it.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Parses and checks a cluster file's text; `path` is only for messages.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Parse`] or [`ConfigError::Invalid`].
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfigError> {
        let file: ClusterFile = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut names = std::collections::HashSet::new();
        for s in &file.store {
            if s.name.is_empty() || !names.insert(s.name.as_str()) {
                return Err(invalid(format!(
                    "store name {:?} is empty or used twice",
                    s.name
                )));
            }
            if s.requirepass.is_some() && s.requirepass_file.is_some() {
                return Err(invalid(format!(
                    "store {}: give requirepass or requirepass_file, not both",
                    s.name
                )));
            }
        }
        Ok(file)
    }

    /// The `[[store]]` entry called `name`.
    pub fn store(&self, name: &str) -> Option<&StoreEntry> {
        self.store.iter().find(|s| s.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stores_and_rejects_unknown_fields() {
        let f = ClusterFile::parse(
            "[[store]]\nname = \"s1\"\nlisten = \"127.0.0.1:7201\"\nmax_memory = \"64MiB\"\n",
            Path::new("c.toml"),
        );
        let f = match f {
            Ok(f) => f,
            Err(e) => panic!("{e}"),
        };
        let s1 = f.store("s1").map(|s| (s.listen.port(), s.max_memory));
        assert_eq!(s1, Some((7201, Some(ByteSize(64 << 20)))));
        let bad = ClusterFile::parse(
            "[[store]]\nname=\"s1\"\nlisten=\"127.0.0.1:1\"\nlisen=1\n",
            Path::new("c.toml"),
        );
        assert!(matches!(bad, Err(ConfigError::Parse { .. })));
        let dup = ClusterFile::parse(
            "[[store]]\nname=\"s1\"\nlisten=\"127.0.0.1:1\"\n[[store]]\nname=\"s1\"\nlisten=\"127.0.0.1:2\"\n",
            Path::new("c.toml"),
        );
        assert!(matches!(dup, Err(ConfigError::Invalid { .. })));
    }
}
