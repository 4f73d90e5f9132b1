//! [`Mode`]: how session changes reach the stores. The one definition the
//! cluster file (`mode = "sync"`), the session library
//! (`sticky_session::Config::mode`) and the command line (`--mode`) share.
//!
//! Its names live only here ([`Mode::as_str`]): serde, [`FromStr`],
//! [`Display`](fmt::Display) and the command line's list of possible values
//! ([`Mode::ALL`] with [`Mode::help`]) are all derived from them, so a new
//! mode is a new variant here plus its behaviour in the session library's
//! replicator.
//!
//! Command-line support is [`FromStr`] + [`Mode::ALL`], not a
//! `clap::ValueEnum` impl: every `sticky-config` user (the session library
//! embedded in applications among them) would otherwise compile clap or a
//! feature flag, while the `sticky` binary builds its `--mode` parser from
//! these in a few lines and keeps the same `--help` and error texts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How session changes reach the stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(into = "&'static str", try_from = "String")]
pub enum Mode {
    /// A response carrying a change leaves only after every replica
    /// acknowledged it (default).
    #[default]
    Sync,
    /// Changes are copied in the background, with a bounded queue and lag.
    Async,
}

impl Mode {
    /// Every mode, in the order help texts list them.
    pub const ALL: [Mode; 2] = [Mode::Sync, Mode::Async];

    /// The name in cluster files and on the command line: `sync`, `async`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }

    /// One line for `--help`.
    pub fn help(self) -> &'static str {
        match self {
            Mode::Sync => "A response leaves after every replica acknowledged the change",
            Mode::Async => "Changes are copied in the background",
        }
    }

    /// Whether a response carrying a change waits until the stores have it
    /// (otherwise changes are queued and copied in the background, and a
    /// web server's failure may lose the newest ones).
    pub fn waits_for_replicas(self) -> bool {
        match self {
            Mode::Sync => true,
            Mode::Async => false,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is no [`Mode`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown replication mode `{given}`, expected one of: {}", names())]
pub struct ParseModeError {
    given: String,
}

fn names() -> String {
    Mode::ALL.map(Mode::as_str).join(", ")
}

impl FromStr for Mode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Mode::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| ParseModeError {
                given: s.to_owned(),
            })
    }
}

impl TryFrom<String> for Mode {
    type Error = ParseModeError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Mode> for &'static str {
    fn from(m: Mode) -> Self {
        m.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_from_str_and_display() {
        for m in Mode::ALL {
            assert_eq!(m.to_string().parse::<Mode>(), Ok(m));
            assert_eq!(m.to_string(), m.as_str());
        }
        assert_eq!("sync".parse::<Mode>(), Ok(Mode::Sync));
        assert_eq!("async".parse::<Mode>(), Ok(Mode::Async));
        assert_eq!(Mode::default(), Mode::Sync);
        for bad in ["", "Sync", "ASYNC", "quorum", " sync"] {
            let e = bad.parse::<Mode>().err().map(|e| e.to_string());
            assert_eq!(
                e.as_deref(),
                Some(
                    format!("unknown replication mode `{bad}`, expected one of: sync, async")
                        .as_str()
                )
            );
        }
    }

    #[test]
    fn serde_uses_the_same_names() {
        #[derive(Debug, Serialize, Deserialize, PartialEq)]
        struct File {
            mode: Mode,
        }
        for m in Mode::ALL {
            let text = toml::to_string(&File { mode: m }).map_err(|e| e.to_string());
            assert_eq!(text, Ok(format!("mode = \"{m}\"\n")));
            let back: Result<File, _> = toml::from_str(&format!("mode = \"{m}\""));
            assert_eq!(back.map_err(|e| e.to_string()), Ok(File { mode: m }));
        }
        let bad: Result<File, _> = toml::from_str("mode = \"fast\"");
        let e = bad.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("unknown replication mode `fast`"), "{e}");
    }

    #[test]
    fn only_sync_waits_for_the_replicas() {
        assert!(Mode::Sync.waits_for_replicas());
        assert!(!Mode::Async.waits_for_replicas());
        for m in Mode::ALL {
            assert!(!m.help().is_empty());
        }
    }
}
