//! [`SessionError`]: why a session could not be opened or committed, and
//! the HTTP status each reason answers with.

use sticky_proto::Stamp;

/// Why a session could not be opened or committed. Each maps to one HTTP
/// status (see [`SessionError::status`]).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The serialized session is larger than [`Config::max_size`](crate::Config::max_size).
    #[error("session too large: {size} bytes (limit {limit})")]
    TooLarge {
        /// Serialized size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Another server took the session over; this server's copy was dropped.
    #[error("the session moved to another server (stored stamp {stored})")]
    Moved {
        /// The stamp the stores hold.
        stored: Stamp,
    },
    /// No store could be reached to load or save the session.
    #[error("session stores unavailable: {0}")]
    Unavailable(String),
    /// The session data could not be (de)serialized.
    #[error("session data error: {0}")]
    Data(String),
    /// A new session was refused: this server hosts as many sessions (or
    /// session bytes) as it may (`max_sessions`, `max_bytes`). Existing
    /// sessions are still served.
    #[error("no new session: {0}")]
    Full(String),
    /// A new session was refused: its client address created new sessions
    /// faster than `new_sessions_per_ip` allows.
    #[error("too many new sessions from this address; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until the address may create one again (`Retry-After`).
        retry_after_secs: u64,
    },
    /// Another live server holds the session's lease at the stores: this
    /// server claimed nothing and answers 421 naming it, so the director
    /// re-sends the request there (`docs/safety.md` §4).
    #[error("the session is hosted by {owner}")]
    Misdirected {
        /// The name of the server that hosts it.
        owner: String,
    },
    /// Invalid settings.
    #[error("invalid session configuration: {0}")]
    Config(String),
    /// The request was routed for an epoch this server has left (it
    /// fenced itself since): refused before touching any session.
    #[error("this server fenced itself (now epoch {epoch}); the request was routed before that")]
    Fenced {
        /// The server's current epoch.
        epoch: u64,
    },
    /// This server is shutting down ([`SessionManager::stop`](crate::SessionManager::stop)):
    /// its cache is gone and its lease ends, so it serves no session any
    /// more; refused before touching any. Answers `503` with the
    /// `sticky-stopping` header, on which the director marks the server
    /// down and sends the request to the session's failover server.
    #[error("this web server is shutting down")]
    Stopping,
}

impl SessionError {
    /// The HTTP status this error answers with.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            SessionError::TooLarge { .. } => S::PAYLOAD_TOO_LARGE,
            SessionError::Moved { .. } => S::CONFLICT,
            SessionError::Misdirected { .. } => S::MISDIRECTED_REQUEST,
            SessionError::Unavailable(_)
            | SessionError::Fenced { .. }
            | SessionError::Stopping
            | SessionError::Full(_) => S::SERVICE_UNAVAILABLE,
            SessionError::RateLimited { .. } => S::TOO_MANY_REQUESTS,
            SessionError::Data(_) | SessionError::Config(_) => S::INTERNAL_SERVER_ERROR,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn each_error_answers_with_its_status() {
        let cases = [
            (
                SessionError::TooLarge { size: 2, limit: 1 },
                StatusCode::PAYLOAD_TOO_LARGE,
            ),
            (
                SessionError::Moved {
                    stored: Stamp::new(2, 1),
                },
                StatusCode::CONFLICT,
            ),
            (
                SessionError::Unavailable("x".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                SessionError::Fenced { epoch: 7 },
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (SessionError::Stopping, StatusCode::SERVICE_UNAVAILABLE),
            (
                SessionError::Misdirected {
                    owner: "ws2".into(),
                },
                StatusCode::MISDIRECTED_REQUEST,
            ),
            (
                SessionError::Full("x".into()),
                StatusCode::SERVICE_UNAVAILABLE,
            ),
            (
                SessionError::RateLimited {
                    retry_after_secs: 1,
                },
                StatusCode::TOO_MANY_REQUESTS,
            ),
            (
                SessionError::Data("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
            (
                SessionError::Config("x".into()),
                StatusCode::INTERNAL_SERVER_ERROR,
            ),
        ];
        for (e, status) in cases {
            assert_eq!(e.status(), status, "{e}");
        }
        assert_eq!(
            SessionError::Fenced { epoch: 7 }.to_string(),
            "this server fenced itself (now epoch 7); the request was routed before that"
        );
    }
}
