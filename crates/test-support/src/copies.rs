//! What the stores hold: a session's copy ([`StoredCopy`]) read with
//! `SESS.GET` from `sticky store`, or from Redis's documented key layout
//! (`sticky:{<id>}`, `HGETALL` and `PTTL`); and the stores' session command
//! counters (`INFO commandstats`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use crate::demo::Stamp;
use crate::resp::{Resp, RespConn};

/// Each session's last acknowledged `(value, stamp)`, by id.
pub type Acked = HashMap<String, (u64, Stamp)>;

/// What servers hold of sessions, by id: the copies by server index
/// (`None` where a server has none), as [`copies_by_store`] reads them from
/// `sticky store`s (and [`redis_copies_by_store`] from Redis).
pub type CopiesById = HashMap<String, Vec<Option<StoredCopy>>>;

/// A session's copy on one store, from `SESS.GET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCopy {
    /// A live copy (`false`: a tombstone).
    pub live: bool,
    /// Its stamp.
    pub stamp: Stamp,
    /// The owning web server.
    pub owner: String,
    /// Remaining TTL in ms, -1 for none.
    pub pttl: i64,
    /// The payload: `{"c": created_ms, "d": {...session data...}}`.
    pub payload: Vec<u8>,
}

impl StoredCopy {
    /// The session data (`d` of the payload).
    pub fn data(&self) -> Value {
        let v: Value = serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "stored payload is not JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.payload)
            )
        });
        v["d"].clone()
    }

    /// The demo counter in the data (0 if absent).
    pub fn counter(&self) -> u64 {
        self.data()["counter"].as_u64().unwrap_or(0)
    }
}

fn decode_sess_get(reply: Resp) -> Option<StoredCopy> {
    match reply {
        Resp::NilBulk | Resp::Null => None,
        Resp::Array(items) => {
            let [Resp::Bulk(kind), Resp::Int(g), Resp::Int(s), Resp::Bulk(owner), Resp::Int(pttl), Resp::Bulk(payload)] =
                &items[..]
            else {
                panic!("SESS.GET: unexpected shape {items:?}");
            };
            Some(StoredCopy {
                live: kind.as_slice() == b"live",
                stamp: Stamp {
                    generation: u64::try_from(*g).unwrap(),
                    seq: u64::try_from(*s).unwrap(),
                },
                owner: String::from_utf8_lossy(owner).into_owned(),
                pttl: *pttl,
                payload: payload.clone(),
            })
        }
        other => panic!("SESS.GET: unexpected reply {other:?}"),
    }
}

/// `SESS.GET <id>` on the store at `addr` (no password): its copy of the
/// session whose 32-hex-character id is `id`, if any.
pub fn sess_get(addr: SocketAddr, id: &str) -> Option<StoredCopy> {
    let mut c = RespConn::connect(addr).unwrap_or_else(|e| panic!("connect to store {addr}: {e}"));
    decode_sess_get(c.cmd(&[b"SESS.GET", id.as_bytes()]).expect("SESS.GET"))
}

/// The copies the store at `addr` holds of the sessions `ids` (one
/// connection, one `SESS.GET` each); sessions it lacks are absent.
pub fn store_sessions(addr: SocketAddr, ids: &[String]) -> HashMap<String, StoredCopy> {
    let mut c = RespConn::connect(addr).unwrap_or_else(|e| panic!("connect to store {addr}: {e}"));
    ids.iter()
        .filter_map(|id| {
            let reply = c.cmd(&[b"SESS.GET", id.as_bytes()]).expect("SESS.GET");
            decode_sess_get(reply).map(|copy| (id.clone(), copy))
        })
        .collect()
}

/// [`store_sessions`] on a store that wants `password`, if any.
pub fn store_sessions_auth(
    addr: SocketAddr,
    password: Option<&str>,
    ids: &[String],
) -> HashMap<String, StoredCopy> {
    let mut c = crate::resp::client(addr, password);
    ids.iter()
        .filter_map(|id| {
            let reply = c.cmd(&[b"SESS.GET", id.as_bytes()]).expect("SESS.GET");
            decode_sess_get(reply).map(|copy| (id.clone(), copy))
        })
        .collect()
}

/// Calls of each session command (`sess.get`, `sess.put`, `sess.claim`,
/// `sess.touch`, `sess.del`) served by the store at `addr`, from
/// `INFO commandstats` (0 when absent).
pub fn sess_command_calls(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut calls: BTreeMap<String, u64> = [
        "sess.get",
        "sess.put",
        "sess.claim",
        "sess.touch",
        "sess.del",
    ]
    .iter()
    .map(|c| ((*c).to_owned(), 0))
    .collect();
    calls.extend(
        command_calls(addr)
            .into_iter()
            .filter(|(name, _)| name.starts_with("sess.")),
    );
    calls
}

/// Calls of every command the server at `addr` (a `sticky store` or a
/// Redis, no password) has served, by lowercase name, from `INFO
/// commandstats`.
pub fn command_calls(addr: SocketAddr) -> BTreeMap<String, u64> {
    let mut c = RespConn::connect(addr).unwrap_or_else(|e| panic!("connect to store {addr}: {e}"));
    let info = c
        .cmd(&[b"INFO", b"commandstats"])
        .expect("INFO commandstats");
    let text =
        String::from_utf8_lossy(info.as_bytes().expect("INFO answers a bulk string")).into_owned();
    let mut calls = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        let n = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no calls= in {line:?}"));
        calls.insert(name.to_ascii_lowercase(), n);
    }
    calls
}

/// Reads every copy of each of `ids` from the stores at `addrs`: for each
/// id, the copies by store index (`None` where a store has none).
pub fn copies_by_store(
    addrs: &[SocketAddr],
    ids: &[String],
) -> HashMap<String, Vec<Option<StoredCopy>>> {
    let per_store: Vec<HashMap<String, StoredCopy>> =
        addrs.iter().map(|a| store_sessions(*a, ids)).collect();
    copies_by_id(&per_store, ids)
}

/// For each of `ids`, its copies by store index (`None` where a store has
/// none), from what each store holds (`per_store`, by id).
pub fn copies_by_id(
    per_store: &[HashMap<String, StoredCopy>],
    ids: &[String],
) -> HashMap<String, Vec<Option<StoredCopy>>> {
    ids.iter()
        .map(|id| {
            let copies = per_store.iter().map(|m| m.get(id).cloned()).collect();
            (id.clone(), copies)
        })
        .collect()
}

/// What `conn` holds of the session `id` (32 hex characters), read from
/// the documented layout: the hash `sticky:{<id>}` and its `PTTL`.
pub fn redis_copy(conn: &mut redis::Connection, id: &str) -> Option<StoredCopy> {
    redis_try_copy(conn, id).expect("HGETALL and PTTL")
}

/// [`redis_copy`], with Redis's errors (e.g. `MOVED` from a cluster node
/// that does not own the key's slot) returned.
pub fn redis_try_copy(
    conn: &mut redis::Connection,
    id: &str,
) -> redis::RedisResult<Option<StoredCopy>> {
    let key = format!("sticky:{{{id}}}");
    let (fields, pttl): (HashMap<String, Vec<u8>>, i64) = redis::pipe()
        .cmd("HGETALL")
        .arg(&key)
        .cmd("PTTL")
        .arg(&key)
        .query(conn)?;
    if fields.is_empty() {
        return Ok(None);
    }
    let text = |f: &str| String::from_utf8(fields.get(f).cloned().unwrap_or_default()).unwrap();
    let kind = text("kind");
    assert!(
        kind == "live" || kind == "tombstone",
        "{key}: bad kind {kind:?}: {fields:?}"
    );
    let expected = if kind == "live" { 5 } else { 3 };
    assert_eq!(fields.len(), expected, "{key}: fields {:?}", fields.keys());
    Ok(Some(StoredCopy {
        live: kind == "live",
        stamp: Stamp {
            generation: text("gen").parse().unwrap(),
            seq: text("seq").parse().unwrap(),
        },
        owner: text("owner"),
        pttl,
        payload: fields.get("payload").cloned().unwrap_or_default(),
    }))
}

/// Every copy of each of `ids` on the Redis servers at `addrs`: for each
/// id, the copies by server index (`None` where a server has none).
pub fn redis_copies_by_store(
    addrs: &[SocketAddr],
    ids: &[String],
) -> HashMap<String, Vec<Option<StoredCopy>>> {
    let per_server: Vec<HashMap<String, StoredCopy>> = addrs
        .iter()
        .map(|a| {
            let client = redis::Client::open(format!("redis://{a}/")).unwrap();
            let mut c = client
                .get_connection_with_timeout(Duration::from_secs(5))
                .unwrap_or_else(|e| panic!("connect to redis-server {a}: {e}"));
            ids.iter()
                .filter_map(|id| redis_copy(&mut c, id).map(|copy| (id.clone(), copy)))
                .collect()
        })
        .collect();
    copies_by_id(&per_server, ids)
}
