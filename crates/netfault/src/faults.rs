//! Which links are faulted, as two layers: what the caller asked for
//! (cuts, isolations, slow links, lossy links, each healable on its own)
//! and what is installed in the kernel (per directed pair of endpoints: a
//! drop filter, a loss filter, a slow class). [`Faults::reconcile`] turns the difference into
//! [`TcOp`]s, so overlapping faults compose: a link cut by `cut(a, b)` and
//! by `isolate(a)` stays cut until both are healed.
//!
//! Endpoints are indices (0 is the root namespace); this module runs no
//! command, so its logic is tested without root.

use std::collections::{BTreeMap, BTreeSet};

/// A directed pair of endpoints: packets from `.0` to `.1`.
pub(super) type Pair = (usize, usize);

/// A slow link: packets queue in a `pfifo` of `queue` packets drained at
/// `rate_bits` bits per second; what does not fit is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slow {
    /// Bits per second.
    pub rate_bits: u64,
    /// Packets the queue holds before it drops.
    pub queue: u32,
}

/// One change to the kernel's state, for the directed pair it names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TcOp {
    /// Drop every packet of the pair.
    AddDrop(Pair),
    /// Stop dropping them.
    DelDrop(Pair),
    /// Shape the pair's packets.
    AddSlow(Pair, Slow),
    /// Stop shaping them.
    DelSlow(Pair),
    /// Drop one in this many of the pair's packets.
    AddLoss(Pair, u16),
    /// Stop it.
    DelLoss(Pair),
}

impl TcOp {
    /// The pair it acts on.
    pub(super) fn pair(self) -> Pair {
        match self {
            TcOp::AddDrop(p)
            | TcOp::DelDrop(p)
            | TcOp::AddSlow(p, _)
            | TcOp::DelSlow(p)
            | TcOp::AddLoss(p, _)
            | TcOp::DelLoss(p) => p,
        }
    }
}

/// What was asked for and what is installed.
#[derive(Debug, Default)]
pub(super) struct Faults {
    cuts: BTreeSet<Pair>,
    isolated: BTreeSet<usize>,
    slows: BTreeMap<Pair, Slow>,
    losses: BTreeMap<Pair, u16>,
    installed_drops: BTreeSet<Pair>,
    installed_slows: BTreeMap<Pair, Slow>,
    installed_losses: BTreeMap<Pair, u16>,
}

impl Faults {
    /// Cuts the pair (one direction).
    pub(super) fn cut(&mut self, pair: Pair) {
        self.cuts.insert(pair);
    }

    /// Cuts `e` off from every other endpoint, both directions.
    pub(super) fn isolate(&mut self, e: usize) {
        self.isolated.insert(e);
    }

    /// Slows the pair (one direction); replaces an earlier slow link.
    pub(super) fn slow(&mut self, pair: Pair, slow: Slow) {
        self.slows.insert(pair, slow);
    }

    /// Makes the pair lose one packet in `one_in`; replaces an earlier
    /// loss.
    pub(super) fn lose(&mut self, pair: Pair, one_in: u16) {
        self.losses.insert(pair, one_in);
    }

    /// Heals the cut, the slow link and the loss of the pair (not an
    /// isolation).
    pub(super) fn heal_pair(&mut self, pair: Pair) {
        self.cuts.remove(&pair);
        self.slows.remove(&pair);
        self.losses.remove(&pair);
    }

    /// Ends the isolation of `e` (its cuts and slow links stay).
    pub(super) fn heal_isolation(&mut self, e: usize) {
        self.isolated.remove(&e);
    }

    /// Forgets every fault asked for.
    pub(super) fn heal_all(&mut self) {
        self.cuts.clear();
        self.isolated.clear();
        self.slows.clear();
        self.losses.clear();
    }

    /// Whether no fault is asked for or installed.
    pub(super) fn is_clear(&self) -> bool {
        self.cuts.is_empty()
            && self.isolated.is_empty()
            && self.slows.is_empty()
            && self.losses.is_empty()
            && self.installed_drops.is_empty()
            && self.installed_slows.is_empty()
            && self.installed_losses.is_empty()
    }

    /// Whether the pair's packets are to be dropped.
    pub(super) fn dropped(&self, (from, to): Pair) -> bool {
        from != to
            && (self.cuts.contains(&(from, to))
                || self.isolated.contains(&from)
                || self.isolated.contains(&to))
    }

    /// The operations that make the installed state what was asked for,
    /// among `endpoints` endpoints: drops first, so a link being cut is
    /// never briefly left open, then slow and lossy links. Each is to be applied in
    /// order and then reported with [`Faults::applied`].
    pub(super) fn reconcile(&self, endpoints: usize) -> Vec<TcOp> {
        let mut ops = Vec::new();
        for from in 0..endpoints {
            for to in 0..endpoints {
                let pair = (from, to);
                let want = self.dropped(pair);
                let have = self.installed_drops.contains(&pair);
                if want && !have {
                    ops.push(TcOp::AddDrop(pair));
                }
            }
        }
        for (&pair, &have) in &self.installed_slows {
            if self.slows.get(&pair) != Some(&have) {
                ops.push(TcOp::DelSlow(pair));
            }
        }
        for (&pair, &want) in &self.slows {
            if self.installed_slows.get(&pair) != Some(&want) {
                ops.push(TcOp::AddSlow(pair, want));
            }
        }
        for (&pair, &have) in &self.installed_losses {
            if self.losses.get(&pair) != Some(&have) {
                ops.push(TcOp::DelLoss(pair));
            }
        }
        for (&pair, &want) in &self.losses {
            if self.installed_losses.get(&pair) != Some(&want) {
                ops.push(TcOp::AddLoss(pair, want));
            }
        }
        for &pair in &self.installed_drops {
            if !self.dropped(pair) {
                ops.push(TcOp::DelDrop(pair));
            }
        }
        ops
    }

    /// Records that `op` is now in the kernel.
    pub(super) fn applied(&mut self, op: TcOp) {
        match op {
            TcOp::AddDrop(pair) => {
                self.installed_drops.insert(pair);
            }
            TcOp::DelDrop(pair) => {
                self.installed_drops.remove(&pair);
            }
            TcOp::AddSlow(pair, slow) => {
                self.installed_slows.insert(pair, slow);
            }
            TcOp::DelSlow(pair) => {
                self.installed_slows.remove(&pair);
            }
            TcOp::AddLoss(pair, one_in) => {
                self.installed_losses.insert(pair, one_in);
            }
            TcOp::DelLoss(pair) => {
                self.installed_losses.remove(&pair);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    /// Applies every pending operation, returning them.
    fn settle(f: &mut Faults, n: usize) -> Vec<TcOp> {
        let ops = f.reconcile(n);
        for &op in &ops {
            f.applied(op);
        }
        assert!(f.reconcile(n).is_empty(), "settled state has nothing to do");
        ops
    }

    #[test]
    fn a_cut_is_one_filter_and_cutting_again_changes_nothing() {
        let mut f = Faults::default();
        f.cut((1, 2));
        assert_eq!(settle(&mut f, 3), vec![TcOp::AddDrop((1, 2))]);
        f.cut((1, 2));
        assert_eq!(settle(&mut f, 3), vec![]);
        f.heal_pair((1, 2));
        assert_eq!(settle(&mut f, 3), vec![TcOp::DelDrop((1, 2))]);
        f.heal_pair((1, 2));
        assert_eq!(settle(&mut f, 3), vec![]);
    }

    #[test]
    fn isolation_cuts_every_pair_of_the_endpoint_including_the_root() {
        let mut f = Faults::default();
        f.isolate(2);
        let ops = settle(&mut f, 4);
        let mut pairs: Vec<Pair> = ops
            .iter()
            .map(|op| match op {
                TcOp::AddDrop(p) => *p,
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        pairs.sort_unstable();
        assert_eq!(pairs, vec![(0, 2), (1, 2), (2, 0), (2, 1), (2, 3), (3, 2)]);
    }

    #[test]
    fn overlapping_faults_are_healed_independently() {
        let mut f = Faults::default();
        f.cut((1, 2));
        f.isolate(1);
        settle(&mut f, 3);
        // Ending the isolation keeps the cut 1 -> 2.
        f.heal_isolation(1);
        let mut ops = settle(&mut f, 3);
        ops.sort_by_key(|op| format!("{op:?}"));
        assert_eq!(
            ops,
            vec![
                TcOp::DelDrop((0, 1)),
                TcOp::DelDrop((1, 0)),
                TcOp::DelDrop((2, 1)),
            ]
        );
        assert!(f.dropped((1, 2)));
        // And healing the cut while isolated keeps the isolation.
        f.isolate(1);
        settle(&mut f, 3);
        f.heal_pair((1, 2));
        assert_eq!(settle(&mut f, 3), vec![]);
        assert!(f.dropped((1, 2)));
        f.heal_all();
        assert_eq!(settle(&mut f, 3).len(), 4);
    }

    #[test]
    fn a_changed_slow_link_is_replaced_and_an_unchanged_one_kept() {
        let mut f = Faults::default();
        let slow = Slow {
            rate_bits: 1_000_000,
            queue: 10,
        };
        f.slow((0, 1), slow);
        assert_eq!(settle(&mut f, 2), vec![TcOp::AddSlow((0, 1), slow)]);
        f.slow((0, 1), slow);
        assert_eq!(settle(&mut f, 2), vec![]);
        let slower = Slow {
            rate_bits: 100_000,
            ..slow
        };
        f.slow((0, 1), slower);
        assert_eq!(
            settle(&mut f, 2),
            vec![TcOp::DelSlow((0, 1)), TcOp::AddSlow((0, 1), slower)]
        );
        f.heal_all();
        assert_eq!(settle(&mut f, 2), vec![TcOp::DelSlow((0, 1))]);
    }

    #[test]
    fn a_loss_is_kept_replaced_and_healed_with_its_pair() {
        let mut f = Faults::default();
        f.lose((1, 0), 16);
        assert_eq!(settle(&mut f, 2), vec![TcOp::AddLoss((1, 0), 16)]);
        f.lose((1, 0), 16);
        assert_eq!(settle(&mut f, 2), vec![]);
        f.lose((1, 0), 4);
        assert_eq!(
            settle(&mut f, 2),
            vec![TcOp::DelLoss((1, 0)), TcOp::AddLoss((1, 0), 4)]
        );
        f.heal_pair((0, 1));
        assert_eq!(settle(&mut f, 2), vec![], "the other direction");
        f.heal_pair((1, 0));
        assert_eq!(settle(&mut f, 2), vec![TcOp::DelLoss((1, 0))]);
    }

    #[test]
    fn a_failed_operation_is_retried_by_the_next_reconcile() {
        let mut f = Faults::default();
        f.cut((0, 1));
        f.cut((1, 0));
        let ops = f.reconcile(2);
        assert_eq!(ops.len(), 2);
        // Only the first made it into the kernel.
        f.applied(ops[0]);
        assert_eq!(f.reconcile(2), vec![ops[1]]);
    }
}
