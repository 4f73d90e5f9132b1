//! The fencing stamp carried by every stored session copy.

use std::fmt;
use std::str::FromStr;

/// `(generation, seq)`, compared lexicographically.
///
/// `seq` grows with every write by the hosting web server; `generation`
/// grows at every change of host. A store never replaces a copy with one of
/// a lower or equal stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Stamp {
    /// Grows at every change of host.
    pub generation: u64,
    /// Grows with every write by the host.
    pub seq: u64,
}

impl Stamp {
    /// The stamp `(generation, seq)`.
    pub const fn new(generation: u64, seq: u64) -> Self {
        Self { generation, seq }
    }

    /// The stamp of the next write by the same host, or `None` on overflow.
    pub fn next_seq(self) -> Option<Self> {
        Some(Self::new(self.generation, self.seq.checked_add(1)?))
    }

    /// The stamp a new host claims a session with, or `None` on overflow.
    pub fn next_generation(self) -> Option<Self> {
        Some(Self::new(self.generation.checked_add(1)?, 0))
    }
}

impl fmt::Display for Stamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.generation, self.seq)
    }
}

/// Error parsing a [`Stamp`] from its `generation.seq` text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid stamp {0:?}: expected GENERATION.SEQ")]
pub struct ParseStampError(String);

impl FromStr for Stamp {
    type Err = ParseStampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseStampError(s.chars().take(64).collect());
        let (g, q) = s.split_once('.').ok_or_else(err)?;
        Ok(Self::new(
            g.parse().map_err(|_| err())?,
            q.parse().map_err(|_| err())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generation_dominates_seq() {
        assert!(Stamp::new(2, 0) > Stamp::new(1, 99));
        assert!(Stamp::new(1, 2) > Stamp::new(1, 1));
        assert_eq!(Stamp::new(1, 1), Stamp::new(1, 1));
    }

    #[test]
    fn next_stamps_are_higher() {
        let s = Stamp::new(3, 7);
        assert!(s.next_seq() > Some(s));
        assert!(s.next_generation() > Some(s));
        assert_eq!(Stamp::new(u64::MAX, u64::MAX).next_seq(), None);
    }

    proptest! {
        #[test]
        fn display_parse_round_trip(g: u64, q: u64) {
            let s = Stamp::new(g, q);
            prop_assert_eq!(s.to_string().parse::<Stamp>(), Ok(s));
        }

        #[test]
        fn order_is_lexicographic(a: (u64, u64), b: (u64, u64)) {
            prop_assert_eq!(Stamp::new(a.0, a.1).cmp(&Stamp::new(b.0, b.1)), a.cmp(&b));
        }
    }
}
