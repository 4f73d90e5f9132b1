//! Rendezvous (highest-random-weight) hashing: the one rule behind session
//! placement over stores (`sticky-session`'s `placement`) and the
//! director's choice of a web server for a moved client (its `routing`).
//!
//! Every candidate gets a score for the key from a stable hash of the key
//! and the candidate's name; the key goes to the highest score, and its
//! replicas are the first R candidates in descending order ([`ranked`],
//! [`best`]). Every process computes the same answer from the same names,
//! removing a candidate moves only the keys it held, and its return moves
//! them back.
//!
//! Two scores, both pinned by tests because their outputs are shared
//! across processes and versions (where stored sessions live, where every
//! director sends a moved client):
//!
//! - [`mixed_score`] of a 64-bit key and a [`name_hash`]: cheap, for keys
//!   nobody chooses (a random session id's first bytes).
//! - [`weighted_score`] of a [`sha256_hash`]: for keys a client chooses
//!   (cookie values, addresses), which it must not be able to aim, with a
//!   weight per candidate.

use sha2::{Digest, Sha256};

/// Positions of `scores` (one per candidate, in candidate order), highest
/// score first. Equal scores put the later position first.
pub fn ranked<S: PartialOrd>(scores: impl IntoIterator<Item = S>) -> Vec<usize> {
    let mut order: Vec<(S, usize)> = scores.into_iter().zip(0..).collect();
    order.sort_unstable_by(|a, b| {
        b.0.partial_cmp(&a.0)
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(b.1.cmp(&a.1))
    });
    order.into_iter().map(|(_, i)| i).collect()
}

/// The position of the highest of `scores`: the first of [`ranked`],
/// without ranking the rest. `None` when there is no candidate.
pub fn best<S: PartialOrd>(scores: impl IntoIterator<Item = S>) -> Option<usize> {
    let mut best: Option<(S, usize)> = None;
    for (score, i) in scores.into_iter().zip(0..) {
        // `>=`: on equal scores the later position wins, as in `ranked`.
        if best.as_ref().is_none_or(|(b, _)| score >= *b) {
            best = Some((score, i));
        }
    }
    best.map(|(_, i)| i)
}

/// FNV-1a of a candidate's name, computed once per candidate for
/// [`mixed_score`].
pub fn name_hash(name: impl AsRef<[u8]>) -> u64 {
    name.as_ref().iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The score of a 64-bit `key` for the candidate whose [`name_hash`] is
/// `name_hash`: the SplitMix64 finalizer of `key ^ name_hash`, stable
/// across versions and processes, unlike the std hashers. It is a
/// bijection of `key ^ name_hash`, so two candidates tie only if their
/// name hashes are equal.
pub fn mixed_score(key: u64, name_hash: u64) -> u64 {
    let mut z = key ^ name_hash;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The first 8 bytes of SHA-256(key ‖ 0xff ‖ name): stable across
/// processes, builds and platforms (unlike `RandomState` or
/// `DefaultHasher`).
pub fn sha256_hash(key: &[u8], name: &[u8]) -> u64 {
    let mut h = Sha256::new();
    h.update(key);
    h.update([0xff]);
    h.update(name);
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(first)
}

/// Weighted rendezvous score `w / -ln(u)` with `u` in (0, 1) from the hash.
/// For equal weights the order is that of the hashes.
pub fn weighted_score(hash: u64, weight: u32) -> f64 {
    // 53 significant bits; +0.5 keeps u strictly inside (0, 1).
    let u = ((hash >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The director's score of one candidate: weighted, ties broken by
    /// the hash (as `routing` calls it).
    fn director_score(key: &[u8], name: &str, weight: u32) -> (f64, u64) {
        let h = sha256_hash(key, name.as_bytes());
        (weighted_score(h, weight.max(1)), h)
    }

    #[test]
    fn hashes_are_pinned() {
        // A change here would move stored sessions to other stores and
        // make directors of different versions disagree on where moved
        // clients go.
        assert_eq!(sha256_hash(b"key", b"ws1"), 0x6476_dbbb_0ae3_45b9);
        assert_ne!(sha256_hash(b"key", b"ws1"), sha256_hash(b"key", b"ws2"));
        assert_ne!(sha256_hash(b"ke", b"yws1"), sha256_hash(b"key", b"ws1"));
        let names = ["s1", "s2", "s3", "s4", "s5"].map(name_hash);
        assert_eq!(
            names,
            [
                0x08d8_ff07_b578_d149,
                0x08d8_fc07_b578_cc30,
                0x08d8_fd07_b578_cde3,
                0x08d9_0207_b578_d662,
                0x08d9_0307_b578_d815,
            ]
        );
    }

    /// Regression vector: the store order of session placement for sample
    /// keys over stores s1..s5, computed with `placement::ranked` before
    /// the two rendezvous copies became this module.
    #[test]
    fn placement_order_is_unchanged() {
        let names = ["s1", "s2", "s3", "s4", "s5"].map(name_hash);
        let expected: [(u64, [usize; 5]); 8] = [
            (0, [3, 2, 1, 0, 4]),
            (1, [4, 0, 3, 1, 2]),
            (42, [3, 4, 2, 0, 1]),
            (u64::MAX, [1, 3, 0, 4, 2]),
            (0x0123_4567_89ab_cdef, [0, 2, 1, 3, 4]),
            (0xdead_beef_cafe_f00d, [0, 4, 3, 1, 2]),
            (0x8000_0000_0000_0000, [0, 4, 2, 3, 1]),
            (0x5555_5555_5555_5555, [4, 2, 0, 1, 3]),
        ];
        for (key, order) in expected {
            let got = ranked(names.iter().map(|&h| mixed_score(key, h)));
            assert_eq!(got, order, "key {key:#x}");
        }
    }

    /// Regression vector: the web server the director picked for a moved
    /// client, for sample keys over ws1..ws5 (weights 1, 1, 2, 3, 0) and
    /// two subsets, computed with `routing`'s `Table::rendezvous` before
    /// the two rendezvous copies became this module.
    #[test]
    fn director_choice_is_unchanged() {
        let servers = [("ws1", 1), ("ws2", 1), ("ws3", 2), ("ws4", 3), ("ws5", 0)];
        let pick = |candidates: &[usize], key: &[u8]| {
            best(candidates.iter().map(|&i| {
                let (name, weight) = servers[i];
                director_score(key, name, weight)
            }))
            .map(|p| candidates[p])
        };
        let expected: [(&[u8], usize, usize, usize); 8] = [
            (b"", 3, 0, 0),
            (b"key", 1, 1, 2),
            (b"10.0.0.1", 4, 1, 4),
            (b"127.0.0.1", 3, 0, 0),
            (b"::1", 2, 1, 2),
            (b"sess-0001", 4, 0, 4),
            (b"a-route-cookie-value", 3, 0, 0),
            (b"\xff\x00\x01", 1, 1, 2),
        ];
        for (key, all, first_two, odd) in expected {
            assert_eq!(pick(&[0, 1, 2, 3, 4], key), Some(all), "{key:?}");
            assert_eq!(pick(&[0, 1], key), Some(first_two), "{key:?}");
            assert_eq!(pick(&[0, 2, 4], key), Some(odd), "{key:?}");
        }
        assert_eq!(pick(&[], b"key"), None);
    }

    #[test]
    fn ties_go_to_the_later_position() {
        assert_eq!(ranked([5, 7, 7, 1]), [2, 1, 0, 3]);
        assert_eq!(best([5, 7, 7, 1]), Some(2));
        assert_eq!(best(Vec::<u64>::new()), None);
    }

    proptest! {
        #[test]
        fn best_is_the_first_of_ranked(scores in proptest::collection::vec(0u64..8, 0..12)) {
            let order = ranked(scores.iter().copied());
            let mut sorted = order.clone();
            sorted.sort_unstable();
            prop_assert_eq!(sorted, (0..scores.len()).collect::<Vec<_>>());
            prop_assert_eq!(best(scores.iter().copied()), order.first().copied());
        }

        #[test]
        fn removing_a_candidate_moves_only_its_keys(
            key in any::<u64>(),
            sha_key in proptest::collection::vec(any::<u8>(), 0..24),
            gone in 0usize..5,
        ) {
            let names = ["s1", "s2", "s3", "s4", "s5"];
            let hashes = names.map(name_hash);
            let order = ranked(hashes.iter().map(|&h| mixed_score(key, h)));
            let left: Vec<usize> = (0..5).filter(|&i| i != gone).collect();
            let after: Vec<usize> = ranked(left.iter().map(|&i| mixed_score(key, hashes[i])))
                .into_iter()
                .map(|p| left[p])
                .collect();
            let before: Vec<usize> = order.into_iter().filter(|&i| i != gone).collect();
            prop_assert_eq!(after, before, "the others keep their order");

            let weights = [1, 1, 2, 3, 1];
            let all = best((0..5).map(|i| director_score(&sha_key, names[i], weights[i])));
            let rest = best(left.iter().map(|&i| director_score(&sha_key, names[i], weights[i])))
                .map(|p| left[p]);
            if all != Some(gone) {
                prop_assert_eq!(rest, all, "a key not on the removed candidate stays");
            }
        }
    }
}
