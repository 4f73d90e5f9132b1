//! The session commands of `docs/protocol.md` as Redis server-side Lua
//! scripts, for stores given to [`StoreClient`](crate::StoreClient)
//! as `redis://` URLs (Redis, Valkey, and Redis-compatible servers).
//!
//! Each session is one Redis hash under [`redis_key`] (`sticky:{<key>}`:
//! the hash tag puts it in one cluster slot) with the fields
//!
//! | field | live copy | tombstone |
//! |---|---|---|
//! | `kind` | `live` | `tombstone` |
//! | `gen`, `seq` | the stamp, canonical decimal | the delete's stamp |
//! | `owner` | the hosting web server | (absent) |
//! | `payload` | the session data | (absent) |
//!
//! and the key's own TTL. The scripts take the same arguments in the same
//! order as the `SESS.*` commands (the key is `KEYS[1]`) and answer the
//! same replies, so the client parses both alike. Stamps are compared as
//! decimal strings (length first, then byte by byte): Lua numbers are
//! doubles and would round stamps above 2^53.
//!
//! Writes at Redis's `maxmemory` (with `noeviction`): a put answers `-OOM`
//! as `sticky store` does at `--max-memory`; a claim and a delete still
//! succeed, because their first write (`PEXPIRE`, `DEL`) is not refused at
//! the memory limit and Redis lets the rest of a script that has written
//! run to its end.
//!
//! See `docs/redis.md`.

use std::sync::LazyLock;

use sticky_proto::command::SessionCommand;

/// Prefix of a session's Redis key (then the session key, then `}`).
pub const KEY_PREFIX: &[u8] = b"sticky:{";
/// Suffix of a session's Redis key.
pub const KEY_SUFFIX: &[u8] = b"}";
/// Tombstone TTL when a delete names none: `sticky store`'s default
/// `--tombstone-ttl`.
pub const DEFAULT_TOMBSTONE_TTL_MS: u64 = 60_000;

/// The Redis key of session `key`: `sticky:{<key>}`.
pub fn redis_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(KEY_PREFIX.len() + key.len() + KEY_SUFFIX.len());
    k.extend_from_slice(KEY_PREFIX);
    k.extend_from_slice(key);
    k.extend_from_slice(KEY_SUFFIX);
    k
}

/// Helpers every script starts with.
macro_rules! prelude {
    () => {
        r#"
-- -1, 0 or 1 as canonical decimal a is below, equal to or above b.
local function cmp(a, b)
  if #a ~= #b then
    if #a < #b then return -1 else return 1 end
  end
  for i = 1, #a do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      if x < y then return -1 else return 1 end
    end
  end
  return 0
end

-- Canonical decimal form of an argument in 0..2^63-1 (what sticky store
-- accepts), or nil and the error reply sticky store gives.
local function uint(s)
  if type(s) ~= 'string' then
    return nil, 'ERR value is not an integer or out of range'
  end
  if string.find(s, '^%-%d+$') and string.find(s, '[1-9]') then
    return nil, 'ERR value is out of range, must be positive'
  end
  if not string.find(s, '^[-+]?%d+$') then
    return nil, 'ERR value is not an integer or out of range'
  end
  s = string.gsub(s, '^[-+]?0*', '')
  if s == '' then return '0' end
  if cmp(s, '9223372036854775807') > 0 then
    return nil, 'ERR value is not an integer or out of range'
  end
  return s
end

-- Lexicographic comparison of the stamps (g1, s1) and (g2, s2).
local function stamp_cmp(g1, s1, g2, s2)
  local c = cmp(g1, g2)
  if c ~= 0 then return c end
  return cmp(s1, s2)
end

-- The stored copy or tombstone: {kind, gen, seq}, or nil; or an error
-- reply for a key that is not a session record.
local function stored(key)
  local v = redis.call('HMGET', key, 'kind', 'gen', 'seq')
  if not v[1] then return nil end
  local g, s = uint(v[2]), uint(v[3])
  if (v[1] ~= 'live' and v[1] ~= 'tombstone') or not g or not s then
    return nil, 'WRONGTYPE Operation against a key holding the wrong kind of value'
  end
  return {kind = v[1], g = g, s = s}
end

-- Sets the key's TTL in ms; '0' means none. TTLs of 10^17 ms (3 million
-- years) or more count as none, as sticky store's saturating deadline
-- does (PEXPIRE refuses a deadline past 2^63 ms).
local function set_ttl(key, ttl)
  if ttl == '0' or #ttl > 17 then
    redis.call('PERSIST', key)
  else
    redis.call('PEXPIRE', key, ttl)
  end
end

local function stale(c)
  return redis.error_reply('STALE ' .. c.g .. ' ' .. c.s)
end
"#
    };
}

/// `SESS.PUT`: `KEYS[1]` = key; `ARGV` = gen seq owner ttl_ms payload.
pub const PUT: &str = concat!(
    prelude!(),
    r#"
local key = KEYS[1]
local g, err = uint(ARGV[1])
if not g then return redis.error_reply(err) end
local s, err2 = uint(ARGV[2])
if not s then return redis.error_reply(err2) end
local ttl, err3 = uint(ARGV[4])
if not ttl then return redis.error_reply(err3) end
local cur, bad = stored(key)
if bad then return redis.error_reply(bad) end
if cur and stamp_cmp(cur.g, cur.s, g, s) >= 0 then return stale(cur) end
-- The first write: refused with -OOM at maxmemory, before any change.
redis.call('HSET', key, 'kind', 'live', 'gen', g, 'seq', s,
  'owner', ARGV[3], 'payload', ARGV[5])
set_ttl(key, ttl)
return redis.status_reply('OK')
"#
);

/// `SESS.GET`: `KEYS[1]` = key. Answers `false` (null) or
/// `[kind, gen, seq, owner, pttl_ms, payload]`.
pub const GET: &str = concat!(
    prelude!(),
    r#"
local key = KEYS[1]
local v = redis.call('HMGET', key, 'kind', 'gen', 'seq', 'owner', 'payload')
if not v[1] then return false end
local pttl = redis.call('PTTL', key)
if v[1] ~= 'live' then
  return {v[1], v[2] or '', v[3] or '', '', pttl, ''}
end
return {v[1], v[2] or '', v[3] or '', v[4] or '', pttl, v[5] or ''}
"#
);

/// `SESS.CLAIM`: `KEYS[1]` = key; `ARGV` = exp_gen exp_seq new_gen new_seq
/// owner ttl_ms.
pub const CLAIM: &str = concat!(
    prelude!(),
    r#"
local key = KEYS[1]
local a = {}
for i, n in ipairs({1, 2, 3, 4, 6}) do
  local v, err = uint(ARGV[n])
  if not v then return redis.error_reply(err) end
  a[i] = v
end
local eg, es, ng, ns, ttl = a[1], a[2], a[3], a[4], a[5]
if stamp_cmp(ng, ns, eg, es) <= 0 then
  return redis.error_reply('ERR the new stamp must be higher than the expected stamp')
end
local cur, bad = stored(key)
if bad then return redis.error_reply(bad) end
if not cur then return redis.error_reply('NOSESSION no such session') end
if cur.kind ~= 'live' then
  return redis.error_reply('DELETED ' .. cur.g .. ' ' .. cur.s)
end
if cur.g ~= eg or cur.s ~= es then return stale(cur) end
-- The TTL first: PEXPIRE and PERSIST are allowed at maxmemory, and once a
-- script has written Redis lets it finish, so a claim never fails on OOM.
set_ttl(key, ttl)
redis.call('HSET', key, 'gen', ng, 'seq', ns, 'owner', ARGV[5])
return redis.status_reply('OK')
"#
);

/// `SESS.TOUCH`: `KEYS[1]` = key; `ARGV` = ttl_ms. Answers 1 or 0.
pub const TOUCH: &str = concat!(
    prelude!(),
    r#"
local key = KEYS[1]
local ttl, err = uint(ARGV[1])
if not ttl then return redis.error_reply(err) end
local kind = redis.call('HGET', key, 'kind')
if kind ~= 'live' then return 0 end
set_ttl(key, ttl)
return 1
"#
);

/// `SESS.DEL`: `KEYS[1]` = key; `ARGV` = gen seq tombstone_ttl_ms (always
/// given: the client sends [`DEFAULT_TOMBSTONE_TTL_MS`] when the caller
/// names none).
pub const DEL: &str = concat!(
    prelude!(),
    r#"
local key = KEYS[1]
local g, err = uint(ARGV[1])
if not g then return redis.error_reply(err) end
local s, err2 = uint(ARGV[2])
if not s then return redis.error_reply(err2) end
local ttl, err3 = uint(ARGV[3] or '60000')
if not ttl then return redis.error_reply(err3) end
if ttl == '0' then ttl = '1' end
local cur, bad = stored(key)
if bad then return redis.error_reply(bad) end
if cur and stamp_cmp(cur.g, cur.s, g, s) >= 0 then return stale(cur) end
-- DEL first: it is allowed at maxmemory, and then so is the rest (a
-- tombstone must always be storable, and it frees the payload).
redis.call('DEL', key)
redis.call('HSET', key, 'kind', 'tombstone', 'gen', g, 'seq', s)
set_ttl(key, ttl)
return redis.status_reply('OK')
"#
);

/// The source of the script implementing `cmd`, for `EVAL`.
pub(crate) fn source(cmd: SessionCommand) -> &'static str {
    match cmd {
        SessionCommand::Put => PUT,
        SessionCommand::Get => GET,
        SessionCommand::Claim => CLAIM,
        SessionCommand::Touch => TOUCH,
        SessionCommand::Del => DEL,
    }
}

/// The scripts with their digests, computed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(Scripts::new);

/// The five scripts with their SHA1 digests, as `EVALSHA` wants them.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) put: redis::Script,
    pub(crate) get: redis::Script,
    pub(crate) claim: redis::Script,
    pub(crate) touch: redis::Script,
    pub(crate) del: redis::Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            put: redis::Script::new(PUT),
            get: redis::Script::new(GET),
            claim: redis::Script::new(CLAIM),
            touch: redis::Script::new(TOUCH),
            del: redis::Script::new(DEL),
        }
    }

    /// The script implementing `cmd`.
    pub(crate) fn of(&self, cmd: SessionCommand) -> &redis::Script {
        match cmd {
            SessionCommand::Put => &self.put,
            SessionCommand::Get => &self.get,
            SessionCommand::Claim => &self.claim,
            SessionCommand::Touch => &self.touch,
            SessionCommand::Del => &self.del,
        }
    }

    /// All five, for `SCRIPT LOAD` on a new connection.
    pub(crate) fn all(&self) -> [(&'static str, &redis::Script); 5] {
        [
            (PUT, &self.put),
            (GET, &self.get),
            (CLAIM, &self.claim),
            (TOUCH, &self.touch),
            (DEL, &self.del),
        ]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_a_hash_tag() {
        assert_eq!(redis_key(b"0123abcd"), b"sticky:{0123abcd}".to_vec());
        assert_eq!(redis_key(b""), b"sticky:{}".to_vec());
    }

    #[test]
    fn scripts_have_distinct_stable_digests() {
        let s = Scripts::new();
        let mut hashes: Vec<&str> = s.all().iter().map(|(_, x)| x.get_hash()).collect();
        assert!(hashes.iter().all(|h| h.len() == 40));
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), 5);
        // SHA1 of the source, as Redis computes it for SCRIPT LOAD.
        assert_eq!(Scripts::new().put.get_hash(), s.put.get_hash());
    }

    #[test]
    fn each_command_has_its_own_script() {
        for cmd in SessionCommand::ALL {
            let from_source = redis::Script::new(source(cmd));
            assert_eq!(from_source.get_hash(), SCRIPTS.of(cmd).get_hash(), "{cmd}");
        }
        assert_eq!(source(SessionCommand::Put), PUT);
        assert_eq!(source(SessionCommand::Del), DEL);
    }
}
