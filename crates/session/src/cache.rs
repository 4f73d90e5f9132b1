//! The local cache: every hosted session, whole, in memory.
//!
//! An unbounded sharded map from id to entry (never an evicting cache: an
//! evicted hosted session would cost a remote load). Each entry has its own
//! async lock, held for the whole of a request, so concurrent requests of
//! one session run one after the other and never lose each other's changes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde_json::{Map, Value};
use sticky_proto::Stamp;
use tokio::sync::Mutex;

use crate::clock::{unix_ms, Clock};
use crate::id::SessionId;

/// One session's data and bookkeeping.
///
/// The data is kept only serialized, in `payload` (issue 19, item 3: a
/// parsed `Map` cost twice the JSON again per session); requests read it
/// from there ([`crate::data`]) and parse it whole only to change it.
#[derive(Debug, Clone)]
pub(crate) struct SessionState {
    /// Creation time (Unix ms), for the absolute timeout.
    pub(crate) created_ms: u64,
    /// Stamp of the newest version acknowledged by the stores (or, in
    /// async mode, queued for them).
    pub(crate) stamp: Stamp,
    /// That version, serialized: the data, and what re-copies send. Empty
    /// for a session never saved (no data yet); else in [`StoredRef`]'s
    /// form, exactly (see [`stored_data_range`]).
    pub(crate) payload: Bytes,
    /// Stores known to hold `stamp`.
    pub(crate) stored_on: u64,
    /// When the copies at the stores expire ([`Clock::now_ms`]); lazy touches
    /// extend it once less than half the idle time is left.
    pub(crate) store_deadline_ms: u64,
    /// A new session no second request has touched yet: it lives
    /// `new_session_ttl` (here and at the stores) instead of the idle
    /// timeout (issue 15, item 3).
    pub(crate) untouched: bool,
}

impl SessionState {
    pub(crate) fn new() -> Self {
        Self {
            created_ms: unix_ms(),
            stamp: Stamp::default(),
            payload: Bytes::new(),
            stored_on: 0,
            store_deadline_ms: 0,
            untouched: false,
        }
    }

    /// Never written to a store.
    pub(crate) fn is_unsaved(&self) -> bool {
        self.stamp == Stamp::default()
    }
}

/// What the stores hold as a session's payload.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct Stored {
    /// Creation time, Unix ms.
    pub(crate) c: u64,
    /// The data.
    pub(crate) d: Map<String, Value>,
}

/// [`Stored`] by reference, for serializing without copying the data.
#[derive(serde::Serialize)]
pub(crate) struct StoredRef<'a> {
    pub(crate) c: u64,
    pub(crate) d: &'a Map<String, Value>,
}

/// Where the data's JSON is inside a payload that [`StoredRef`] wrote
/// (`{"c":N,"d":{...}}`): serde_json writes the fields in order and the
/// map the same way alone or inside, so that slice is byte for byte the
/// data serialized. Every [`SessionState::payload`] is in that form (a
/// takeover writes a copy in another form again). `None` when the payload
/// does not even look like it.
pub(crate) fn stored_data_range(payload: &[u8]) -> Option<std::ops::Range<usize>> {
    let rest = payload.strip_prefix(b"{\"c\":")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let data = rest.get(digits..)?.strip_prefix(b",\"d\":")?;
    let start = payload.len() - data.len();
    let end = payload.len().checked_sub(1)?;
    (payload.last() == Some(&b'}')
        && data.first() == Some(&b'{')
        && payload.get(end.checked_sub(1)?) == Some(&b'}')
        && start < end)
        .then_some(start..end)
}

/// A cache slot: `None` while the session is being loaded, or after a load
/// found nothing.
pub(crate) type Slot = Option<SessionState>;

#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) slot: Arc<Mutex<Slot>>,
    /// [`Clock::now_ms`] of the last request; read by the sweeper without
    /// locking.
    pub(crate) last_access: AtomicU64,
    /// Async mode: already waiting in the replication queue.
    pub(crate) queued: AtomicBool,
    /// The length of the slot's payload, counted in [`Cache::bytes`];
    /// changed only through [`Cache::set_bytes`] once in the cache.
    pub(crate) bytes: AtomicU64,
    /// Mirrors [`SessionState::untouched`] for the sweeper, which does not
    /// lock slots.
    pub(crate) untouched: AtomicBool,
    /// Claimed by adoption (`adopt`) and not served since: its first
    /// request reports [`Source::Store`](crate::Source::Store), where it
    /// really came from.
    pub(crate) adopted: AtomicBool,
    /// A claim holds this entry's lock and it holds no copy yet: a peer's
    /// `/.sticky/holds` ([`crate::holders`]) can answer for it without
    /// waiting (a lock held by anything else may guard a copy).
    pub(crate) claiming: AtomicBool,
    /// The MAC of this session's cookie value, once one was verified (or
    /// signed) here, as two halves; a half still 0 means not known yet.
    /// A request whose cookie presents exactly this MAC is not verified
    /// again (the HMAC costs ~0.7 µs per read; issue 19 item 1). Every
    /// half ever stored is the right one (the MAC is a function of the id
    /// alone, and only a verified or signed one is stored), so the halves
    /// need no ordering: one not stored yet reads as 0, never as another
    /// value.
    tag: [AtomicU64; 2],
}

impl Entry {
    /// An entry last used at `now_ms` ([`Clock::now_ms`]).
    pub(crate) fn new(slot: Slot, now_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            slot: Arc::new(Mutex::new(slot)),
            last_access: AtomicU64::new(now_ms),
            queued: AtomicBool::new(false),
            adopted: AtomicBool::new(false),
            claiming: AtomicBool::new(false),
            bytes: AtomicU64::new(0),
            untouched: AtomicBool::new(false),
            tag: [AtomicU64::new(0), AtomicU64::new(0)],
        })
    }

    /// Remembers `tag`, which must be this session's cookie MAC: verified
    /// ([`CookieSigner::verifies`](crate::id::CookieSigner::verifies)) or
    /// computed ([`CookieSigner::tag`](crate::id::CookieSigner::tag)).
    pub(crate) fn remember_tag(&self, tag: &[u8; 16]) {
        let (hi, lo) = halves(tag);
        self.tag[0].store(hi, Ordering::Relaxed);
        self.tag[1].store(lo, Ordering::Relaxed);
    }

    /// Whether `given` is the remembered MAC, compared in constant time;
    /// false while none is remembered (then verify it with the HMAC).
    pub(crate) fn tag_is(&self, given: &[u8; 16]) -> bool {
        let hi = self.tag[0].load(Ordering::Relaxed);
        let lo = self.tag[1].load(Ordering::Relaxed);
        if hi == 0 || lo == 0 {
            // Not known yet (or a MAC with a zero half, 2^-63: always
            // verified with the HMAC).
            return false;
        }
        let mut known = [0u8; 16];
        known[..8].copy_from_slice(&hi.to_le_bytes());
        known[8..].copy_from_slice(&lo.to_le_bytes());
        bool::from(subtle::ConstantTimeEq::ct_eq(&known[..], &given[..]))
    }

    /// Records a request at `now_ms` ([`Clock::now_ms`]).
    pub(crate) fn touch(&self, now_ms: u64) {
        self.last_access.store(now_ms, Ordering::Relaxed);
    }
}

fn halves(tag: &[u8; 16]) -> (u64, u64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&tag[..8]);
    lo.copy_from_slice(&tag[8..]);
    (u64::from_le_bytes(hi), u64::from_le_bytes(lo))
}

const SHARDS: usize = 64;

#[derive(Debug)]
pub(crate) struct Cache {
    shards: Vec<RwLock<HashMap<SessionId, Arc<Entry>>>>,
    /// The clock of [`Entry::last_access`].
    clock: Clock,
    /// Entries in the map (kept under the shard locks).
    count: AtomicUsize,
    /// Sum of the entries' [`Entry::bytes`].
    bytes: AtomicU64,
}

impl Cache {
    pub(crate) fn new(clock: Clock) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| RwLock::new(HashMap::new())).collect(),
            clock,
            count: AtomicUsize::new(0),
            bytes: AtomicU64::new(0),
        }
    }

    /// Its clock's now, in ms.
    pub(crate) fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }

    fn counted_out(&self, e: &Entry) {
        self.count.fetch_sub(1, Ordering::AcqRel);
        self.bytes
            .fetch_sub(e.bytes.load(Ordering::Acquire), Ordering::AcqRel);
    }

    fn shard(&self, id: &SessionId) -> &RwLock<HashMap<SessionId, Arc<Entry>>> {
        &self.shards[(id.prefix_u64() as usize) % SHARDS]
    }

    pub(crate) fn get(&self, id: &SessionId) -> Option<Arc<Entry>> {
        let map = self.shard(id).read().unwrap_or_else(|p| p.into_inner());
        map.get(id).cloned()
    }

    /// Whether `id` is cached with `given` as its remembered cookie MAC
    /// ([`Entry::tag_is`]): no store I/O, nothing inserted.
    pub(crate) fn tag_is(&self, id: &SessionId, given: &[u8; 16]) -> bool {
        let map = self.shard(id).read().unwrap_or_else(|p| p.into_inner());
        map.get(id).is_some_and(|e| e.tag_is(given))
    }

    /// The entry for `id`, inserting an empty (loading) one if absent;
    /// true if this call inserted it.
    pub(crate) fn get_or_insert(&self, id: SessionId) -> (Arc<Entry>, bool) {
        let mut map = self.shard(&id).write().unwrap_or_else(|p| p.into_inner());
        match map.get(&id) {
            Some(e) => (e.clone(), false),
            None => {
                let e = Entry::new(None, self.clock.now_ms());
                map.insert(id, e.clone());
                self.count.fetch_add(1, Ordering::AcqRel);
                (e, true)
            }
        }
    }

    pub(crate) fn insert(&self, id: SessionId, entry: Arc<Entry>) {
        let mut map = self.shard(&id).write().unwrap_or_else(|p| p.into_inner());
        self.bytes
            .fetch_add(entry.bytes.load(Ordering::Acquire), Ordering::AcqRel);
        self.count.fetch_add(1, Ordering::AcqRel);
        if let Some(old) = map.insert(id, entry) {
            self.counted_out(&old);
        }
    }

    /// Records that `entry`'s payload is now `bytes` long, if `entry` is
    /// still `id`'s (a removed entry no longer counts).
    pub(crate) fn set_bytes(&self, id: &SessionId, entry: &Arc<Entry>, bytes: u64) {
        // Under the shard's lock, so that no removal (write lock) runs
        // between the check and the update.
        let map = self.shard(id).read().unwrap_or_else(|p| p.into_inner());
        if map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            self.bytes.fetch_add(bytes, Ordering::AcqRel);
            let old = entry.bytes.swap(bytes, Ordering::AcqRel);
            self.bytes.fetch_sub(old, Ordering::AcqRel);
        } else {
            entry.bytes.store(bytes, Ordering::Release);
        }
    }

    /// Serialized bytes of the hosted sessions.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Acquire)
    }

    /// Removes `id` only if it still maps to `entry`.
    pub(crate) fn remove_if(&self, id: &SessionId, entry: &Arc<Entry>) {
        let mut map = self.shard(id).write().unwrap_or_else(|p| p.into_inner());
        if map.get(id).is_some_and(|e| Arc::ptr_eq(e, entry)) {
            map.remove(id);
            self.counted_out(entry);
        }
    }

    /// Drops this server's copy of `id`: empties its slot (locked by the
    /// caller) and removes `entry` from the cache, so that the next request
    /// re-loads the last acknowledged version from the stores. The one way
    /// a copy that is moved, failed, destroyed or expired leaves the cache.
    pub(crate) fn drop_copy(&self, id: &SessionId, entry: &Arc<Entry>, slot: &mut Slot) {
        *slot = None;
        self.remove_if(id, entry);
    }

    /// Entries (hosted sessions and those being loaded).
    pub(crate) fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub(crate) fn clear(&self) {
        for s in &self.shards {
            let mut map = s.write().unwrap_or_else(|p| p.into_inner());
            for e in map.values() {
                self.counted_out(e);
            }
            map.clear();
        }
    }

    /// Every entry, for background scans (re-copy).
    pub(crate) fn snapshot(&self) -> Vec<(SessionId, Arc<Entry>)> {
        let mut all = Vec::new();
        for s in &self.shards {
            let map = s.read().unwrap_or_else(|p| p.into_inner());
            all.extend(map.iter().map(|(k, v)| (*k, v.clone())));
        }
        all
    }

    /// Removes entries idle since before `cutoff_ms` ([`Clock::now_ms`]
    /// time), and untouched new sessions created before `new_cutoff_ms`.
    pub(crate) fn sweep_idle(&self, cutoff_ms: u64, new_cutoff_ms: u64) -> usize {
        let mut removed = 0;
        for s in &self.shards {
            let mut map = s.write().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, e| {
                let cutoff = if e.untouched.load(Ordering::Relaxed) {
                    new_cutoff_ms
                } else {
                    cutoff_ms
                };
                let keep = e.last_access.load(Ordering::Relaxed) >= cutoff;
                if !keep {
                    self.counted_out(e);
                    removed += 1;
                }
                keep
            });
        }
        removed
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn data(pairs: &[(&str, Value)]) -> Map<String, Value> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect()
    }

    #[test]
    fn the_data_slice_of_a_payload_is_the_data_serialized() {
        let cases = [
            data(&[]),
            data(&[("counter", Value::from(7))]),
            data(&[
                (
                    "cart",
                    serde_json::json!(["a", "b\"}", {"n": [1, 2.5, null]}]),
                ),
                ("note", Value::from("}{\\\"d\":{")),
                ("\u{e9}t\u{e9}", Value::from("\u{2028}\n")),
            ]),
        ];
        for d in cases {
            for c in [0, 1, 1_733_000_000_000, u64::MAX] {
                let payload = serde_json::to_vec(&StoredRef { c, d: &d }).unwrap();
                let range = stored_data_range(&payload).expect("a payload StoredRef wrote");
                assert_eq!(&payload[range], serde_json::to_vec(&d).unwrap().as_slice());
                // And it reads back as what Stored holds.
                let back: Stored = serde_json::from_slice(&payload).unwrap();
                assert_eq!(back.d, d);
            }
        }
    }

    #[test]
    fn anything_else_is_not_sliced() {
        for p in [
            &b""[..],
            b"{}",
            b"{\"c\":,\"d\":{}}",
            b"{\"c\":1,\"d\":[]}",
            b"{\"c\":1,\"d\":{}",
            b"{\"d\":{},\"c\":1}",
            b"{\"c\":1,\"d\":{}} ",
            b"{\"c\":1,\"d\":",
            b"{\"c\":1",
        ] {
            let r = stored_data_range(p);
            assert!(
                r.as_ref()
                    .is_none_or(
                        |r| serde_json::from_slice::<Map<String, Value>>(&p[r.clone()]).is_ok()
                    ),
                "{:?} -> {r:?}",
                String::from_utf8_lossy(p)
            );
        }
        assert_eq!(stored_data_range(b"{\"c\":1,\"d\":[]}"), None);
        assert_eq!(stored_data_range(b"{\"d\":{},\"c\":1}"), None);
        assert_eq!(stored_data_range(b"{\"c\":1,\"d\":{}"), None);
    }
}
