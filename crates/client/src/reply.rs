//! Decoding of the store's replies: RESP3 attributes and error replies
//! ([`reply_value`]), `+OK`, the `SESS.TOUCH` integer, the `SESS.GET`
//! array as a [`StoredSession`] (with `WITHLEASE`, and a `SESS.PREPARE`
//! answer: also a [`LeaseState`]), and the `SESS.OWNED` page. Messages name a reply's type, never its
//! content (which may be a payload).

use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use redis::Value;
use sticky_proto::command::{self, SessionCommand};
use sticky_proto::Stamp;

use crate::error::{server_error, ClientError};

/// A session copy as stored, read with [`StoreClient::get`](crate::StoreClient::get).
///
/// `Debug` shows the payload's length, not its bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// Stamp of the copy (or of the delete, for a tombstone).
    pub stamp: Stamp,
    /// Web server hosting the session; empty for a tombstone.
    pub owner: String,
    /// Remaining time to live; `None` when the copy never expires.
    pub ttl: Option<Duration>,
    /// The session data; empty for a tombstone.
    pub payload: Bytes,
    /// `true` for a tombstone: the session was destroyed.
    pub deleted: bool,
}

impl fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredSession")
            .field("stamp", &self.stamp)
            .field("owner", &self.owner)
            .field("ttl", &self.ttl)
            .field("payload_len", &self.payload.len())
            .field("deleted", &self.deleted)
            .finish()
    }
}

/// What a store knows of a web server's lease (`SESS.GET key WITHLEASE`):
/// the lease of the copy's owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Live at this store for this much longer.
    Live(Duration),
    /// No lease here: never granted, expired, or the copy is a tombstone
    /// (which has no owner).
    Absent,
    /// Killed here: its owner can no longer renew it at this store.
    Dead,
}

impl LeaseState {
    /// The state the store's integer names: remaining ms, `-1` none, `-2`
    /// dead.
    pub(crate) fn from_int(ms: i64) -> Option<Self> {
        match ms {
            -2 => Some(Self::Dead),
            -1 => Some(Self::Absent),
            ms if ms >= 0 => Some(Self::Live(Duration::from_millis(ms.unsigned_abs()))),
            _ => None,
        }
    }

    /// Whether the lease is live here.
    pub fn is_live(self) -> bool {
        matches!(self, Self::Live(_))
    }
}

/// A store's answer to a takeover's prepare
/// ([`StoreClient::prepare`](crate::StoreClient::prepare)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prepared {
    /// The store holds this copy, and promised. A tombstone
    /// (`session.deleted`) comes without a promise: a destroyed session is
    /// not taken over. `lease` is what the store knows of the copy owner's
    /// lease.
    Copy {
        /// The copy or tombstone.
        session: StoredSession,
        /// The copy owner's lease at this store.
        lease: LeaseState,
    },
    /// No copy here, and promised all the same: this "no" counts.
    NoCopy,
    /// No copy, but the store restarted less than the horizon ago and may
    /// have forgotten one: this "no" must not count toward the quorum as a
    /// "no" (the store did record the promise). Never answered by Redis,
    /// which has no notion of a restart here (`docs/redis.md`).
    Forgetful {
        /// How long ago the store started.
        uptime: Duration,
    },
}

/// A store's answer to a takeover's read-and-promise
/// ([`StoreClient::prepare_next`](crate::StoreClient::prepare_next)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedNext {
    /// The generation promised to the claimer; 0 when nothing was
    /// promised (the copy is a tombstone, or its owner's lease is live at
    /// this store).
    pub generation: u64,
    /// The copy or tombstone, and what the store knows of the copy owner's
    /// lease; `None`: no copy here.
    pub copy: Option<(StoredSession, LeaseState)>,
}

/// The reply of `SESS.PREPARE key NEXT`: `[generation, copy or null]`.
pub(crate) fn parse_prepared_next(reply: Value, what: &str) -> Result<PreparedNext, ClientError> {
    let [generation, copy] = pair(reply, what)?;
    let generation =
        unsigned(&generation).ok_or_else(|| unexpected(what, "a generation", &generation))?;
    let copy = parse_session_with_lease(copy, what)?;
    if generation > 0
        && copy
            .as_ref()
            .is_some_and(|(c, _)| c.stamp.generation >= generation)
    {
        return Err(ClientError::Protocol(format!(
            "{what}: promised generation {generation} is not above the copy's"
        )));
    }
    Ok(PreparedNext { generation, copy })
}

/// A reply with RESP3 attributes removed and an error reply turned into
/// its [`ClientError`].
pub(crate) fn reply_value(value: Value) -> Result<Value, ClientError> {
    match value {
        Value::Attribute { data, .. } => reply_value(*data),
        Value::ServerError(e) => Err(server_error(e.code(), e.details())),
        other => Ok(other),
    }
}

/// `+OK`, or a [`ClientError::Protocol`].
pub(crate) fn expect_ok(reply: Value, what: &str) -> Result<(), ClientError> {
    match reply {
        Value::Okay => Ok(()),
        Value::SimpleString(s) if s == "OK" => Ok(()),
        other => Err(unexpected(what, "+OK", &other)),
    }
}

/// The reply of `SESS.TOUCH`: `:1` or `:0`.
pub(crate) fn parse_touch(reply: Value) -> Result<bool, ClientError> {
    match reply {
        Value::Int(1) | Value::Boolean(true) => Ok(true),
        Value::Int(0) | Value::Boolean(false) => Ok(false),
        other => Err(unexpected(
            SessionCommand::Touch.as_str(),
            ":0 or :1",
            &other,
        )),
    }
}

/// The reply of `SESS.GET`: null, or
/// `[kind, gen, seq, owner, pttl_ms, payload]`.
pub(crate) fn parse_session(reply: Value) -> Result<Option<StoredSession>, ClientError> {
    const GET: &str = SessionCommand::Get.as_str();
    let items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => items,
        other => return Err(unexpected(GET, "an array or null", &other)),
    };
    let n = items.len();
    let fields: [Value; 6] = items
        .try_into()
        .map_err(|_| ClientError::Protocol(format!("{GET}: expected 6 elements, got {n}")))?;
    parse_fields(fields, GET).map(Some)
}

/// The reply of `SESS.GET key WITHLEASE` and `SESS.PREPARE`: null, or
/// `[kind, gen, seq, owner, pttl_ms, payload, lease]`.
pub(crate) fn parse_session_with_lease(
    reply: Value,
    what: &str,
) -> Result<Option<(StoredSession, LeaseState)>, ClientError> {
    let mut items = match reply {
        Value::Nil => return Ok(None),
        Value::Array(items) => items,
        other => return Err(unexpected(what, "an array or null", &other)),
    };
    let n = items.len();
    if n != 7 {
        return Err(ClientError::Protocol(format!(
            "{what}: expected 7 elements, got {n}"
        )));
    }
    let lease = items.pop().unwrap_or(Value::Nil);
    let lease = parse_lease_state(lease, what)?;
    let fields: [Value; 6] = items
        .try_into()
        .map_err(|_| ClientError::Protocol(format!("{what}: expected 7 elements, got {n}")))?;
    Ok(Some((parse_fields(fields, what)?, lease)))
}

/// A lease state integer: remaining ms, `-1` none, `-2` dead.
pub(crate) fn parse_lease_state(v: Value, what: &str) -> Result<LeaseState, ClientError> {
    signed(&v)
        .and_then(LeaseState::from_int)
        .ok_or_else(|| unexpected(what, "a lease state (ms, -1 or -2)", &v))
}

/// A two-element array reply.
fn pair(reply: Value, what: &str) -> Result<[Value; 2], ClientError> {
    let items = match reply {
        Value::Array(items) => items,
        other => return Err(unexpected(what, "an array", &other)),
    };
    let n = items.len();
    items
        .try_into()
        .map_err(|_| ClientError::Protocol(format!("{what}: expected 2 elements, got {n}")))
}

/// The reply of `SESS.OWNED`: `[next_cursor, [key, ...]]`.
pub(crate) fn parse_owned(reply: Value) -> Result<(u64, Vec<Bytes>), ClientError> {
    const OWNED: &str = SessionCommand::Owned.as_str();
    let [cursor, keys] = pair(reply, OWNED)?;
    let next = unsigned(&cursor).ok_or_else(|| unexpected(OWNED, "a cursor", &cursor))?;
    let keys = match keys {
        Value::Array(keys) => keys,
        other => return Err(unexpected(OWNED, "an array of keys", &other)),
    };
    let keys = keys
        .into_iter()
        .map(|k| match k {
            Value::BulkString(b) => Ok(Bytes::from(b)),
            Value::SimpleString(s) => Ok(Bytes::from(s.into_bytes())),
            other => Err(unexpected(OWNED, "a key", &other)),
        })
        .collect::<Result<_, _>>()?;
    Ok((next, keys))
}

/// The six fields of a copy, as `SESS.GET` sends them; `what` names the
/// command in messages.
fn parse_fields(fields: [Value; 6], what: &str) -> Result<StoredSession, ClientError> {
    let [kind, generation, seq, owner, pttl, payload] = fields;
    let bad = |field: &str, expected: &str, got: &Value| {
        ClientError::Protocol(format!(
            "{what}: {field}: expected {expected}, got {}",
            describe(got)
        ))
    };
    let deleted = match text(&kind) {
        Some(command::KIND_LIVE) => false,
        Some(command::KIND_TOMBSTONE) => true,
        Some(other) => {
            return Err(ClientError::Protocol(format!(
                "{what}: unknown kind ({} bytes)",
                other.len()
            )))
        }
        None => return Err(bad("kind", "a string", &kind)),
    };
    let stamp = Stamp::new(
        unsigned(&generation)
            .ok_or_else(|| bad("generation", "an unsigned integer", &generation))?,
        unsigned(&seq).ok_or_else(|| bad("seq", "an unsigned integer", &seq))?,
    );
    let ttl = match signed(&pttl) {
        Some(-1) => None,
        Some(ms) if ms >= 0 => Some(Duration::from_millis(ms.unsigned_abs())),
        _ => return Err(bad("pttl_ms", "-1 or a non-negative integer", &pttl)),
    };
    let owner = match owner {
        Value::Nil => String::new(),
        Value::BulkString(b) => String::from_utf8(b)
            .map_err(|_| ClientError::Protocol(format!("{what}: owner is not UTF-8")))?,
        Value::SimpleString(s) => s,
        other => return Err(bad("owner", "a string", &other)),
    };
    let payload = match payload {
        Value::Nil => Bytes::new(),
        Value::BulkString(b) => Bytes::from(b),
        Value::SimpleString(s) => Bytes::from(s.into_bytes()),
        other => return Err(bad("payload", "a bulk string", &other)),
    };
    Ok(StoredSession {
        stamp,
        owner,
        ttl,
        payload,
        deleted,
    })
}

/// A short text value (bulk or simple string), if `v` is one.
fn text(v: &Value) -> Option<&str> {
    match v {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

/// An integer, or a string holding one.
fn signed(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        _ => text(v)?.parse().ok(),
    }
}

/// An unsigned 64-bit integer, or a string holding one (RESP integers are
/// signed, so a store may send values over `i64::MAX` as strings).
fn unsigned(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        _ => text(v)?.parse().ok(),
    }
}

pub(crate) fn unexpected(what: &str, expected: &str, got: &Value) -> ClientError {
    ClientError::Protocol(format!(
        "{what}: expected {expected}, got {}",
        describe(got)
    ))
}

/// The type of a reply, for messages: never its content, which may be a
/// payload.
pub(crate) fn describe(v: &Value) -> &'static str {
    match v {
        Value::Nil => "null",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a bulk string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) => "a status",
        Value::Okay => "+OK",
        Value::Map(_) => "a map",
        Value::Attribute { .. } => "an attribute",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        Value::VerbatimString { .. } => "a verbatim string",
        Value::Push { .. } => "a push",
        Value::ServerError(_) => "an error",
        _ => "an unsupported RESP type",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::parse_stamp_detail;

    fn parse(wire: &[u8]) -> Value {
        redis::parse_redis_value(wire).unwrap()
    }

    fn bulk(b: &[u8]) -> Value {
        Value::BulkString(b.to_vec())
    }

    fn get_reply(kind: &str, g: i64, s: i64, owner: &str, pttl: i64, payload: &[u8]) -> Value {
        Value::Array(vec![
            bulk(kind.as_bytes()),
            Value::Int(g),
            Value::Int(s),
            bulk(owner.as_bytes()),
            Value::Int(pttl),
            bulk(payload),
        ])
    }

    #[test]
    fn error_replies_map_to_client_errors() {
        let cases = [
            (
                &b"-STALE 3 7\r\n"[..],
                ClientError::Stale {
                    stored: Stamp::new(3, 7),
                },
            ),
            (
                b"-DELETED 18446744073709551615 0\r\n",
                ClientError::Deleted {
                    stamp: Stamp::new(u64::MAX, 0),
                },
            ),
            (b"-NOSESSION no such session\r\n", ClientError::NoSession),
            (
                b"-OOM command not allowed when used memory > 'maxmemory'\r\n",
                ClientError::OutOfMemory(
                    "command not allowed when used memory > 'maxmemory'".into(),
                ),
            ),
            (
                b"-NOAUTH Authentication required.\r\n",
                ClientError::Auth("NOAUTH Authentication required.".into()),
            ),
            (
                b"-WRONGPASS invalid username-password pair\r\n",
                ClientError::Auth("WRONGPASS invalid username-password pair".into()),
            ),
            (
                b"-ERR new stamp must be higher\r\n",
                ClientError::Server("ERR new stamp must be higher".into()),
            ),
            (b"-WEIRD\r\n", ClientError::Server("WEIRD".into())),
            (
                b"-ERR unknown command 'SESS.PUT', with args beginning with: 'k' 'SECRET' \r\n",
                ClientError::Server("ERR unknown command 'SESS.PUT'".into()),
            ),
        ];
        for (wire, want) in cases {
            assert_eq!(reply_value(parse(wire)), Err(want), "{wire:?}");
        }
    }

    #[test]
    fn ownership_error_replies_map_to_client_errors() {
        let cases = [
            (
                &b"-DEAD the lease was ended at this store; take a new epoch\r\n"[..],
                ClientError::Dead,
            ),
            (
                b"-LIVE 2990 the lease is live at this store\r\n",
                ClientError::Live {
                    remaining: Duration::from_millis(2990),
                },
            ),
            (
                b"-RECOVERING 17 the store restarted and is inside its recovery window\r\n",
                ClientError::Recovering {
                    remaining: Duration::from_millis(17),
                },
            ),
            (
                b"-PROMISED 9007199254740991 a takeover of this session is in progress\r\n",
                ClientError::Promised {
                    generation: (1 << 53) - 1,
                },
            ),
            (b"-PROMISED 5\r\n", ClientError::Promised { generation: 5 }),
        ];
        for (wire, want) in cases {
            assert_eq!(reply_value(parse(wire)), Err(want), "{wire:?}");
        }
        for wire in [
            &b"-LIVE\r\n"[..],
            b"-LIVE soon\r\n",
            b"-RECOVERING -1 x\r\n",
            b"-PROMISED x a takeover\r\n",
        ] {
            assert!(
                matches!(reply_value(parse(wire)), Err(ClientError::Protocol(_))),
                "{wire:?}"
            );
        }
    }

    #[test]
    fn with_lease_and_owned_replies_parse() {
        let with = |lease: Value| match get_reply("live", 3, 7, "ws1@2", 1500, b"p") {
            Value::Array(mut items) => {
                items.push(lease);
                Value::Array(items)
            }
            _ => unreachable!(),
        };
        let w = "SESS.GET WITHLEASE";
        assert_eq!(parse_session_with_lease(Value::Nil, w), Ok(None));
        for (lease, want) in [
            (Value::Int(-1), LeaseState::Absent),
            (Value::Int(-2), LeaseState::Dead),
            (Value::Int(0), LeaseState::Live(Duration::ZERO)),
            (bulk(b"2500"), LeaseState::Live(Duration::from_millis(2500))),
        ] {
            let (s, l) = parse_session_with_lease(with(lease), w).unwrap().unwrap();
            assert_eq!(
                (s.stamp, s.owner.as_str(), l),
                (Stamp::new(3, 7), "ws1@2", want)
            );
        }
        for bad in [
            with(Value::Int(-3)),
            with(Value::Nil),
            get_reply("live", 3, 7, "w", 5, b"SECRET"),
            Value::Okay,
        ] {
            let err = parse_session_with_lease(bad, w).unwrap_err();
            assert!(matches!(err, ClientError::Protocol(_)), "{err:?}");
            assert!(!err.to_string().contains("SECRET"));
        }
        assert!(LeaseState::Live(Duration::ZERO).is_live() && !LeaseState::Dead.is_live());

        let owned = parse(b"*2\r\n$2\r\n12\r\n*2\r\n$1\r\na\r\n$2\r\nb\x00\r\n");
        assert_eq!(
            parse_owned(owned),
            Ok((
                12,
                vec![Bytes::from_static(b"a"), Bytes::from_static(b"b\x00")]
            ))
        );
        assert_eq!(
            parse_owned(Value::Array(vec![bulk(b"0"), Value::Array(vec![])])),
            Ok((0, vec![]))
        );
        for bad in [
            Value::Nil,
            Value::Array(vec![bulk(b"0")]),
            Value::Array(vec![bulk(b"-1"), Value::Array(vec![])]),
            Value::Array(vec![bulk(b"0"), bulk(b"k")]),
            Value::Array(vec![bulk(b"0"), Value::Array(vec![Value::Int(1)])]),
        ] {
            assert!(
                matches!(parse_owned(bad.clone()), Err(ClientError::Protocol(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn malformed_stamps_in_errors_are_protocol_errors() {
        for wire in [
            &b"-STALE\r\n"[..],
            b"-STALE 3\r\n",
            b"-STALE 3 x\r\n",
            b"-STALE -1 2\r\n",
            b"-STALE 1 2 3\r\n",
            b"-DELETED 18446744073709551616 0\r\n",
        ] {
            assert!(
                matches!(reply_value(parse(wire)), Err(ClientError::Protocol(_))),
                "{wire:?}"
            );
        }
        assert_eq!(parse_stamp_detail("  3   7 "), Some(Stamp::new(3, 7)));
    }

    #[test]
    fn get_replies_parse() {
        assert_eq!(parse_session(Value::Nil), Ok(None));
        assert_eq!(parse_session(parse(b"_\r\n")), Ok(None), "RESP3 null");
        let live = parse_session(get_reply("live", 3, 7, "web-1", 1500, b"\x00\xffdata"))
            .unwrap()
            .unwrap();
        assert_eq!(
            live,
            StoredSession {
                stamp: Stamp::new(3, 7),
                owner: "web-1".into(),
                ttl: Some(Duration::from_millis(1500)),
                payload: Bytes::from_static(b"\x00\xffdata"),
                deleted: false,
            }
        );
        let tomb = parse_session(get_reply("tombstone", 4, 0, "", -1, b""))
            .unwrap()
            .unwrap();
        assert!(tomb.deleted);
        assert_eq!(tomb.ttl, None);
        assert_eq!(tomb.stamp, Stamp::new(4, 0));
        assert!(tomb.payload.is_empty() && tomb.owner.is_empty());

        // Stamps over i64::MAX sent as strings, nulls for tombstone fields.
        let big = Value::Array(vec![
            Value::SimpleString("tombstone".into()),
            bulk(b"18446744073709551615"),
            bulk(b"2"),
            Value::Nil,
            bulk(b"0"),
            Value::Nil,
        ]);
        let big = parse_session(big).unwrap().unwrap();
        assert_eq!(big.stamp, Stamp::new(u64::MAX, 2));
        assert_eq!(big.ttl, Some(Duration::ZERO));

        // The wire form, as the store sends it.
        let wire = b"*6\r\n$4\r\nlive\r\n:1\r\n:2\r\n$1\r\nw\r\n:-1\r\n$4\r\na\r\nb\r\n";
        let s = parse_session(parse(wire)).unwrap().unwrap();
        assert_eq!(s.payload, Bytes::from_static(b"a\r\nb"));
        assert_eq!(s.ttl, None);
    }

    #[test]
    fn malformed_get_replies_are_protocol_errors_without_payload() {
        let secret = b"SECRET-PAYLOAD";
        let bad = [
            Value::Okay,
            Value::Int(1),
            bulk(secret),
            Value::Array(vec![]),
            Value::Array(vec![bulk(b"live"), Value::Int(1), Value::Int(2)]),
            get_reply("SECRET-PAYLOAD", 1, 2, "w", 5, secret),
            get_reply("live", -1, 2, "w", 5, secret),
            get_reply("live", 1, -2, "w", 5, secret),
            get_reply("live", 1, 2, "w", -2, secret),
            Value::Array(vec![
                bulk(b"live"),
                Value::Int(1),
                Value::Int(2),
                bulk(b"\xff\xfe"),
                Value::Int(5),
                bulk(secret),
            ]),
            Value::Array(vec![
                bulk(b"live"),
                Value::Int(1),
                Value::Int(2),
                bulk(b"w"),
                Value::Int(5),
                Value::Array(vec![bulk(secret)]),
            ]),
            Value::Array(vec![
                bulk(secret),
                bulk(secret),
                bulk(secret),
                Value::Int(0),
                bulk(secret),
                Value::Int(0),
            ]),
            Value::Array(vec![Value::Nil; 7]),
        ];
        for v in bad {
            let err = parse_session(v.clone()).unwrap_err();
            assert!(matches!(err, ClientError::Protocol(_)), "{v:?} -> {err:?}");
            let msg = err.to_string();
            assert!(!msg.contains("SECRET"), "payload leaked: {msg}");
        }
    }

    #[test]
    fn ok_touch_and_ping_replies() {
        assert_eq!(expect_ok(parse(b"+OK\r\n"), "X"), Ok(()));
        assert_eq!(expect_ok(Value::SimpleString("OK".into()), "X"), Ok(()));
        assert!(matches!(
            expect_ok(Value::Int(1), "X"),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            expect_ok(bulk(b"OK"), "X"),
            Err(ClientError::Protocol(_))
        ));
        assert_eq!(parse_touch(parse(b":1\r\n")), Ok(true));
        assert_eq!(parse_touch(parse(b":0\r\n")), Ok(false));
        assert_eq!(parse_touch(parse(b"#t\r\n")), Ok(true));
        assert!(matches!(
            parse_touch(Value::Int(2)),
            Err(ClientError::Protocol(_))
        ));
        assert!(matches!(
            parse_touch(Value::Nil),
            Err(ClientError::Protocol(_))
        ));
        // RESP3 attributes are transparent.
        let attr = Value::Attribute {
            data: Box::new(Value::Okay),
            attributes: vec![],
        };
        assert_eq!(reply_value(attr), Ok(Value::Okay));
    }

    #[test]
    fn stored_session_debug_hides_payload() {
        let s = StoredSession {
            stamp: Stamp::new(1, 2),
            owner: "w".into(),
            ttl: None,
            payload: Bytes::from_static(b"SECRET"),
            deleted: false,
        };
        let dbg = format!("{s:?}");
        assert!(
            !dbg.contains("SECRET") && dbg.contains("payload_len: 6"),
            "{dbg}"
        );
    }
}
