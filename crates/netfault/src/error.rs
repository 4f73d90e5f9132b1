//! [`NetError`]: why creating a network or changing a fault failed.

/// Why creating a `Net` or changing a fault failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// A program could not be started (not installed?).
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// Why.
        source: std::io::Error,
    },
    /// A command exited with an error (not root? no such qdisc?).
    #[error("`{command}` failed ({status}): {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// What it printed on standard error.
        stderr: String,
    },
    /// A command's output could not be read.
    #[error("unexpected output of `{command}`: {detail}")]
    Output {
        /// The command line.
        command: String,
        /// What was wrong.
        detail: String,
    },
    /// No host has this name.
    #[error("no host named {0:?} in this network")]
    UnknownHost(String),
    /// A host name or prefix that cannot be used.
    #[error("invalid name {name:?}: {why}")]
    InvalidName {
        /// The name.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// An address [`Net::add_addr`](crate::Net::add_addr) cannot add.
    #[error("cannot add address {addr}: {why}")]
    InvalidAddr {
        /// The address and prefix length.
        addr: String,
        /// Why.
        why: &'static str,
    },
    /// A fault between an endpoint and itself.
    #[error("a link needs two different endpoints, got {0:?} twice")]
    SameEndpoint(String),
    /// A slow link's rate or queue out of range.
    #[error("invalid slow link: {0}")]
    InvalidSlow(&'static str),
    /// A loss that is not one packet in a power of two.
    #[error("invalid loss: one packet in {0}; use a power of two from 2 to 32768")]
    InvalidLoss(u32),
    /// Every candidate /24 was in use.
    #[error("no free /24 in 10.213.0.0/16 after {0} tries")]
    NoSubnet(u32),
    /// This process's own entry in `/proc` could not be read.
    #[error("cannot read /proc/self/stat")]
    NoOwner,
}
