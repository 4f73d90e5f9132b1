//! The data: a fixed number of shards, each a mutex around an insertion-
//! ordered hash map, with lazy expiry on access, an incremental active-expiry
//! scan, memory accounting against `--max-memory`, and the session rules
//! (stamps, claim, tombstones, takeover promises) of `docs/protocol.md`.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use indexmap::IndexMap;
use sticky_proto::resp::{encode_bulk, Reply, Version};
use sticky_proto::Stamp;

use crate::stats::Stats;

/// Milliseconds on a monotonic clock private to this process; never 0.
pub(crate) fn now_ms() -> u64 {
    static BASE: OnceLock<Instant> = OnceLock::new();
    let base = *BASE.get_or_init(Instant::now);
    base.elapsed().as_millis() as u64 + 1
}

/// Bookkeeping bytes counted per entry on top of key and value lengths
/// (map slot, index, allocation headers). An estimate, like Redis's.
const ENTRY_OVERHEAD: usize = 96;

/// Keys up to 32 bytes (session ids are 32 hex characters) live inside the
/// map's slot: one allocation and one cache miss less per lookup.
type Key = smallvec::SmallVec<[u8; 32]>;
type Map = IndexMap<Key, Entry, foldhash::fast::RandomState>;

#[derive(Debug)]
struct Entry {
    value: Value,
    /// Deadline in [`now_ms`] time; 0 = never.
    expires_at: u64,
}

#[derive(Debug)]
enum Value {
    Plain(Bytes),
    Session(SessionCopy),
    Tombstone(Stamp),
}

#[derive(Debug)]
struct SessionCopy {
    stamp: Stamp,
    owner: Box<[u8]>,
    payload: Bytes,
}

impl Entry {
    fn expired(&self, now: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now
    }

    fn size(&self, key: &[u8]) -> usize {
        ENTRY_OVERHEAD
            + key.len()
            + match &self.value {
                Value::Plain(b) => b.len(),
                Value::Session(s) => s.owner.len() + s.payload.len(),
                Value::Tombstone(_) => 0,
            }
    }

    /// Remaining time to live in ms: `None` if it never expires.
    fn pttl(&self, now: u64) -> Option<u64> {
        (self.expires_at != 0).then(|| self.expires_at.saturating_sub(now))
    }

    /// What `SESS.GET` answers for this entry: the copy or tombstone.
    fn session_view(&self, now: u64) -> Result<SessionView, WriteError> {
        let pttl = self.pttl(now);
        match &self.value {
            Value::Session(c) => Ok(SessionView {
                stamp: c.stamp,
                live: Some((Bytes::copy_from_slice(&c.owner), c.payload.clone())),
                pttl,
            }),
            Value::Tombstone(t) => Ok(SessionView {
                stamp: *t,
                live: None,
                pttl,
            }),
            Value::Plain(_) => Err(WriteError::WrongType),
        }
    }
}

/// A remaining time as a RESP integer (which is signed).
pub(crate) fn clamp_i64(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn deadline(now: u64, ttl_ms: u64) -> u64 {
    if ttl_ms == 0 {
        0
    } else {
        now.saturating_add(ttl_ms)
    }
}

/// A write that the keyspace refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WriteError {
    /// The stored copy has this stamp, higher than or equal to the one sent.
    #[error("STALE {} {}", .0.generation, .0.seq)]
    Stale(Stamp),
    /// The session was destroyed; its tombstone has this stamp.
    #[error("DELETED {} {}", .0.generation, .0.seq)]
    Deleted(Stamp),
    /// No copy, no tombstone.
    #[error("NOSESSION no such session")]
    NoSession,
    /// The key holds a plain value, or a session was read as a plain value.
    #[error("WRONGTYPE Operation against a key holding the wrong kind of value")]
    WrongType,
    /// `--max-memory` reached.
    #[error("OOM command not allowed when used memory > 'maxmemory'")]
    OutOfMemory,
    /// A claim whose new stamp is not above the expected one.
    #[error("ERR the new stamp must be higher than the expected stamp")]
    StampNotIncreasing,
    /// A takeover promised this generation to another claimer: a write
    /// below it (or of it, by another owner) and lower prepares are refused.
    #[error("PROMISED {0} a takeover of this session is in progress")]
    Promised(u64),
    /// Too many takeovers in progress in one shard.
    #[error("ERR too many takeovers in progress")]
    TooManyPromises,
    /// The next generation would pass the largest a stamp may carry.
    #[error("ERR the session's generation cannot grow further")]
    GenerationOverflow,
}

/// Entries one `SESS.OWNED` page looks at before it ends (after the shard
/// that reached it).
const OWNED_PAGE_ENTRIES: usize = 4096;

/// Most promises one shard holds at once (they live for the claim window).
const MAX_PROMISES_PER_SHARD: usize = 4096;

/// A takeover's promise (`SESS.PREPARE`): no write below `generation`, and
/// none of `generation` by another owner, until `until`.
#[derive(Debug)]
struct Promise {
    generation: u64,
    owner: Box<[u8]>,
    /// Deadline in [`now_ms`] time.
    until: u64,
}

/// Condition of a plain `SET`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetCondition {
    Always,
    /// `NX`: only if absent.
    IfAbsent,
    /// `XX`: only if present.
    IfPresent,
}

/// What `SESS.GET` returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionView {
    pub(crate) stamp: Stamp,
    /// `None` for a tombstone.
    pub(crate) live: Option<(Bytes, Bytes)>,
    pub(crate) pttl: Option<u64>,
}

/// What `TYPE` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyType {
    None,
    String,
    Session,
}

/// All keys of one store.
#[derive(Debug)]
pub(crate) struct Keyspace {
    shards: Box<[Mutex<Shard>]>,
    pick: foldhash::fast::FixedState,
    used: AtomicUsize,
    max_memory: usize,
    stats: Arc<Stats>,
    /// `FLUSHALL`s so far: with the run id, tells web servers that the
    /// copies they wrote here are gone (`INFO server`).
    flushes: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct Shard {
    map: Map,
    /// Next index the active-expiry scan looks at.
    cursor: usize,
    /// Keys with a deadline (for INFO's `expires=`).
    volatile: usize,
    /// Takeover promises, by session key; empty almost always.
    promises: HashMap<Key, Promise>,
}

/// A shard, locked, with the accounting it needs.
struct Locked<'a> {
    shard: MutexGuard<'a, Shard>,
    ks: &'a Keyspace,
    now: u64,
}

impl Locked<'_> {
    /// The live entry at `key`, removing it first if it has expired.
    fn entry(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let idx = self.live_index(key)?;
        Some(&mut self.shard.map[idx])
    }

    /// The index of the live entry at `key` (one hash lookup), removing it
    /// first if it has expired.
    fn live_index(&mut self, key: &[u8]) -> Option<usize> {
        let idx = self.shard.map.get_index_of(key)?;
        if self.shard.map[idx].expired(self.now) {
            self.remove_index(idx);
            self.ks.stats.expired_keys.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(idx)
    }

    fn remove_index(&mut self, idx: usize) -> Option<Entry> {
        let (key, entry) = self.shard.map.swap_remove_index(idx)?;
        self.ks.used.fetch_sub(entry.size(&key), Ordering::Relaxed);
        if entry.expires_at != 0 {
            self.shard.volatile -= 1;
        }
        Some(entry)
    }

    fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let idx = self.shard.map.get_index_of(key)?;
        self.remove_index(idx)
    }

    /// Inserts or replaces `key` (at `idx`, from [`Locked::live_index`]),
    /// refusing growth past `--max-memory`.
    fn store_at(&mut self, idx: Option<usize>, key: &[u8], entry: Entry) -> Result<(), WriteError> {
        let new_size = entry.size(key);
        let old = idx
            .and_then(|i| self.shard.map.get_index(i))
            .map(|(k, e)| (e.size(k), e.expires_at != 0));
        let old_size = old.map_or(0, |(s, _)| s);
        if self.ks.max_memory != 0
            && new_size > old_size
            && self.ks.used.load(Ordering::Relaxed) + (new_size - old_size) > self.ks.max_memory
        {
            self.ks.stats.oom_refused.fetch_add(1, Ordering::Relaxed);
            return Err(WriteError::OutOfMemory);
        }
        let volatile_before = old.is_some_and(|(_, v)| v);
        let volatile_after = entry.expires_at != 0;
        match idx {
            Some(i) => self.shard.map[i] = entry,
            None => {
                self.shard.map.insert(Key::from_slice(key), entry);
            }
        }
        self.shard.volatile =
            self.shard.volatile + usize::from(volatile_after) - usize::from(volatile_before);
        self.ks.used.fetch_add(new_size, Ordering::Relaxed);
        self.ks.used.fetch_sub(old_size, Ordering::Relaxed);
        Ok(())
    }

    /// Overwrites the plain value at `idx` in place with `value` of the
    /// same length, if no one else holds it: a `SET` that replaces a value
    /// of the same size (a session's or a cache entry's rewrite) then
    /// costs no allocation and no free, and the memory used is unchanged.
    /// False, changing nothing, when the value is of another kind or
    /// length, or shared.
    fn overwrite_plain(&mut self, idx: usize, value: &[u8], expires_at: u64) -> bool {
        let Some(entry) = self.shard.map.get_index_mut(idx).map(|(_, e)| e) else {
            return false;
        };
        let Value::Plain(old) = &mut entry.value else {
            return false;
        };
        if old.len() != value.len() {
            return false;
        }
        match std::mem::take(old).try_into_mut() {
            Ok(mut buf) => {
                buf.copy_from_slice(value);
                *old = buf.freeze();
            }
            Err(shared) => {
                *old = shared;
                return false;
            }
        }
        let volatile_before = entry.expires_at != 0;
        entry.expires_at = expires_at;
        self.shard.volatile =
            self.shard.volatile + usize::from(expires_at != 0) - usize::from(volatile_before);
        true
    }

    /// Records the promise of `generation` to `owner` at `key` for
    /// `window_ms`, in place of any other there.
    fn promise(
        &mut self,
        key: &[u8],
        generation: u64,
        owner: &[u8],
        window_ms: u64,
    ) -> Result<(), WriteError> {
        let now = self.now;
        if self.shard.promises.len() >= MAX_PROMISES_PER_SHARD {
            self.shard.promises.retain(|_, p| p.until > now);
            if self.shard.promises.len() >= MAX_PROMISES_PER_SHARD {
                return Err(WriteError::TooManyPromises);
            }
        }
        self.shard.promises.insert(
            Key::from_slice(key),
            Promise {
                generation,
                owner: owner.into(),
                until: now.saturating_add(window_ms),
            },
        );
        Ok(())
    }

    /// Refuses a write of `generation` by `owner` (`None`: a destroy, which
    /// names no owner) that a live promise forbids.
    fn check_promise(
        &mut self,
        key: &[u8],
        generation: u64,
        owner: Option<&[u8]>,
    ) -> Result<(), WriteError> {
        if self.shard.promises.is_empty() {
            return Ok(());
        }
        let Some(p) = self.shard.promises.get(key) else {
            return Ok(());
        };
        if p.until <= self.now {
            self.shard.promises.remove(key);
            return Ok(());
        }
        let other_owner = owner.is_some_and(|o| o != &*p.owner);
        if generation < p.generation || (generation == p.generation && other_owner) {
            self.ks.stats.stale_refused.fetch_add(1, Ordering::Relaxed);
            return Err(WriteError::Promised(p.generation));
        }
        Ok(())
    }

    /// Forgets the promise at `key` once a write of its generation or a
    /// later one landed.
    fn fulfil_promise(&mut self, key: &[u8], generation: u64) {
        if self.shard.promises.is_empty() {
            return;
        }
        if self
            .shard
            .promises
            .get(key)
            .is_some_and(|p| generation >= p.generation)
        {
            self.shard.promises.remove(key);
        }
    }

    /// Sets the deadline of the entry at `idx`, keeping `volatile` right.
    fn set_deadline(&mut self, key: &[u8], expires_at: u64) -> bool {
        let Some(idx) = self.shard.map.get_index_of(key) else {
            return false;
        };
        let was = self.shard.map[idx].expires_at != 0;
        self.shard.map[idx].expires_at = expires_at;
        self.shard.volatile = self.shard.volatile + usize::from(expires_at != 0) - usize::from(was);
        true
    }
}

impl Keyspace {
    /// A keyspace of `shards` shards (rounded up to a power of two).
    pub(crate) fn new(shards: usize, max_memory: usize, stats: Arc<Stats>) -> Self {
        let n = shards.max(1).next_power_of_two();
        Self {
            shards: (0..n).map(|_| Mutex::new(Shard::default())).collect(),
            pick: foldhash::fast::FixedState::with_seed(0x5715_c4e7),
            used: AtomicUsize::new(0),
            max_memory,
            stats,
            flushes: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn lock(&self, key: &[u8]) -> Locked<'_> {
        let i = (self.pick.hash_one(key) as usize) & (self.shards.len() - 1);
        self.lock_index(i)
    }

    fn lock_index(&self, i: usize) -> Locked<'_> {
        // A poisoned shard only means another thread panicked while holding
        // it; every mutation leaves the map consistent, so keep serving.
        let shard = self.shards[i].lock().unwrap_or_else(|p| p.into_inner());
        Locked {
            shard,
            ks: self,
            now: now_ms(),
        }
    }

    /// Bytes accounted to keys and values.
    pub(crate) fn used_memory(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The configured limit, 0 = none.
    pub(crate) fn max_memory(&self) -> usize {
        self.max_memory
    }

    /// `(keys, keys with a deadline)`, including expired keys not yet swept.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (0..self.shards.len()).fold((0, 0), |(k, v), i| {
            let s = self.lock_index(i);
            (k + s.shard.map.len(), v + s.shard.volatile)
        })
    }

    /// Removes every key.
    /// `FLUSHALL`s so far.
    pub(crate) fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Relaxed)
    }

    pub(crate) fn flush(&self) {
        self.flushes.fetch_add(1, Ordering::Relaxed);
        for i in 0..self.shards.len() {
            let mut s = self.lock_index(i);
            let freed: usize = s.shard.map.iter().map(|(k, e)| e.size(k)).sum();
            s.shard.map = Map::default();
            s.shard.volatile = 0;
            s.shard.cursor = 0;
            self.used.fetch_sub(freed, Ordering::Relaxed);
        }
    }

    // ---- plain Redis values ----

    /// `GET`.
    pub(crate) fn get(&self, key: &[u8]) -> Result<Option<Bytes>, WriteError> {
        let mut s = self.lock(key);
        match s.entry(key).map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Plain(b)) => Ok(Some(b.clone())),
            Some(_) => Err(WriteError::WrongType),
        }
    }

    /// `GET`, its reply encoded into `out` while the shard is locked: no
    /// handle on the value is taken (an atomic increment and decrement on
    /// a cold cache line per request), only its bytes are copied once.
    pub(crate) fn get_into(&self, key: &[u8], version: Version, out: &mut BytesMut) {
        let mut s = self.lock(key);
        match s.entry(key).map(|e| &e.value) {
            None => Reply::Null.encode(version, out),
            Some(Value::Plain(b)) => encode_bulk(b, out),
            Some(_) => Reply::from(WriteError::WrongType).encode(version, out),
        }
    }

    /// `SET`; `Ok(false)` when the NX/XX condition did not hold.
    pub(crate) fn set(
        &self,
        key: &[u8],
        value: &[u8],
        ttl_ms: Option<u64>,
        cond: SetCondition,
    ) -> Result<bool, WriteError> {
        let mut s = self.lock(key);
        let idx = s.live_index(key);
        match (cond, idx.is_some()) {
            (SetCondition::IfAbsent, true) | (SetCondition::IfPresent, false) => return Ok(false),
            _ => {}
        }
        let now = s.now;
        let expires_at = ttl_ms.map_or(0, |t| deadline(now, t.max(1)));
        if let Some(i) = idx {
            if s.overwrite_plain(i, value, expires_at) {
                return Ok(true);
            }
        }
        s.store_at(
            idx,
            key,
            Entry {
                value: Value::Plain(Bytes::copy_from_slice(value)),
                expires_at,
            },
        )?;
        Ok(true)
    }

    /// `DEL` of one key (any kind, tombstones included).
    pub(crate) fn del(&self, key: &[u8]) -> bool {
        let mut s = self.lock(key);
        s.entry(key).is_some() && s.remove(key).is_some()
    }

    /// `EXISTS` of one key.
    pub(crate) fn exists(&self, key: &[u8]) -> bool {
        self.lock(key).entry(key).is_some()
    }

    /// `PEXPIRE`: a TTL of 0 or less deletes the key, as in Redis.
    pub(crate) fn pexpire(&self, key: &[u8], ttl_ms: i64) -> bool {
        let mut s = self.lock(key);
        if s.entry(key).is_none() {
            return false;
        }
        if ttl_ms <= 0 {
            return s.remove(key).is_some();
        }
        let at = deadline(s.now, ttl_ms as u64);
        s.set_deadline(key, at)
    }

    /// `PTTL`: -2 missing, -1 no deadline, else remaining ms.
    pub(crate) fn pttl(&self, key: &[u8]) -> i64 {
        let mut s = self.lock(key);
        let now = s.now;
        match s.entry(key) {
            None => -2,
            Some(e) => e.pttl(now).map_or(-1, clamp_i64),
        }
    }

    /// `TYPE`.
    pub(crate) fn key_type(&self, key: &[u8]) -> KeyType {
        match self.lock(key).entry(key).map(|e| &e.value) {
            None => KeyType::None,
            Some(Value::Plain(_)) => KeyType::String,
            Some(_) => KeyType::Session,
        }
    }

    // ---- sessions ----

    /// The stamp of the copy or tombstone at `key`, if any.
    fn stored_stamp(entry: Option<&mut Entry>) -> Result<Option<Stamp>, WriteError> {
        match entry.map(|e| &e.value) {
            None => Ok(None),
            Some(Value::Session(c)) => Ok(Some(c.stamp)),
            Some(Value::Tombstone(t)) => Ok(Some(*t)),
            Some(Value::Plain(_)) => Err(WriteError::WrongType),
        }
    }

    /// `SESS.PUT`.
    pub(crate) fn sess_put(
        &self,
        key: &[u8],
        stamp: Stamp,
        owner: &[u8],
        ttl_ms: u64,
        payload: &[u8],
    ) -> Result<(), WriteError> {
        let mut s = self.lock(key);
        let idx = s.live_index(key);
        if let Some(stored) = Self::stored_stamp(idx.map(|i| &mut s.shard.map[i]))? {
            if stored >= stamp {
                self.stats.stale_refused.fetch_add(1, Ordering::Relaxed);
                return Err(WriteError::Stale(stored));
            }
        }
        s.check_promise(key, stamp.generation, Some(owner))?;
        let now = s.now;
        s.store_at(
            idx,
            key,
            Entry {
                value: Value::Session(SessionCopy {
                    stamp,
                    owner: owner.into(),
                    payload: Bytes::copy_from_slice(payload),
                }),
                expires_at: deadline(now, ttl_ms),
            },
        )?;
        s.fulfil_promise(key, stamp.generation);
        Ok(())
    }

    /// `SESS.GET`.
    pub(crate) fn sess_get(&self, key: &[u8]) -> Result<Option<SessionView>, WriteError> {
        let mut s = self.lock(key);
        let now = s.now;
        s.entry(key).map(|e| e.session_view(now)).transpose()
    }

    /// `SESS.CLAIM`.
    pub(crate) fn sess_claim(
        &self,
        key: &[u8],
        expected: Stamp,
        new: Stamp,
        owner: &[u8],
        ttl_ms: u64,
    ) -> Result<(), WriteError> {
        if new <= expected {
            return Err(WriteError::StampNotIncreasing);
        }
        let mut s = self.lock(key);
        let now = s.now;
        if s.entry(key).is_none() {
            return Err(WriteError::NoSession);
        }
        let idx = s.shard.map.get_index_of(key).ok_or(WriteError::NoSession)?;
        let old_size = s.shard.map.get_index(idx).map_or(0, |(k, e)| e.size(k));
        match &s.shard.map[idx].value {
            Value::Plain(_) => return Err(WriteError::WrongType),
            Value::Tombstone(t) => return Err(WriteError::Deleted(*t)),
            Value::Session(c) if c.stamp != expected => {
                self.stats.stale_refused.fetch_add(1, Ordering::Relaxed);
                return Err(WriteError::Stale(c.stamp));
            }
            Value::Session(_) => {}
        }
        s.check_promise(key, new.generation, Some(owner))?;
        if let Some(Value::Session(c)) = s.shard.map.get_index_mut(idx).map(|(_, e)| &mut e.value) {
            c.stamp = new;
            c.owner = owner.into();
        }
        s.fulfil_promise(key, new.generation);
        let new_size = s.shard.map.get_index(idx).map_or(0, |(k, e)| e.size(k));
        self.used.fetch_add(new_size, Ordering::Relaxed);
        self.used.fetch_sub(old_size, Ordering::Relaxed);
        s.set_deadline(key, deadline(now, ttl_ms));
        Ok(())
    }

    /// `SESS.TOUCH`: true if a live copy got the new TTL.
    pub(crate) fn sess_touch(&self, key: &[u8], ttl_ms: u64) -> bool {
        let mut s = self.lock(key);
        let now = s.now;
        match s.entry(key).map(|e| matches!(e.value, Value::Session(_))) {
            Some(true) => s.set_deadline(key, deadline(now, ttl_ms)),
            _ => false,
        }
    }

    /// `SESS.DEL`: replaces the copy with a tombstone.
    pub(crate) fn sess_del(
        &self,
        key: &[u8],
        stamp: Stamp,
        tombstone_ttl_ms: u64,
    ) -> Result<(), WriteError> {
        let mut s = self.lock(key);
        if let Some(stored) = Self::stored_stamp(s.entry(key))? {
            if stored >= stamp {
                self.stats.stale_refused.fetch_add(1, Ordering::Relaxed);
                return Err(WriteError::Stale(stored));
            }
        }
        s.check_promise(key, stamp.generation, None)?;
        s.fulfil_promise(key, stamp.generation);
        let now = s.now;
        // A tombstone never counts against --max-memory: deleting must
        // always be possible, and it frees the payload.
        s.remove(key);
        let entry = Entry {
            value: Value::Tombstone(stamp),
            expires_at: deadline(now, tombstone_ttl_ms.max(1)),
        };
        let size = entry.size(key);
        s.shard.map.insert(Key::from_slice(key), entry);
        s.shard.volatile += 1;
        self.used.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// `SESS.PREPARE`: a takeover's promise. Refused if the stored copy's
    /// generation is already `generation` or higher (someone claimed it:
    /// `STALE`), or a higher generation, or this one to another owner, was
    /// promised (`PROMISED`): each generation has one claimer. Otherwise records the promise for `window_ms` and
    /// returns what `SESS.GET` would. A tombstone is returned without a
    /// promise: a destroyed session is not taken over.
    pub(crate) fn sess_prepare(
        &self,
        key: &[u8],
        generation: u64,
        owner: &[u8],
        window_ms: u64,
    ) -> Result<Option<SessionView>, WriteError> {
        let mut s = self.lock(key);
        let now = s.now;
        let view = s.entry(key).map(|e| e.session_view(now)).transpose()?;
        match &view {
            Some(v) if v.live.is_none() => return Ok(view),
            Some(v) if v.stamp.generation >= generation => {
                self.stats.stale_refused.fetch_add(1, Ordering::Relaxed);
                return Err(WriteError::Stale(v.stamp));
            }
            _ => {}
        }
        if let Some(p) = s.shard.promises.get(key) {
            // One claimer per generation: a generation promised to another
            // owner is refused, not outbid. Outbidding at an equal
            // generation let two claimers each hold a quorum of promises
            // for it and each write `(g, 0)`; the later write then met an
            // equal stamp, which reads as its own (chaos found two hosts
            // of one session). A higher generation still wins.
            if p.until > now
                && (p.generation > generation || (p.generation == generation && &*p.owner != owner))
            {
                return Err(WriteError::Promised(p.generation));
            }
        }
        s.promise(key, generation, owner, window_ms)?;
        Ok(view)
    }

    /// `SESS.PREPARE key NEXT`: a takeover's read and promise in one step.
    /// Promises the next generation no claimer can hold here — one above
    /// both the copy's and any live promise's — unless the copy's owner
    /// (another than `owner`) holds a lease that `live` says is live here:
    /// then, like a tombstone, the copy comes back without a promise (a
    /// live owner is not disturbed here). Returns the generation promised
    /// (0: none) and what `SESS.GET` would.
    ///
    /// `live` is called under the shard's lock: it must not take it.
    pub(crate) fn sess_prepare_next(
        &self,
        key: &[u8],
        owner: &[u8],
        window_ms: u64,
        max_generation: u64,
        live: impl FnOnce(&[u8]) -> bool,
    ) -> Result<(u64, Option<SessionView>), WriteError> {
        let mut s = self.lock(key);
        let now = s.now;
        let view = s.entry(key).map(|e| e.session_view(now)).transpose()?;
        if let Some(v) = &view {
            let held = match &v.live {
                // A tombstone: a destroyed session is not taken over.
                None => true,
                Some((o, _)) => !o.is_empty() && &o[..] != owner && live(o),
            };
            if held {
                return Ok((0, view));
            }
        }
        let copy = view.as_ref().map_or(0, |v| v.stamp.generation);
        let promised = s
            .shard
            .promises
            .get(key)
            .filter(|p| p.until > now)
            .map_or(0, |p| p.generation);
        let generation = copy.max(promised).saturating_add(1);
        if generation > max_generation {
            return Err(WriteError::GenerationOverflow);
        }
        s.promise(key, generation, owner, window_ms)?;
        Ok((generation, view))
    }

    /// `SESS.OWNED`: the keys of live copies owned by `owner` in the
    /// shards from `cursor` on, and the next cursor (0 after the last
    /// shard). A page reads whole shards, each under one lock, so a scan
    /// misses no key that stayed owned by `owner` throughout (unlike a
    /// position cursor inside a map that moves entries when it removes
    /// one); it goes on to the next shard until it has looked at
    /// [`OWNED_PAGE_ENTRIES`] entries, so a small keyspace is listed in
    /// one page and a large one in a page per shard, each lock held for
    /// one shard's scan only.
    pub(crate) fn sess_owned(&self, owner: &[u8], cursor: usize) -> (usize, Vec<Bytes>) {
        let mut keys = Vec::new();
        let mut seen = 0;
        let mut i = cursor;
        while i < self.shards.len() {
            let s = self.lock_index(i);
            let now = s.now;
            seen += s.shard.map.len();
            keys.extend(
                s.shard
                    .map
                    .iter()
                    .filter(|(_, e)| !e.expired(now))
                    .filter_map(|(k, e)| match &e.value {
                        Value::Session(c) if &*c.owner == owner => Some(Bytes::copy_from_slice(k)),
                        _ => None,
                    }),
            );
            drop(s);
            i += 1;
            if seen >= OWNED_PAGE_ENTRIES {
                break;
            }
        }
        let next = if i < self.shards.len() { i } else { 0 };
        (next, keys)
    }

    // ---- active expiry ----

    /// Scans up to `budget` entries of every shard from where the last scan
    /// stopped and removes the expired ones. Returns how many it removed and
    /// how many it looked at.
    pub(crate) fn expire_cycle(&self, budget: usize) -> (usize, usize) {
        let (mut removed, mut seen) = (0, 0);
        for i in 0..self.shards.len() {
            let mut s = self.lock_index(i);
            if !s.shard.promises.is_empty() {
                let now = s.now;
                s.shard.promises.retain(|_, p| p.until > now);
            }
            if s.shard.volatile == 0 {
                continue;
            }
            let mut idx = s.shard.cursor;
            for _ in 0..budget {
                if idx >= s.shard.map.len() {
                    idx = 0;
                    if s.shard.map.is_empty() {
                        break;
                    }
                }
                seen += 1;
                if s.shard.map[idx].expired(s.now) {
                    // swap_remove moves the last entry here: look at idx again.
                    s.remove_index(idx);
                    removed += 1;
                } else {
                    idx += 1;
                }
            }
            s.shard.cursor = idx;
        }
        self.stats
            .expired_keys
            .fetch_add(removed as u64, Ordering::Relaxed);
        (removed, seen)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ks(max: usize) -> Keyspace {
        Keyspace::new(4, max, Arc::new(Stats::default()))
    }

    #[test]
    fn put_refuses_lower_or_equal_stamps() {
        let k = ks(0);
        k.sess_put(b"s", Stamp::new(1, 5), b"ws1", 0, b"a").unwrap();
        assert_eq!(
            k.sess_put(b"s", Stamp::new(1, 5), b"ws1", 0, b"b"),
            Err(WriteError::Stale(Stamp::new(1, 5)))
        );
        assert_eq!(
            k.sess_put(b"s", Stamp::new(0, 9), b"ws1", 0, b"b"),
            Err(WriteError::Stale(Stamp::new(1, 5)))
        );
        k.sess_put(b"s", Stamp::new(2, 0), b"ws2", 0, b"c").unwrap();
        let v = k.sess_get(b"s").unwrap().unwrap();
        assert_eq!(v.stamp, Stamp::new(2, 0));
        assert_eq!(v.live, Some((Bytes::from("ws2"), Bytes::from("c"))));
    }

    #[test]
    fn claim_is_compare_and_set() {
        let k = ks(0);
        assert_eq!(
            k.sess_claim(b"s", Stamp::new(1, 1), Stamp::new(2, 0), b"ws2", 0),
            Err(WriteError::NoSession)
        );
        k.sess_put(b"s", Stamp::new(1, 1), b"ws1", 0, b"a").unwrap();
        assert_eq!(
            k.sess_claim(b"s", Stamp::new(1, 0), Stamp::new(2, 0), b"ws2", 0),
            Err(WriteError::Stale(Stamp::new(1, 1)))
        );
        k.sess_claim(b"s", Stamp::new(1, 1), Stamp::new(2, 0), b"ws2", 0)
            .unwrap();
        let v = k.sess_get(b"s").unwrap().unwrap();
        assert_eq!(v.stamp, Stamp::new(2, 0));
        assert_eq!(
            v.live.unwrap().1,
            Bytes::from("a"),
            "claim keeps the payload"
        );
        assert_eq!(
            k.sess_put(b"s", Stamp::new(1, 2), b"ws1", 0, b"late"),
            Err(WriteError::Stale(Stamp::new(2, 0))),
            "the old host's late write loses"
        );
    }

    #[test]
    fn tombstone_blocks_resurrection() {
        let k = ks(0);
        k.sess_put(b"s", Stamp::new(1, 1), b"ws1", 0, b"a").unwrap();
        k.sess_del(b"s", Stamp::new(1, 2), 60_000).unwrap();
        assert_eq!(
            k.sess_put(b"s", Stamp::new(1, 1), b"ws1", 0, b"a"),
            Err(WriteError::Stale(Stamp::new(1, 2)))
        );
        assert_eq!(
            k.sess_claim(b"s", Stamp::new(1, 2), Stamp::new(2, 0), b"ws2", 0),
            Err(WriteError::Deleted(Stamp::new(1, 2)))
        );
        assert_eq!(k.sess_get(b"s").unwrap().unwrap().live, None);
    }

    #[test]
    fn memory_limit_refuses_growth_but_allows_deletes() {
        let k = ks(2_000);
        k.set(b"a", &[0; 1000], None, SetCondition::Always).unwrap();
        assert_eq!(
            k.set(b"b", &[0; 1000], None, SetCondition::Always),
            Err(WriteError::OutOfMemory)
        );
        assert!(k.del(b"a"));
        assert_eq!(k.used_memory(), 0);
        k.set(b"b", &[0; 1000], None, SetCondition::Always).unwrap();
    }

    #[test]
    fn plain_and_session_values_do_not_mix() {
        let k = ks(0);
        k.set(b"p", b"v", None, SetCondition::Always).unwrap();
        assert_eq!(
            k.sess_put(b"p", Stamp::new(1, 1), b"w", 0, b"x"),
            Err(WriteError::WrongType)
        );
        k.sess_put(b"s", Stamp::new(1, 1), b"w", 0, b"x").unwrap();
        assert_eq!(k.get(b"s"), Err(WriteError::WrongType));
    }

    #[test]
    fn a_promise_refuses_older_writes_and_other_claimers() {
        let k = ks(0);
        k.sess_put(b"s", Stamp::new(1, 4), b"ws1@1", 0, b"a")
            .unwrap();
        let v = k.sess_prepare(b"s", 2, b"ws2@1", 60_000).unwrap().unwrap();
        assert_eq!(v.stamp, Stamp::new(1, 4));
        // The old host's next write is refused once the promise is made.
        assert_eq!(
            k.sess_put(b"s", Stamp::new(1, 5), b"ws1@1", 0, b"late"),
            Err(WriteError::Promised(2))
        );
        assert_eq!(
            k.sess_del(b"s", Stamp::new(1, 5), 60_000),
            Err(WriteError::Promised(2))
        );
        // The same generation is refused to any other claimer, lower or
        // higher owner; the same claimer again is promised; a higher
        // generation wins.
        for other in [&b"ws0@9"[..], b"ws3@1"] {
            assert_eq!(
                k.sess_prepare(b"s", 2, other, 60_000).map(|_| ()),
                Err(WriteError::Promised(2))
            );
        }
        k.sess_prepare(b"s", 2, b"ws2@1", 60_000).unwrap();
        k.sess_prepare(b"s", 3, b"ws3@1", 60_000).unwrap();
        assert_eq!(
            k.sess_put(b"s", Stamp::new(2, 0), b"ws2@1", 0, b"a"),
            Err(WriteError::Promised(3)),
            "the promise now belongs to ws3, at generation 3"
        );
        k.sess_put(b"s", Stamp::new(3, 0), b"ws3@1", 0, b"a")
            .unwrap();
        // Fulfilled: the promise is gone, the stamp rules alone remain.
        assert_eq!(
            k.sess_prepare(b"s", 3, b"ws4@1", 60_000).map(|_| ()),
            Err(WriteError::Stale(Stamp::new(3, 0)))
        );
        k.sess_put(b"s", Stamp::new(3, 1), b"ws3@1", 0, b"b")
            .unwrap();
    }

    #[test]
    fn prepare_next_promises_above_the_copy_and_every_live_promise() {
        let k = ks(0);
        let dead = |_: &[u8]| false;
        // No copy: generation 1.
        let (g, v) = k
            .sess_prepare_next(b"n", b"ws2@1", 60_000, 100, dead)
            .unwrap();
        assert_eq!((g, v.map(|v| v.stamp)), (1, None));
        k.sess_put(b"s", Stamp::new(4, 7), b"ws1@1", 0, b"a")
            .unwrap();
        let (g, v) = k
            .sess_prepare_next(b"s", b"ws2@1", 60_000, 100, dead)
            .unwrap();
        assert_eq!((g, v.map(|v| v.stamp)), (5, Some(Stamp::new(4, 7))));
        // It is a promise like any other: the old owner's writes and
        // another claimer's prepare of 5 are refused.
        assert_eq!(
            k.sess_put(b"s", Stamp::new(4, 8), b"ws1@1", 0, b"late"),
            Err(WriteError::Promised(5))
        );
        assert_eq!(
            k.sess_prepare(b"s", 5, b"ws3@1", 60_000).map(|_| ()),
            Err(WriteError::Promised(5))
        );
        // Another claimer asking for the next one is promised above it,
        // never the same generation.
        let (g, _) = k
            .sess_prepare_next(b"s", b"ws3@1", 60_000, 100, dead)
            .unwrap();
        assert_eq!(g, 6);
        assert_eq!(
            k.sess_put(b"s", Stamp::new(5, 0), b"ws2@1", 0, b"a"),
            Err(WriteError::Promised(6))
        );
        k.sess_put(b"s", Stamp::new(6, 0), b"ws3@1", 0, b"b")
            .unwrap();
        // Fulfilled: the next is above the copy again.
        let (g, _) = k
            .sess_prepare_next(b"s", b"ws2@1", 60_000, 100, dead)
            .unwrap();
        assert_eq!(g, 7);
        // At the largest generation a stamp may carry: refused.
        assert_eq!(
            k.sess_prepare_next(b"s", b"ws2@1", 60_000, 7, dead)
                .map(|_| ()),
            Err(WriteError::GenerationOverflow)
        );
    }

    #[test]
    fn prepare_next_does_not_promise_over_a_live_owner_or_a_tombstone() {
        let k = ks(0);
        k.sess_put(b"s", Stamp::new(2, 1), b"ws1@1", 0, b"a")
            .unwrap();
        let asked = std::cell::Cell::new(None);
        let live = |o: &[u8]| {
            asked.set(Some(o.to_vec()));
            true
        };
        let (g, v) = k
            .sess_prepare_next(b"s", b"ws2@1", 60_000, 100, live)
            .unwrap();
        assert_eq!((g, v.map(|v| v.stamp)), (0, Some(Stamp::new(2, 1))));
        assert_eq!(asked.take().as_deref(), Some(&b"ws1@1"[..]));
        // Nothing was promised: the owner writes on.
        k.sess_put(b"s", Stamp::new(2, 2), b"ws1@1", 0, b"b")
            .unwrap();
        // Its own copy, the claimer's lease is not asked about.
        let (g, _) = k
            .sess_prepare_next(b"s", b"ws1@1", 60_000, 100, |_: &[u8]| true)
            .unwrap();
        assert_eq!(g, 3);
        k.sess_del(b"t", Stamp::new(3, 0), 60_000).unwrap();
        let (g, v) = k
            .sess_prepare_next(b"t", b"ws2@1", 60_000, 100, |_: &[u8]| false)
            .unwrap();
        assert_eq!(g, 0);
        assert!(v.is_some_and(|v| v.live.is_none()), "the tombstone");
    }

    #[test]
    fn a_promise_on_a_missing_session_holds_and_expires() {
        let k = ks(0);
        assert_eq!(k.sess_prepare(b"s", 3, b"ws2@1", 1).unwrap(), None);
        std::thread::sleep(std::time::Duration::from_millis(5));
        // Expired: an older write lands again (it can no longer be acked by
        // a host whose lease was killed, docs/safety.md).
        k.sess_put(b"s", Stamp::new(2, 9), b"ws1@1", 0, b"a")
            .unwrap();
        assert_eq!(
            k.sess_prepare(b"s", 3, b"ws2@1", 60_000)
                .unwrap()
                .map(|v| v.stamp),
            Some(Stamp::new(2, 9))
        );
        assert_eq!(
            k.sess_put(b"s", Stamp::new(2, 10), b"ws1@1", 0, b"b"),
            Err(WriteError::Promised(3))
        );
    }

    #[test]
    fn a_tombstone_is_returned_without_a_promise() {
        let k = ks(0);
        k.sess_put(b"s", Stamp::new(1, 1), b"ws1@1", 0, b"a")
            .unwrap();
        k.sess_del(b"s", Stamp::new(1, 2), 60_000).unwrap();
        let v = k.sess_prepare(b"s", 2, b"ws2@1", 60_000).unwrap().unwrap();
        assert_eq!(v.live, None);
        assert_eq!(v.stamp, Stamp::new(1, 2));
    }

    #[test]
    fn owned_lists_every_key_of_an_owner_in_pages_of_whole_shards() {
        // (keys, pages): a small keyspace in one page; a large one (about
        // 5,000 entries per shard, over the page's 4,096) a page per shard.
        for (n, pages_expected) in [(200u32, 1), (20_000, 4)] {
            let k = ks(0);
            for i in 0..n {
                let owner: &[u8] = if i % 3 == 0 { b"ws1@1" } else { b"ws2@1" };
                k.sess_put(&i.to_be_bytes(), Stamp::new(1, 1), owner, 0, b"x")
                    .unwrap();
            }
            let (mut cursor, mut found, mut pages) = (0, 0, 0);
            loop {
                let (next, keys) = k.sess_owned(b"ws1@1", cursor);
                found += keys.len();
                pages += 1;
                if next == 0 {
                    break;
                }
                assert!(next > cursor, "the cursor moves on");
                cursor = next;
            }
            assert_eq!(found, (0..n).filter(|i| i % 3 == 0).count(), "{n} keys");
            assert_eq!(pages, pages_expected, "{n} keys");
            assert_eq!(k.sess_owned(b"ws1@1", 999), (0, Vec::new()));
        }
    }

    /// A `SET` of a value of the same length rewrites it in place; of
    /// another length, or while the old value is held elsewhere, it stores
    /// a new one. Either way the value, its TTL and the accounting are
    /// those of the last write.
    #[test]
    fn set_rewrites_a_value_of_the_same_length() {
        let k = ks(0);
        let key = b"key:1";
        assert!(k.set(key, &[1; 1024], None, SetCondition::Always).unwrap());
        let used = k.used_memory();
        let before = k.get(key).unwrap().unwrap();
        // Held elsewhere (a reply being encoded on another thread): not
        // written over.
        assert!(k
            .set(key, &[2; 1024], Some(60_000), SetCondition::Always)
            .unwrap());
        assert_eq!(&before[..], &[1; 1024][..]);
        drop(before);
        assert_eq!(&k.get(key).unwrap().unwrap()[..], &[2; 1024][..]);
        assert_eq!(k.counts(), (1, 1));
        // In place now (the value is not held): the same buffer with the
        // new bytes, the TTL removed, the same memory.
        let at = k.get(key).unwrap().unwrap().as_ptr();
        assert!(k.set(key, &[3; 1024], None, SetCondition::Always).unwrap());
        let after = k.get(key).unwrap().unwrap();
        assert_eq!(&after[..], &[3; 1024][..]);
        assert_eq!(after.as_ptr(), at, "rewritten in place");
        drop(after);
        assert_eq!(k.pttl(key), -1);
        assert_eq!(k.counts(), (1, 0));
        assert_eq!(k.used_memory(), used);
        assert!(k
            .set(key, &[4; 1024], Some(60_000), SetCondition::Always)
            .unwrap());
        assert!(k.pttl(key) > 0);
        assert_eq!(k.counts(), (1, 1));
        // Another length.
        assert!(k.set(key, &[5; 10], None, SetCondition::Always).unwrap());
        assert_eq!(&k.get(key).unwrap().unwrap()[..], &[5; 10][..]);
        assert_eq!(k.used_memory(), used - 1014);
        assert!(k.del(key));
        assert_eq!(k.used_memory(), 0);
        assert_eq!(k.counts(), (0, 0));
    }

    #[test]
    fn accounting_returns_to_zero() {
        let k = ks(0);
        for i in 0..100u32 {
            let key = i.to_be_bytes();
            k.sess_put(&key, Stamp::new(1, 1), b"ws1", 0, &[1; 100])
                .unwrap();
            k.sess_claim(&key, Stamp::new(1, 1), Stamp::new(2, 0), b"ws22", 0)
                .unwrap();
            k.sess_del(&key, Stamp::new(2, 1), 10).unwrap();
            assert!(k.del(&key));
        }
        assert_eq!(k.used_memory(), 0);
        assert_eq!(k.counts(), (0, 0));
    }
}
