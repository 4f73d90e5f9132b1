//! Session checks shared by the tests on either store backend: sessions
//! created with known values ([`create_sessions`]), which stores hold the
//! acknowledged versions ([`holders`]), nothing written behind a client's
//! back ([`assert_no_newer_copy`]). Each reads the copies the way its
//! [`StoreBackend`] lays them out.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::backend::StoreBackend;
use crate::copies::Acked;
use crate::demo::Browser;

/// `n` new sessions on `web`, the i-th incremented `1 + i % 3` times:
/// the browsers and each session's last acknowledged (value, stamp).
pub fn create_sessions(web: SocketAddr, n: usize) -> (Vec<Browser>, Acked) {
    let mut browsers = Vec::new();
    let mut acked = HashMap::new();
    for i in 0..n {
        let mut b = Browser::new();
        let mut last = None;
        for v in 1..=1 + i as u64 % 3 {
            let a = b.increment(web);
            assert_eq!(a.value, v, "{a:?}");
            last = Some(a);
        }
        let last = last.unwrap();
        acked.insert(b.id(), (last.value, last.stamp));
        browsers.push(b);
    }
    (browsers, acked)
}

/// For each session, the indexes of the servers (among `addrs`, on
/// `backend`) holding a live copy with exactly the acknowledged stamp and
/// value.
pub fn holders(
    addrs: &[SocketAddr],
    acked: &Acked,
    backend: StoreBackend,
) -> HashMap<String, Vec<usize>> {
    let ids: Vec<String> = acked.keys().cloned().collect();
    let copies = backend.copies(addrs, &ids);
    ids.iter()
        .map(|id| {
            let (value, stamp) = acked[id];
            let on = copies[id]
                .iter()
                .enumerate()
                .filter_map(|(i, c)| {
                    let c = c.as_ref()?;
                    (c.live && c.stamp == stamp && c.counter() == value).then_some(i)
                })
                .collect();
            (id.clone(), on)
        })
        .collect()
}

/// No server (among `addrs`, on `backend`) holds a copy newer than the
/// acknowledged one (nothing was written behind the client's back), nor a
/// tombstone.
pub fn assert_no_newer_copy(addrs: &[SocketAddr], acked: &Acked, backend: StoreBackend) {
    let ids: Vec<String> = acked.keys().cloned().collect();
    for (id, copies) in backend.copies(addrs, &ids) {
        for c in copies.iter().flatten() {
            assert!(
                c.live && c.stamp <= acked[&id].1,
                "unexpected copy of {id}: {c:?}"
            );
        }
    }
}
