//! What the raw exchanges with web servers (`fast_path.rs`,
//! `raw_forward.rs`) and their streamed bodies (`body.rs`) share: how a
//! response body is framed, and why an exchange failed. A leaf module, so
//! that `body.rs` need not depend on the paths that build bodies.

use crate::chunked::ChunkError;

/// Largest response head accepted from a web server.
pub(crate) const MAX_RESPONSE_HEAD: usize = 64 << 10;

/// How a response body ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// At the end of the connection.
    UntilClose,
}

/// Why an exchange with a web server failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UpstreamError {
    #[error("connection closed before a response")]
    ClosedEarly,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed response head")]
    BadHead,
    #[error("response head over {MAX_RESPONSE_HEAD} bytes")]
    HeadTooLarge,
    #[error("ambiguous response framing")]
    BadFraming,
    #[error("switched protocols unasked")]
    UnaskedUpgrade,
    #[error("malformed chunked body: {0}")]
    Chunk(#[from] ChunkError),
    #[error("connection closed inside the response body")]
    Truncated,
    #[error("no response bytes for the idle timeout")]
    Idle,
    #[error("the web server was marked down inside the response body")]
    MarkedDown,
}
