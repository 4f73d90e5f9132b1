//! Names and reply words of the session commands (see `docs/protocol.md`):
//! the one place the `SESS.*` names are written, for the store's dispatch
//! and counters and for the client.

use std::fmt;

/// One of the session commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionCommand {
    /// Store a session copy: `SESS.PUT key gen seq owner ttl_ms payload`.
    Put,
    /// Read a session copy: `SESS.GET key`.
    Get,
    /// Compare-and-set of the stamp:
    /// `SESS.CLAIM key exp_gen exp_seq new_gen new_seq owner ttl_ms`.
    Claim,
    /// Extend the TTL of a live copy: `SESS.TOUCH key ttl_ms`.
    Touch,
    /// Destroy, leaving a tombstone: `SESS.DEL key gen seq [tombstone_ttl_ms]`.
    Del,
    /// Grant or extend a web server's lease: `SESS.LEASE owner ttl_ms`.
    Lease,
    /// Record a lease dead: `SESS.KILL owner [FORCE]`.
    Kill,
    /// A takeover's promise: `SESS.PREPARE key gen owner horizon_ms`.
    Prepare,
    /// The keys of an owner's live copies, one shard per call:
    /// `SESS.OWNED owner cursor`.
    Owned,
}

impl SessionCommand {
    /// Every session command, in the order of [`index`](Self::index).
    pub const ALL: [Self; 9] = [
        Self::Put,
        Self::Get,
        Self::Claim,
        Self::Touch,
        Self::Del,
        Self::Lease,
        Self::Kill,
        Self::Prepare,
        Self::Owned,
    ];

    /// The command's name on the wire: `SESS.PUT`, `SESS.GET`, ...
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Put => "SESS.PUT",
            Self::Get => "SESS.GET",
            Self::Claim => "SESS.CLAIM",
            Self::Touch => "SESS.TOUCH",
            Self::Del => "SESS.DEL",
            Self::Lease => "SESS.LEASE",
            Self::Kill => "SESS.KILL",
            Self::Prepare => "SESS.PREPARE",
            Self::Owned => "SESS.OWNED",
        }
    }

    /// The name in lower case (`sess.put`), as `INFO commandstats` and the
    /// store's metrics labels show commands.
    pub const fn lowercase(self) -> &'static str {
        match self {
            Self::Put => "sess.put",
            Self::Get => "sess.get",
            Self::Claim => "sess.claim",
            Self::Touch => "sess.touch",
            Self::Del => "sess.del",
            Self::Lease => "sess.lease",
            Self::Kill => "sess.kill",
            Self::Prepare => "sess.prepare",
            Self::Owned => "sess.owned",
        }
    }

    /// Position in [`ALL`](Self::ALL), for per-command counters.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The session command called `name` (in any case, as RESP command
    /// names are); `None` for any other command.
    pub fn from_name(name: &[u8]) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| name.eq_ignore_ascii_case(c.as_str().as_bytes()))
    }
}

impl fmt::Display for SessionCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Error code: the stored stamp is higher than or equal to the one sent.
/// Followed by the stored `gen seq`.
pub const ERR_STALE: &str = "STALE";
/// Error code: the session was destroyed; followed by the tombstone's stamp.
pub const ERR_DELETED: &str = "DELETED";
/// Error code: neither a copy nor a tombstone is stored.
pub const ERR_NOSESSION: &str = "NOSESSION";
/// Error code: the store is at its memory limit.
pub const ERR_OOM: &str = "OOM";

/// Error code: the owner's lease was killed at this store; it must take a
/// new epoch (`SESS.LEASE`).
pub const ERR_DEAD: &str = "DEAD";
/// Error code: the owner's lease is live at this store; followed by the
/// milliseconds it has left (`SESS.KILL` without `FORCE`).
pub const ERR_LIVE: &str = "LIVE";
/// Error code: the store restarted and is inside its recovery window;
/// followed by the milliseconds left.
pub const ERR_RECOVERING: &str = "RECOVERING";
/// Error code: a takeover promised this session to another claim (a
/// higher generation, or this one to another owner); followed by the
/// promised generation.
pub const ERR_PROMISED: &str = "PROMISED";
/// Error code: no copy, but the store restarted within the horizon and may
/// have forgotten one; followed by its uptime in milliseconds
/// (`SESS.PREPARE`).
pub const ERR_FORGETFUL: &str = "FORGETFUL";

/// `WITHLEASE` option of `SESS.GET`.
pub const OPT_WITHLEASE: &str = "WITHLEASE";
/// `SESS.PREPARE key NEXT ...`: the store picks the generation to promise.
pub const ARG_NEXT: &str = "NEXT";
/// `RELEASE` option of `SESS.PREPARE key NEXT`: a lease proven gone,
/// released first.
pub const OPT_RELEASE: &str = "RELEASE";
/// `FORCE` option of `SESS.KILL`.
pub const OPT_FORCE: &str = "FORCE";

/// `kind` word of a live copy in a `SESS.GET` reply.
pub const KIND_LIVE: &str = "live";
/// `kind` word of a tombstone in a `SESS.GET` reply.
pub const KIND_TOMBSTONE: &str = "tombstone";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_index_and_lookup_agree() {
        for (i, c) in SessionCommand::ALL.into_iter().enumerate() {
            assert_eq!(c.index(), i);
            assert_eq!(c.lowercase(), c.as_str().to_ascii_lowercase());
            assert_eq!(c.to_string(), c.as_str());
            assert_eq!(SessionCommand::from_name(c.as_str().as_bytes()), Some(c));
            assert_eq!(SessionCommand::from_name(c.lowercase().as_bytes()), Some(c));
        }
        for other in [&b"GET"[..], b"SESS.", b"SESS.PUTX", b"", b"sess_put"] {
            assert_eq!(SessionCommand::from_name(other), None, "{other:?}");
        }
    }
}
