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
//! and the key's own TTL. The ownership records (`docs/safety.md`) are
//! keys of their own, with a `PX` expiry:
//!
//! | key | what | slot |
//! |---|---|---|
//! | [`promise_key`] `sticky:promise:{<key>}` | a takeover's promise: hash `gen`, `owner` | the session's (same hash tag) |
//! | [`lease_key`] `sticky:lease:{<owner>}` | a web server's live lease | the owner's |
//! | [`dead_key`] `sticky:dead:{<owner>}` | a killed lease | the owner's |
//!
//! The scripts take the same arguments in the same order as the `SESS.*`
//! commands, the keys they touch as `KEYS` (see each script), and
//! answer the same replies, so the client parses both alike. Arguments a
//! script needs beyond the command's (the claim window of `SESS.KILL` and
//! `SESS.PREPARE`) come last. Stamps are compared as decimal strings
//! (length first, then byte by byte).
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
/// Prefix of a takeover promise's Redis key (then the session key, then `}`).
pub const PROMISE_PREFIX: &[u8] = b"sticky:promise:{";
/// Prefix of a lease's Redis key (then the owner, then `}`).
pub const LEASE_PREFIX: &[u8] = b"sticky:lease:{";
/// Prefix of a dead-lease record's Redis key (then the owner, then `}`).
pub const DEAD_PREFIX: &[u8] = b"sticky:dead:{";
/// Tombstone TTL when a delete names none: `sticky store`'s default
/// `--tombstone-ttl`.
pub const DEFAULT_TOMBSTONE_TTL_MS: u64 = 60_000;

/// The Redis key of session `key`: `sticky:{<key>}`.
pub fn redis_key(key: &[u8]) -> Vec<u8> {
    tagged(KEY_PREFIX, key)
}

/// The Redis key of the takeover promise of session `key`:
/// `sticky:promise:{<key>}`, in the session's slot.
pub fn promise_key(key: &[u8]) -> Vec<u8> {
    tagged(PROMISE_PREFIX, key)
}

/// The Redis key of `owner`'s lease: `sticky:lease:{<owner>}`.
pub fn lease_key(owner: &[u8]) -> Vec<u8> {
    tagged(LEASE_PREFIX, owner)
}

/// The Redis key of `owner`'s dead-lease record: `sticky:dead:{<owner>}`,
/// in the lease's slot.
pub fn dead_key(owner: &[u8]) -> Vec<u8> {
    tagged(DEAD_PREFIX, owner)
}

/// `prefix`, `name`, `}`.
fn tagged(prefix: &[u8], name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(prefix.len() + name.len() + KEY_SUFFIX.len());
    k.extend_from_slice(prefix);
    k.extend_from_slice(name);
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
-- accepts for TTLs and cursors), or nil and the error reply sticky store
-- gives.
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

-- Canonical decimal form of a stamp part: decimal digits only (no sign),
-- at most 2^53-1, as sticky store accepts; or nil and its error reply.
local function stamp_part(s)
  local bad = 'ERR a stamp part must be decimal digits from 0 to 9007199254740991'
  if type(s) ~= 'string' or #s > 16 or not string.find(s, '^%d+$') then
    return nil, bad
  end
  s = string.gsub(s, '^0*', '')
  if s == '' then return '0' end
  if cmp(s, '9007199254740991') > 0 then return nil, bad end
  return s
end

-- An owner argument (name@epoch), 1 to 256 bytes; or nil and the error.
local function owner_arg(o)
  if type(o) ~= 'string' or #o < 1 or #o > 256 then
    return nil, 'ERR owner must be 1 to 256 bytes'
  end
  return o
end

-- A window or lease time in ms, at most 10^15 (30,000 years), as a number.
local function ms(s)
  if #s > 15 then return 1e15 end
  return tonumber(s)
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

local function promised(g)
  return 'PROMISED ' .. g .. ' a takeover of this session is in progress'
end

-- The error a live takeover promise (at pkey) gives a write of generation
-- g by owner (nil: a destroy, which names no owner), or nil: a write
-- below the promised generation, or of it by another owner, is refused.
local function promise_refuses(pkey, g, owner)
  local p = redis.call('HMGET', pkey, 'gen', 'owner')
  if not p[1] then return nil end
  local c = cmp(g, p[1])
  if c < 0 or (c == 0 and owner and owner ~= p[2]) then
    return promised(p[1])
  end
  return nil
end

-- Forgets the promise at pkey once a write of generation g, at or above
-- the promised one, landed.
local function fulfil(pkey, g)
  local pg = redis.call('HGET', pkey, 'gen')
  if pg and cmp(g, pg) >= 0 then redis.call('DEL', pkey) end
end
"#
    };
}

/// `SESS.PUT`: `KEYS` = session, promise; `ARGV` = gen seq owner ttl_ms
/// payload.
pub const PUT: &str = concat!(
    prelude!(),
    r#"
local key, pkey = KEYS[1], KEYS[2]
local g, err = stamp_part(ARGV[1])
if not g then return redis.error_reply(err) end
local s, err2 = stamp_part(ARGV[2])
if not s then return redis.error_reply(err2) end
local ttl, err3 = uint(ARGV[4])
if not ttl then return redis.error_reply(err3) end
local cur, bad = stored(key)
if bad then return redis.error_reply(bad) end
if cur and stamp_cmp(cur.g, cur.s, g, s) >= 0 then return stale(cur) end
local refused = promise_refuses(pkey, g, ARGV[3])
if refused then return redis.error_reply(refused) end
-- The first write: refused with -OOM at maxmemory, before any change.
redis.call('HSET', key, 'kind', 'live', 'gen', g, 'seq', s,
  'owner', ARGV[3], 'payload', ARGV[5])
set_ttl(key, ttl)
fulfil(pkey, g)
return redis.status_reply('OK')
"#
);

/// `SESS.GET`: `KEYS` = session. Answers `false` (null) or
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

/// `SESS.CLAIM`: `KEYS` = session, promise; `ARGV` = exp_gen exp_seq
/// new_gen new_seq owner ttl_ms.
pub const CLAIM: &str = concat!(
    prelude!(),
    r#"
local key, pkey = KEYS[1], KEYS[2]
local a = {}
for i, n in ipairs({1, 2, 3, 4}) do
  local v, err = stamp_part(ARGV[n])
  if not v then return redis.error_reply(err) end
  a[i] = v
end
local eg, es, ng, ns = a[1], a[2], a[3], a[4]
local ttl, err = uint(ARGV[6])
if not ttl then return redis.error_reply(err) end
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
local refused = promise_refuses(pkey, ng, ARGV[5])
if refused then return redis.error_reply(refused) end
-- The TTL first: PEXPIRE and PERSIST are allowed at maxmemory, and once a
-- script has written Redis lets it finish, so a claim never fails on OOM.
set_ttl(key, ttl)
redis.call('HSET', key, 'gen', ng, 'seq', ns, 'owner', ARGV[5])
fulfil(pkey, ng)
return redis.status_reply('OK')
"#
);

/// `SESS.TOUCH`: `KEYS` = session; `ARGV` = ttl_ms. Answers 1 or 0.
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

/// `SESS.DEL`: `KEYS` = session, promise; `ARGV` = gen seq
/// tombstone_ttl_ms (always given: the client sends
/// [`DEFAULT_TOMBSTONE_TTL_MS`] when the caller names none).
pub const DEL: &str = concat!(
    prelude!(),
    r#"
local key, pkey = KEYS[1], KEYS[2]
local g, err = stamp_part(ARGV[1])
if not g then return redis.error_reply(err) end
local s, err2 = stamp_part(ARGV[2])
if not s then return redis.error_reply(err2) end
local ttl, err3 = uint(ARGV[3] or '60000')
if not ttl then return redis.error_reply(err3) end
if ttl == '0' then ttl = '1' end
local cur, bad = stored(key)
if bad then return redis.error_reply(bad) end
if cur and stamp_cmp(cur.g, cur.s, g, s) >= 0 then return stale(cur) end
local refused = promise_refuses(pkey, g, nil)
if refused then return redis.error_reply(refused) end
-- DEL first: it is allowed at maxmemory, and then so is the rest (a
-- tombstone must always be storable, and it frees the payload).
redis.call('DEL', key)
fulfil(pkey, g)
redis.call('HSET', key, 'kind', 'tombstone', 'gen', g, 'seq', s)
set_ttl(key, ttl)
return redis.status_reply('OK')
"#
);

/// `SESS.LEASE`: `KEYS` = lease, dead record; `ARGV` = owner ttl_ms.
/// The lease is a key with a `PX` expiry of `ttl_ms` (1 ms to 10 min).
pub const LEASE: &str = concat!(
    prelude!(),
    r#"
local owner, err = owner_arg(ARGV[1])
if not owner then return redis.error_reply(err) end
local ttl, err2 = uint(ARGV[2])
if not ttl then return redis.error_reply(err2) end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return redis.error_reply('DEAD the lease was ended at this store; take a new epoch')
end
local px = math.max(1, math.min(ms(ttl), 600000))
-- PEXPIRE first: it is allowed at maxmemory, and once a script has
-- written Redis lets it finish, so a full Redis still renews and grants
-- leases (sticky store does not count them against --max-memory).
if redis.call('PEXPIRE', KEYS[1], px) == 0 then
  redis.call('SET', KEYS[1], '1', 'PX', px)
end
return redis.status_reply('OK')
"#
);

/// `SESS.KILL`: `KEYS` = lease, dead record; `ARGV` = owner `[FORCE]`
/// window_ms. The dead record is kept for `window_ms` (or longer, if an
/// earlier kill asked for longer).
pub const KILL: &str = concat!(
    prelude!(),
    r#"
local n = #ARGV
if n ~= 2 and n ~= 3 then
  return redis.error_reply("ERR wrong number of arguments for 'sess.kill' command")
end
local force = false
if n == 3 then
  if string.upper(ARGV[2]) ~= 'FORCE' then return redis.error_reply('ERR syntax error') end
  force = true
end
local owner, err = owner_arg(ARGV[1])
if not owner then return redis.error_reply(err) end
local window, err2 = uint(ARGV[n])
if not window then return redis.error_reply(err2) end
if not force then
  local left = redis.call('PTTL', KEYS[1])
  if left > 0 then
    return redis.error_reply('LIVE ' .. left .. ' the lease is live at this store')
  end
end
redis.call('DEL', KEYS[1])
local keep = math.max(1, ms(window), redis.call('PTTL', KEYS[2]))
redis.call('SET', KEYS[2], '1', 'PX', keep)
return redis.status_reply('OK')
"#
);

/// `SESS.GET ... WITHLEASE`'s seventh element on Redis, asked apart (the
/// lease lives in its owner's slot, not the session's): `KEYS` = lease,
/// dead record. Answers the milliseconds left, `-1` none, `-2` dead.
pub const LEASE_STATE: &str = concat!(
    prelude!(),
    r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return -2 end
local left = redis.call('PTTL', KEYS[1])
if left > 0 then return left end
return -1
"#
);

/// `SESS.PREPARE`: `KEYS` = session, promise; `ARGV` = gen owner
/// horizon_ms window_ms. Answers as `SESS.GET` (the client asks for the
/// lease apart, [`LEASE_STATE`]); never `FORGETFUL`: Redis has no notion
/// of a restart here.
pub const PREPARE: &str = concat!(
    prelude!(),
    r#"
local key, pkey = KEYS[1], KEYS[2]
local g, err = stamp_part(ARGV[1])
if not g then return redis.error_reply(err) end
local owner, err2 = owner_arg(ARGV[2])
if not owner then return redis.error_reply(err2) end
local horizon, err3 = uint(ARGV[3])
if not horizon then return redis.error_reply(err3) end
local window, err4 = uint(ARGV[4])
if not window then return redis.error_reply(err4) end
local cur, bad = stored(key)
if bad then return redis.error_reply(bad) end
if cur and cur.kind ~= 'live' then
  -- A destroyed session is not taken over: no promise.
  return {cur.kind, cur.g, cur.s, '', redis.call('PTTL', key), ''}
end
if cur and cmp(cur.g, g) >= 0 then return stale(cur) end
local p = redis.call('HMGET', pkey, 'gen', 'owner')
if p[1] then
  local c = cmp(p[1], g)
  -- One claimer per generation: the same one to another owner is refused.
  if c > 0 or (c == 0 and (p[2] or '') ~= owner) then
    return redis.error_reply(promised(p[1]))
  end
end
redis.call('DEL', pkey)
if window ~= '0' then
  redis.call('HSET', pkey, 'gen', g, 'owner', owner)
  redis.call('PEXPIRE', pkey, ms(window))
end
if not cur then return false end
local v = redis.call('HMGET', key, 'owner', 'payload')
return {'live', cur.g, cur.s, v[1] or '', redis.call('PTTL', key), v[2] or ''}
"#
);

/// `SESS.OWNED`: no `KEYS`; `ARGV` = owner cursor count. One `SCAN` step
/// over the session keys: `[next_cursor, [key, ...]]`, the session keys
/// (without `sticky:{`...`}`) of the live copies owned by `owner` among
/// those the step visited. Like any `SCAN`, a key may come twice.
pub const OWNED: &str = concat!(
    prelude!(),
    r#"
local owner, err = owner_arg(ARGV[1])
if not owner then return redis.error_reply(err) end
local cursor, err2 = uint(ARGV[2])
if not cursor then return redis.error_reply(err2) end
local r = redis.call('SCAN', cursor, 'MATCH', 'sticky:{*', 'COUNT', ARGV[3])
local keys = {}
for _, k in ipairs(r[2]) do
  local v = redis.pcall('HMGET', k, 'kind', 'owner')
  if type(v) == 'table' and not v.err and v[1] == 'live' and v[2] == owner then
    keys[#keys + 1] = string.sub(k, 9, -2)
  end
end
return {r[1], keys}
"#
);

/// How many session keys one `SESS.OWNED` step on Redis asks `SCAN` to
/// look at.
pub(crate) const OWNED_SCAN_COUNT: u32 = 1000;

/// One of the scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Script {
    Put,
    Get,
    Claim,
    Touch,
    Del,
    Lease,
    Kill,
    Prepare,
    Owned,
    /// The lease part of `SESS.GET ... WITHLEASE` and `SESS.PREPARE`.
    LeaseState,
}

impl Script {
    /// Every script, in the order of [`Scripts::all`].
    pub(crate) const ALL: [Self; 10] = [
        Self::Put,
        Self::Get,
        Self::Claim,
        Self::Touch,
        Self::Del,
        Self::Lease,
        Self::Kill,
        Self::Prepare,
        Self::Owned,
        Self::LeaseState,
    ];

    /// The script implementing session command `cmd`.
    pub(crate) fn of(cmd: SessionCommand) -> Self {
        match cmd {
            SessionCommand::Put => Self::Put,
            SessionCommand::Get => Self::Get,
            SessionCommand::Claim => Self::Claim,
            SessionCommand::Touch => Self::Touch,
            SessionCommand::Del => Self::Del,
            SessionCommand::Lease => Self::Lease,
            SessionCommand::Kill => Self::Kill,
            SessionCommand::Prepare => Self::Prepare,
            SessionCommand::Owned => Self::Owned,
        }
    }

    /// The source, for `SCRIPT LOAD` and `EVAL`.
    pub(crate) fn source(self) -> &'static str {
        match self {
            Self::Put => PUT,
            Self::Get => GET,
            Self::Claim => CLAIM,
            Self::Touch => TOUCH,
            Self::Del => DEL,
            Self::Lease => LEASE,
            Self::Kill => KILL,
            Self::Prepare => PREPARE,
            Self::Owned => OWNED,
            Self::LeaseState => LEASE_STATE,
        }
    }

    /// The `KEYS` of a call whose command names `subject` first (a session
    /// key, or an owner).
    pub(crate) fn keys(self, subject: &[u8]) -> Vec<Vec<u8>> {
        match self {
            Self::Get | Self::Touch => vec![redis_key(subject)],
            Self::Put | Self::Claim | Self::Del | Self::Prepare => {
                vec![redis_key(subject), promise_key(subject)]
            }
            Self::Lease | Self::Kill | Self::LeaseState => {
                vec![lease_key(subject), dead_key(subject)]
            }
            Self::Owned => Vec::new(),
        }
    }

    /// Whether `subject` is also the script's first `ARGV` (an owner the
    /// script checks), besides naming its `KEYS`.
    pub(crate) fn subject_in_argv(self) -> bool {
        matches!(self, Self::Lease | Self::Kill | Self::Owned)
    }
}

/// The scripts with their digests, computed once per process.
pub(crate) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(Scripts::new);

/// The scripts with their SHA1 digests, as `EVALSHA` wants them.
#[derive(Debug)]
pub(crate) struct Scripts {
    loaded: [redis::Script; Script::ALL.len()],
}

impl Scripts {
    pub(crate) fn new() -> Self {
        Self {
            loaded: Script::ALL.map(|s| redis::Script::new(s.source())),
        }
    }

    /// The loaded form of `script`.
    pub(crate) fn get(&self, script: Script) -> &redis::Script {
        &self.loaded[script as usize]
    }

    /// All of them with their sources, for `SCRIPT LOAD` on a new
    /// connection.
    pub(crate) fn all(&self) -> [(&'static str, &redis::Script); Script::ALL.len()] {
        Script::ALL.map(|s| (s.source(), self.get(s)))
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
        assert_eq!(promise_key(b"ab"), b"sticky:promise:{ab}".to_vec());
        assert_eq!(lease_key(b"ws1@7"), b"sticky:lease:{ws1@7}".to_vec());
        assert_eq!(dead_key(b"ws1@7"), b"sticky:dead:{ws1@7}".to_vec());
    }

    #[test]
    fn a_sessions_promise_and_an_owners_records_share_a_slot() {
        // Redis Cluster hashes a key by its tag: what lies between the first
        // `{` and the first `}` after it, if that is not empty.
        fn hash_tag(key: &[u8]) -> &[u8] {
            let Some(open) = key.iter().position(|&b| b == b'{') else {
                return key;
            };
            match key[open + 1..].iter().position(|&b| b == b'}') {
                Some(0) | None => key,
                Some(close) => &key[open + 1..open + 1 + close],
            }
        }
        for key in [&b"0123456789abcdef"[..], b"c{x}", b"a}b"] {
            assert_eq!(hash_tag(&redis_key(key)), hash_tag(&promise_key(key)));
        }
        for owner in [&b"ws1@18446744073709551615"[..], b"w{x}@1"] {
            assert_eq!(hash_tag(&lease_key(owner)), hash_tag(&dead_key(owner)));
        }
        let [session, promise] = Script::Put.keys(b"k").try_into().unwrap();
        assert_eq!((session, promise), (redis_key(b"k"), promise_key(b"k")));
        assert!(Script::Owned.keys(b"ws1@1").is_empty());
    }

    #[test]
    fn scripts_have_distinct_stable_digests() {
        let s = Scripts::new();
        let mut hashes: Vec<&str> = s.all().iter().map(|(_, x)| x.get_hash()).collect();
        assert!(hashes.iter().all(|h| h.len() == 40));
        hashes.sort_unstable();
        hashes.dedup();
        assert_eq!(hashes.len(), Script::ALL.len());
        // SHA1 of the source, as Redis computes it for SCRIPT LOAD.
        assert_eq!(
            Scripts::new().get(Script::Put).get_hash(),
            s.get(Script::Put).get_hash()
        );
        for (i, script) in Script::ALL.into_iter().enumerate() {
            assert_eq!(script as usize, i, "{script:?}");
        }
    }

    #[test]
    fn each_command_has_its_own_script() {
        for cmd in SessionCommand::ALL {
            let script = Script::of(cmd);
            let from_source = redis::Script::new(script.source());
            assert_eq!(
                from_source.get_hash(),
                SCRIPTS.get(script).get_hash(),
                "{cmd}"
            );
        }
        assert_eq!(Script::of(SessionCommand::Put).source(), PUT);
        assert_eq!(Script::of(SessionCommand::Del).source(), DEL);
        assert_eq!(Script::of(SessionCommand::Prepare).source(), PREPARE);
    }
}
