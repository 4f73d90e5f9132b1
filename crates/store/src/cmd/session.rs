//! `SESS.PUT`, `SESS.GET`, `SESS.CLAIM`, `SESS.TOUCH`, `SESS.DEL`
//! (see `docs/protocol.md`).

use bytes::Bytes;
use sticky_proto::command::{SessionCommand, KIND_LIVE, KIND_TOMBSTONE};
use sticky_proto::resp::Reply;

use super::{arity, stamp_args, uint_arg};
use crate::keyspace::Keyspace;
use crate::server::Shared;

/// `SESS.PUT key gen seq owner ttl_ms payload`
pub(super) fn put(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [key, g, s, owner, ttl, payload] = a else {
        return arity(SessionCommand::Put.lowercase());
    };
    let stamp = tri!(stamp_args(g, s));
    let ttl = tri!(uint_arg(ttl));
    match ks.sess_put(key, stamp, owner, ttl, payload) {
        Ok(()) => Reply::OK,
        Err(e) => e.into(),
    }
}

/// `SESS.GET key`
pub(super) fn get(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [key] = a else {
        return arity(SessionCommand::Get.lowercase());
    };
    match ks.sess_get(key) {
        Ok(None) => Reply::Null,
        Ok(Some(v)) => {
            let (kind, owner, payload) = match v.live {
                Some((owner, payload)) => (KIND_LIVE, owner, payload),
                None => (KIND_TOMBSTONE, Bytes::new(), Bytes::new()),
            };
            Reply::Array(vec![
                Reply::Bulk(Bytes::from_static(kind.as_bytes())),
                Reply::Int(v.stamp.generation as i64),
                Reply::Int(v.stamp.seq as i64),
                Reply::Bulk(owner),
                Reply::Int(v.pttl.map_or(-1, crate::keyspace::clamp_i64)),
                Reply::Bulk(payload),
            ])
        }
        Err(e) => e.into(),
    }
}

/// `SESS.CLAIM key exp_gen exp_seq new_gen new_seq owner ttl_ms`
pub(super) fn claim(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [key, eg, es, ng, ns, owner, ttl] = a else {
        return arity(SessionCommand::Claim.lowercase());
    };
    let expected = tri!(stamp_args(eg, es));
    let new = tri!(stamp_args(ng, ns));
    let ttl = tri!(uint_arg(ttl));
    match ks.sess_claim(key, expected, new, owner, ttl) {
        Ok(()) => Reply::OK,
        Err(e) => e.into(),
    }
}

/// `SESS.TOUCH key ttl_ms`
pub(super) fn touch(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [key, ttl] = a else {
        return arity(SessionCommand::Touch.lowercase());
    };
    let ttl = tri!(uint_arg(ttl));
    Reply::Int(i64::from(ks.sess_touch(key, ttl)))
}

/// `SESS.DEL key gen seq [tombstone_ttl_ms]`
pub(super) fn del(shared: &Shared, a: &[&[u8]]) -> Reply {
    let (key, g, s, ttl) = match a {
        [key, g, s] => (key, g, s, None),
        [key, g, s, ttl] => (key, g, s, Some(ttl)),
        _ => return arity(SessionCommand::Del.lowercase()),
    };
    let stamp = tri!(stamp_args(g, s));
    let ttl = match ttl {
        Some(t) => tri!(uint_arg(t)),
        None => u64::try_from(shared.config.tombstone_ttl.as_millis()).unwrap_or(u64::MAX),
    };
    match shared.keyspace.sess_del(key, stamp, ttl) {
        Ok(()) => Reply::OK,
        Err(e) => e.into(),
    }
}
