//! [`ClientError`], what a request's failure means, and how the store's
//! error replies (`-STALE 3 7`, `-NOAUTH ...`) and the `redis` crate's
//! errors become one. Messages never contain keys or payloads.

use std::time::Duration;

use redis::{ErrorKind, RedisError};
use sticky_proto::command;
use sticky_proto::Stamp;

/// Longest server-provided text kept in an error message.
const MAX_ERROR_TEXT: usize = 256;

/// Why a store request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// The store holds a copy or tombstone whose stamp is higher than or
    /// equal to the one sent (or, for a claim, different from the expected
    /// one).
    #[error("stale stamp: the store holds stamp {stored}")]
    Stale {
        /// The stamp the store holds.
        stored: Stamp,
    },
    /// The session was destroyed: the store holds a tombstone.
    #[error("session deleted: the store holds a tombstone with stamp {stamp}")]
    Deleted {
        /// The tombstone's stamp.
        stamp: Stamp,
    },
    /// The store holds neither a copy nor a tombstone of the session.
    #[error("no such session in the store")]
    NoSession,
    /// The lease was killed at this store (`SESS.LEASE`): the web server must
    /// stop serving from its cache and take a new epoch.
    #[error("lease dead at this store: take a new epoch")]
    Dead,
    /// The lease is live at this store for `remaining` more (`SESS.KILL`
    /// without force): its owner may still serve; do not take over.
    #[error("lease live at this store for {} ms more", .remaining.as_millis())]
    Live {
        /// How long the lease has left at this store.
        remaining: Duration,
    },
    /// The store restarted without its records and is inside its recovery
    /// window for `remaining` more: it grants no lease and accepts no kill
    /// or prepare until then.
    #[error("store recovering from a restart for {} ms more", .remaining.as_millis())]
    Recovering {
        /// How long the recovery window has left.
        remaining: Duration,
    },
    /// A takeover of the session promised `generation` (`SESS.PREPARE`):
    /// the store refuses writes below it (and of it by another owner) and
    /// lower prepares.
    #[error("a takeover of the session is in progress at generation {generation}")]
    Promised {
        /// The promised generation.
        generation: u64,
    },
    /// A restarted store holds no copy of the session but started less
    /// than the claim's horizon ago, so its "no copy" may be a copy it
    /// forgot (`SESS.PREPARE key NEXT`; the explicit-generation prepare
    /// answers this as [`Prepared::Forgetful`](crate::Prepared::Forgetful)).
    #[error("store restarted {} ms ago and may have forgotten the session", .uptime.as_millis())]
    Forgetful {
        /// How long ago the store started.
        uptime: Duration,
    },
    /// The store is at its memory limit and refused the write.
    #[error("store out of memory: {0}")]
    OutOfMemory(String),
    /// The store refused the credentials, or wants some.
    #[error("store authentication failed: {0}")]
    Auth(String),
    /// No reply within [`ClientOptions::request_timeout`](crate::ClientOptions::request_timeout).
    /// The command may or may not have been applied.
    #[error("store request timed out")]
    Timeout,
    /// The connection failed or broke, or the store is unavailable and the
    /// client is waiting before reconnecting. The command may or may not
    /// have been applied.
    #[error("store connection lost: {0}")]
    ConnectionLost(String),
    /// The store's reply does not have the documented shape.
    #[error("unexpected reply from the store: {0}")]
    Protocol(String),
    /// Any other error reply of the store (`-ERR ...`).
    #[error("store error: {0}")]
    Server(String),
    /// The address or options given to [`StoreClient::new`](crate::StoreClient::new)
    /// are invalid.
    #[error("invalid store client configuration: {0}")]
    InvalidConfig(String),
}

impl ClientError {
    /// Whether the failure is transient: the same request may succeed if
    /// sent again ([`ClientError::Timeout`], [`ClientError::ConnectionLost`]).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Timeout | Self::ConnectionLost(_))
    }
}

/// `s` cut to [`MAX_ERROR_TEXT`] bytes (on a character boundary).
pub(crate) fn clip(s: &str) -> String {
    if s.len() <= MAX_ERROR_TEXT {
        return s.to_owned();
    }
    let mut end = MAX_ERROR_TEXT;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// The [`ClientError`] for the error reply `-<code> <detail>`.
pub(crate) fn server_error(code: &str, detail: Option<&str>) -> ClientError {
    let mut detail = detail.unwrap_or("").trim();
    // Redis quotes the arguments of an unknown command (key, payload...).
    if let Some(at) = detail.find(", with args beginning with") {
        detail = &detail[..at];
    }
    match code {
        command::ERR_STALE => match parse_stamp_detail(detail) {
            Some(stored) => ClientError::Stale { stored },
            None => ClientError::Protocol(format!(
                "{code} error without a valid stamp: {:?}",
                clip(detail)
            )),
        },
        command::ERR_DELETED => match parse_stamp_detail(detail) {
            Some(stamp) => ClientError::Deleted { stamp },
            None => ClientError::Protocol(format!(
                "{code} error without a valid stamp: {:?}",
                clip(detail)
            )),
        },
        command::ERR_NOSESSION => ClientError::NoSession,
        command::ERR_DEAD => ClientError::Dead,
        command::ERR_LIVE => match first_number(detail) {
            Some(ms) => ClientError::Live {
                remaining: Duration::from_millis(ms),
            },
            None => bad_number(code, detail),
        },
        command::ERR_RECOVERING => match first_number(detail) {
            Some(ms) => ClientError::Recovering {
                remaining: Duration::from_millis(ms),
            },
            None => bad_number(code, detail),
        },
        command::ERR_PROMISED => match first_number(detail) {
            Some(generation) => ClientError::Promised { generation },
            None => bad_number(code, detail),
        },
        command::ERR_OOM => ClientError::OutOfMemory(clip(detail)),
        "NOAUTH" | "WRONGPASS" => ClientError::Auth(clip(&format!("{code} {detail}"))),
        _ if detail.is_empty() => ClientError::Server(clip(code)),
        _ => ClientError::Server(clip(&format!("{code} {detail}"))),
    }
}

/// The number an error's detail starts with (`LIVE 2990 the lease ...`).
pub(crate) fn first_number(detail: &str) -> Option<u64> {
    detail.split_ascii_whitespace().next()?.parse().ok()
}

fn bad_number(code: &str, detail: &str) -> ClientError {
    ClientError::Protocol(format!(
        "{code} error without a valid number: {:?}",
        clip(detail)
    ))
}

/// The stamp in the `<gen> <seq>` detail of a `STALE` or `DELETED` error.
pub(crate) fn parse_stamp_detail(detail: &str) -> Option<Stamp> {
    let mut words = detail.split_ascii_whitespace();
    let generation = words.next()?.parse().ok()?;
    let seq = words.next()?.parse().ok()?;
    match words.next() {
        None => Some(Stamp::new(generation, seq)),
        Some(_) => None,
    }
}

/// The [`ClientError`] for an error of the `redis` crate.
pub(crate) fn error_from_redis(e: &RedisError) -> ClientError {
    if let Some(code) = e.code() {
        return server_error(code, e.detail());
    }
    if e.kind() == ErrorKind::AuthenticationFailed {
        return ClientError::Auth(clip(&e.to_string()));
    }
    if e.is_timeout() {
        return ClientError::Timeout;
    }
    if e.is_io_error() || e.is_unrecoverable_error() {
        if e.kind() == ErrorKind::Parse {
            // The parser's message may quote the bytes it choked on.
            return ClientError::ConnectionLost(String::from(
                "malformed reply, connection dropped",
            ));
        }
        return ClientError::ConnectionLost(clip(&e.to_string()));
    }
    match e.kind() {
        ErrorKind::Parse | ErrorKind::UnexpectedReturnType => {
            ClientError::Protocol(format!("{} from the redis client", e.category()))
        }
        _ => ClientError::Server(clip(&e.to_string())),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn redis_errors_map_to_client_errors() {
        let io = |kind| RedisError::from(std::io::Error::from(kind));
        assert_eq!(
            error_from_redis(&io(std::io::ErrorKind::TimedOut)),
            ClientError::Timeout
        );
        assert!(matches!(
            error_from_redis(&io(std::io::ErrorKind::ConnectionRefused)),
            ClientError::ConnectionLost(_)
        ));
        assert!(matches!(
            error_from_redis(&io(std::io::ErrorKind::BrokenPipe)),
            ClientError::ConnectionLost(_)
        ));
        assert!(matches!(
            error_from_redis(&RedisError::from((
                ErrorKind::AuthenticationFailed,
                "Password authentication failed"
            ))),
            ClientError::Auth(_)
        ));
        let stale = redis::make_extension_error("STALE".into(), Some("5 6".into()));
        assert_eq!(
            error_from_redis(&stale),
            ClientError::Stale {
                stored: Stamp::new(5, 6)
            }
        );
        assert!(ClientError::Timeout.is_retryable());
        assert!(ClientError::ConnectionLost(String::new()).is_retryable());
        assert!(!ClientError::Stale {
            stored: Stamp::default()
        }
        .is_retryable());
        assert!(!ClientError::Auth(String::new()).is_retryable());
    }

    #[test]
    fn clip_cuts_on_char_boundaries() {
        assert_eq!(clip("abc"), "abc");
        let long = "é".repeat(MAX_ERROR_TEXT);
        let cut = clip(&long);
        assert!(cut.len() <= MAX_ERROR_TEXT + 3 && cut.ends_with("..."));
    }
}
