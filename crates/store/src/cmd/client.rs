//! [`Client`]: the per-connection state that commands read and change.

use bytes::Bytes;
use sticky_proto::resp::Version;

/// Per-connection state that commands read and change.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) authenticated: bool,
    pub(crate) version: Version,
    pub(crate) name: Option<Bytes>,
    /// Set by `QUIT`: close after flushing the reply.
    pub(crate) quit: bool,
    /// Wrong passwords presented on this connection.
    pub(crate) auth_failures: u32,
}

/// Wrong passwords one connection may present before it is closed: enough
/// for a typo, too few to guess.
pub(crate) const MAX_AUTH_FAILURES: u32 = 10;

impl Client {
    pub(crate) fn new(id: u64, needs_auth: bool) -> Self {
        Self {
            id,
            authenticated: !needs_auth,
            version: Version::Resp2,
            name: None,
            quit: false,
            auth_failures: 0,
        }
    }
}
