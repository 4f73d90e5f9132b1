//! Placement: which stores hold a session.
//!
//! Rendezvous (highest-random-weight) hashing ([`sticky_proto::rendezvous`]):
//! every store gets a score for the session id, and the session's replicas
//! are the first R *live* stores in descending score order. Every web server computes the same answer
//! from the same names, a store's failure moves only the sessions it held,
//! and its return moves them back.

use sticky_proto::rendezvous;

use crate::id::SessionId;

/// FNV-1a of a store name.
pub(crate) use rendezvous::name_hash;

/// Store indexes in descending score order for `id`.
pub(crate) fn ranked(id: &SessionId, store_hashes: &[u64]) -> Vec<usize> {
    let key = id.prefix_u64();
    rendezvous::ranked(
        store_hashes
            .iter()
            .map(|&h| rendezvous::mixed_score(key, h)),
    )
}

/// The first `replicas` stores for `id` among those `live` says are up,
/// as a bit set over store indexes (at most 64 stores).
pub(crate) fn replicas(id: &SessionId, store_hashes: &[u64], live: u64, replicas: usize) -> u64 {
    ranked(id, store_hashes)
        .into_iter()
        .filter(|&i| live & (1 << i) != 0)
        .take(replicas)
        .fold(0, |set, i| set | (1 << i))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn hashes() -> Vec<u64> {
        ["s1", "s2", "s3"].iter().map(name_hash).collect()
    }

    #[test]
    fn r1_is_a_partition_and_r2_picks_two() {
        let h = hashes();
        let mut counts = [0usize; 3];
        for _ in 0..3000 {
            let id = SessionId::generate().unwrap();
            let one = replicas(&id, &h, 0b111, 1);
            assert_eq!(one.count_ones(), 1);
            counts[one.trailing_zeros() as usize] += 1;
            let two = replicas(&id, &h, 0b111, 2);
            assert_eq!(two.count_ones(), 2);
            assert_eq!(two & one, one, "the R=1 store is the first of the R=2 pair");
        }
        for c in counts {
            assert!((800..1200).contains(&c), "uneven spread {counts:?}");
        }
    }

    #[test]
    fn a_failed_store_moves_only_its_sessions() {
        let h = hashes();
        for _ in 0..1000 {
            let id = SessionId::generate().unwrap();
            let before = replicas(&id, &h, 0b111, 2);
            let after = replicas(&id, &h, 0b101, 2);
            if before & 0b010 == 0 {
                assert_eq!(before, after, "untouched by s2's failure");
            } else {
                assert_eq!(
                    after & before,
                    before & 0b101,
                    "the surviving replica stays"
                );
                assert_eq!(after.count_ones(), 2);
            }
        }
    }
}
