//! `SESS.PUT`, `SESS.GET`, `SESS.CLAIM`, `SESS.TOUCH`, `SESS.DEL`, and the
//! ownership commands `SESS.LEASE`, `SESS.KILL`, `SESS.PREPARE`,
//! `SESS.OWNED` (see `docs/protocol.md` and `docs/safety.md`).

use bytes::Bytes;
use sticky_proto::command::{self, SessionCommand, KIND_LIVE, KIND_TOMBSTONE};
use sticky_proto::resp::Reply;

use super::args::{arity, stamp_args, stamp_part, uint_arg, MAX_STAMP_PART};
use crate::keyspace::{now_ms, Keyspace, SessionView};
use crate::ownership::{LeaseStatus, Leases, MAX_OWNER_LEN};
use crate::shared::Shared;

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

/// `SESS.GET key [WITHLEASE]`
pub(super) fn get(shared: &Shared, a: &[&[u8]]) -> Reply {
    let (key, with_lease) = match a {
        [key] => (key, false),
        [key, opt] if opt.eq_ignore_ascii_case(b"WITHLEASE") => (key, true),
        [_, _] => return Reply::error("ERR syntax error"),
        _ => return arity(SessionCommand::Get.lowercase()),
    };
    match shared.keyspace.sess_get(key) {
        Ok(None) => Reply::Null,
        Ok(Some(v)) => view_reply(v, with_lease.then_some(&shared.leases)),
        Err(e) => e.into(),
    }
}

/// The `SESS.GET` array of a copy; with `leases`, a seventh element: what
/// this store knows of the owner's lease (ms left, -1 none, -2 dead).
fn view_reply(v: SessionView, leases: Option<&Leases>) -> Reply {
    let (kind, owner, payload) = match v.live {
        Some((owner, payload)) => (KIND_LIVE, owner, payload),
        None => (KIND_TOMBSTONE, Bytes::new(), Bytes::new()),
    };
    let lease = leases.map(|l| {
        if owner.is_empty() {
            -1
        } else {
            l.status(&owner).as_int()
        }
    });
    let mut out = vec![
        Reply::Bulk(Bytes::from_static(kind.as_bytes())),
        Reply::Int(v.stamp.generation as i64),
        Reply::Int(v.stamp.seq as i64),
        Reply::Bulk(owner),
        Reply::Int(v.pttl.map_or(-1, crate::keyspace::clamp_i64)),
        Reply::Bulk(payload),
    ];
    out.extend(lease.map(Reply::Int));
    Reply::Array(out)
}

/// An owner argument (`name@epoch`), bounded.
fn owner_arg(owner: &[u8]) -> Result<&[u8], Reply> {
    if owner.is_empty() || owner.len() > MAX_OWNER_LEN {
        return Err(Reply::error(format!(
            "ERR owner must be 1 to {MAX_OWNER_LEN} bytes"
        )));
    }
    Ok(owner)
}

/// `SESS.LEASE owner ttl_ms`: grants or extends `owner`'s lease.
pub(super) fn lease(shared: &Shared, a: &[&[u8]]) -> Reply {
    let [owner, ttl] = a else {
        return arity(SessionCommand::Lease.lowercase());
    };
    let owner = tri!(owner_arg(owner));
    let ttl = tri!(uint_arg(ttl));
    match shared.leases.renew(owner, ttl) {
        Ok(()) => Reply::OK,
        Err(e) => Reply::error(e.to_string()),
    }
}

/// `SESS.KILL owner [FORCE]`: records `owner`'s lease dead, if it is not
/// live here (or always, with `FORCE`: proven death).
pub(super) fn kill(shared: &Shared, a: &[&[u8]]) -> Reply {
    let (owner, force) = match a {
        [owner] => (owner, false),
        [owner, f] if f.eq_ignore_ascii_case(b"FORCE") => (owner, true),
        [_, _] => return Reply::error("ERR syntax error"),
        _ => return arity(SessionCommand::Kill.lowercase()),
    };
    let owner = tri!(owner_arg(owner));
    match shared.leases.kill(owner, force) {
        Ok(()) => Reply::OK,
        Err(e) => Reply::error(e.to_string()),
    }
}

/// `SESS.PREPARE key gen owner horizon_ms`: a takeover's promise; replies
/// as `SESS.GET key WITHLEASE`. A restarted store younger than
/// `horizon_ms` that holds no copy answers `-FORGETFUL <uptime_ms>`: its
/// "no copy" may be a copy it forgot.
///
/// `SESS.PREPARE key NEXT owner horizon_ms [RELEASE dead]`: the read and
/// the promise of a takeover in one step (`docs/safety.md` §2, "Read and
/// promise in one round trip"); with `RELEASE`, lease `dead`, proven gone,
/// is first recorded dead as `SESS.KILL dead FORCE` would. The store picks
/// the generation: one above its copy's and any live promise's. Replies `[generation, copy]`, the copy as
/// `SESS.GET key WITHLEASE` (or null), and generation 0 when nothing was
/// promised: the copy is a tombstone, or its owner's lease is live here.
pub(super) fn prepare(shared: &Shared, a: &[&[u8]]) -> Reply {
    let (key, g, owner, horizon, release) = match a {
        [key, g, owner, horizon] => (key, g, owner, horizon, None),
        [key, g, owner, horizon, opt, dead]
            if opt.eq_ignore_ascii_case(command::OPT_RELEASE.as_bytes()) =>
        {
            (key, g, owner, horizon, Some(dead))
        }
        [_, _, _, _, _, _] => return Reply::error("ERR syntax error"),
        _ => return arity(SessionCommand::Prepare.lowercase()),
    };
    let next = g.eq_ignore_ascii_case(command::ARG_NEXT.as_bytes());
    if release.is_some() && !next {
        return Reply::error("ERR RELEASE goes with NEXT");
    }
    let generation = if next { 0 } else { tri!(stamp_part(g)) };
    let owner = tri!(owner_arg(owner));
    let horizon = tri!(uint_arg(horizon));
    let leases = &shared.leases;
    if let Some(dead) = release {
        // A lease proven gone, released as `SESS.KILL dead FORCE` would,
        // before the read and promise see its copy's owner.
        let dead = tri!(owner_arg(dead));
        if let Err(e) = leases.kill(dead, true) {
            return Reply::error(e.to_string());
        }
    }
    let now = now_ms();
    if let Some(left) = leases.recovering(now) {
        return Reply::error(format!(
            "RECOVERING {left} the store restarted and is inside its recovery window"
        ));
    }
    let window = leases.window_ms();
    let (promised, found) = if next {
        let live = |o: &[u8]| matches!(leases.status(o), LeaseStatus::Live(_));
        match shared
            .keyspace
            .sess_prepare_next(key, owner, window, MAX_STAMP_PART, live)
        {
            Ok(found) => found,
            Err(e) => return e.into(),
        }
    } else {
        match shared.keyspace.sess_prepare(key, generation, owner, window) {
            Ok(found) => (generation, found),
            Err(e) => return e.into(),
        }
    };
    let copy = match found {
        Some(v) => view_reply(v, Some(leases)),
        None if leases.restarted() && leases.uptime_ms(now) < horizon => {
            return Reply::error(format!(
                "FORGETFUL {} the store restarted and may have forgotten this session",
                leases.uptime_ms(now)
            ))
        }
        None => Reply::Null,
    };
    if next {
        Reply::Array(vec![Reply::Int(promised as i64), copy])
    } else {
        copy
    }
}

/// `SESS.OWNED owner cursor`: `[next_cursor, [key, ...]]`, the keys of the
/// live copies owned by `owner`, one shard per call; cursor 0 starts, and a
/// next cursor of 0 means done.
pub(super) fn owned(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    let [owner, cursor] = a else {
        return arity(SessionCommand::Owned.lowercase());
    };
    let owner = tri!(owner_arg(owner));
    let cursor = tri!(uint_arg(cursor));
    let (next, keys) = ks.sess_owned(owner, usize::try_from(cursor).unwrap_or(usize::MAX));
    Reply::Array(vec![
        Reply::Bulk(Bytes::from(next.to_string())),
        Reply::Array(keys.into_iter().map(Reply::Bulk).collect()),
    ])
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
