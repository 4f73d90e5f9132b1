//! Plain Redis data commands: GET, SET, DEL, EXISTS, (P)EXPIRE, (P)TTL, TYPE.

use sticky_proto::resp::Reply;

use super::args::{arity, int_arg};
use crate::keyspace::{KeyType, Keyspace, SetCondition};

/// `GET key`
pub(super) fn get(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [key] = a else {
        return arity("get");
    };
    match ks.get(key) {
        Ok(Some(v)) => Reply::Bulk(v),
        Ok(None) => Reply::Null,
        Err(e) => e.into(),
    }
}

/// `SET key value [EX s | PX ms] [NX | XX]`
pub(super) fn set(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [key, value, opts @ ..] = a else {
        return arity("set");
    };
    let mut ttl_ms = None;
    let mut cond = SetCondition::Always;
    let mut i = 0;
    while i < opts.len() {
        let opt = &opts[i];
        if opt.eq_ignore_ascii_case(b"NX") && cond == SetCondition::Always {
            cond = SetCondition::IfAbsent;
        } else if opt.eq_ignore_ascii_case(b"XX") && cond == SetCondition::Always {
            cond = SetCondition::IfPresent;
        } else if (opt.eq_ignore_ascii_case(b"EX") || opt.eq_ignore_ascii_case(b"PX"))
            && ttl_ms.is_none()
        {
            let Some(n) = opts.get(i + 1) else {
                return Reply::error("ERR syntax error");
            };
            let n = tri!(int_arg(n));
            let unit = if opt.eq_ignore_ascii_case(b"EX") {
                1000
            } else {
                1
            };
            match n.checked_mul(unit) {
                Some(ms) if ms > 0 => ttl_ms = Some(ms as u64),
                _ => return Reply::error("ERR invalid expire time in 'set' command"),
            }
            i += 1;
        } else {
            return Reply::error("ERR syntax error");
        }
        i += 1;
    }
    match ks.set(key, value, ttl_ms, cond) {
        Ok(true) => Reply::OK,
        Ok(false) => Reply::Null,
        Err(e) => e.into(),
    }
}

/// `DEL key [key ...]`
pub(super) fn del(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    if a.is_empty() {
        return arity("del");
    }
    Reply::Int(a.iter().filter(|k| ks.del(k)).count() as i64)
}

/// `EXISTS key [key ...]`
pub(super) fn exists(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    if a.is_empty() {
        return arity("exists");
    }
    Reply::Int(a.iter().filter(|k| ks.exists(k)).count() as i64)
}

/// `EXPIRE key seconds` (unit 1000) and `PEXPIRE key ms` (unit 1).
pub(super) fn expire(ks: &Keyspace, a: &[&[u8]], unit: i64) -> Reply {
    let [key, n] = a else {
        return arity(if unit == 1 { "pexpire" } else { "expire" });
    };
    let n = tri!(int_arg(n));
    let Some(ms) = n.checked_mul(unit) else {
        return Reply::error("ERR invalid expire time in 'expire' command");
    };
    Reply::Int(i64::from(ks.pexpire(key, ms)))
}

/// `TTL key` (unit 1000) and `PTTL key` (unit 1).
pub(super) fn ttl(ks: &Keyspace, a: &[&[u8]], unit: i64) -> Reply {
    let [key] = a else {
        return arity(if unit == 1 { "pttl" } else { "ttl" });
    };
    match ks.pttl(key) {
        n if n < 0 => Reply::Int(n),
        ms => Reply::Int(ms.saturating_add(unit / 2) / unit),
    }
}

/// `TYPE key`: `string` for plain values, `session` for copies and tombstones.
pub(super) fn key_type(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [key] = a else {
        return arity("type");
    };
    Reply::Simple(match ks.key_type(key) {
        KeyType::None => "none",
        KeyType::String => "string",
        KeyType::Session => "session",
    })
}
