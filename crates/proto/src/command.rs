//! Names and reply words of the session commands (see `docs/protocol.md`).

/// Store a session copy: `SESS.PUT key gen seq owner ttl_ms payload`.
pub const PUT: &str = "SESS.PUT";
/// Read a session copy: `SESS.GET key`.
pub const GET: &str = "SESS.GET";
/// Compare-and-set of the stamp:
/// `SESS.CLAIM key exp_gen exp_seq new_gen new_seq owner ttl_ms`.
pub const CLAIM: &str = "SESS.CLAIM";
/// Extend the TTL of a live copy: `SESS.TOUCH key ttl_ms`.
pub const TOUCH: &str = "SESS.TOUCH";
/// Destroy, leaving a tombstone: `SESS.DEL key gen seq [tombstone_ttl_ms]`.
pub const DEL: &str = "SESS.DEL";

/// Error code: the stored stamp is higher than or equal to the one sent.
/// Followed by the stored `gen seq`.
pub const ERR_STALE: &str = "STALE";
/// Error code: the session was destroyed; followed by the tombstone's stamp.
pub const ERR_DELETED: &str = "DELETED";
/// Error code: neither a copy nor a tombstone is stored.
pub const ERR_NOSESSION: &str = "NOSESSION";
/// Error code: the store is at its memory limit.
pub const ERR_OOM: &str = "OOM";

/// `kind` word of a live copy in a `SESS.GET` reply.
pub const KIND_LIVE: &str = "live";
/// `kind` word of a tombstone in a `SESS.GET` reply.
pub const KIND_TOMBSTONE: &str = "tombstone";
