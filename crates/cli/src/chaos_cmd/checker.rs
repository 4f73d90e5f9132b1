//! The checker: a model of one virtual user's counter, fed with every
//! operation's outcome in order, that names what the cluster must never do.
//!
//! A user works alone on its session and one operation at a time, so the
//! counter's history is simple: every increment that was acknowledged
//! (`200` with the new value) happened, every increment whose outcome is
//! unknown (a timeout, a 5xx, a closed connection, a `409`) may or may not
//! have happened, and an increment that never reached the cluster (refused
//! connection to the director) did not. From that:
//!
//! - **lost write**: a value lower than the highest acknowledged one (for
//!   an increment, the value it started from, i.e. the answer minus one);
//! - **stale read**: a value lower than one seen before (but not lower than
//!   the acknowledged one): a write that had been visible disappeared, or a
//!   server served an old copy;
//! - **vanished session**: the session came back as new (`source: new`)
//!   after it had been used;
//! - **phantom write**: a value higher than the number of increments that
//!   may have happened (a write applied twice, or another session's data).

use serde::Serialize;

/// What the cluster did wrong, as seen by one operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AnomalyKind {
    LostWrite,
    StaleRead,
    VanishedSession,
    PhantomWrite,
}

impl AnomalyKind {
    pub(crate) const ALL: [AnomalyKind; 4] = [
        AnomalyKind::LostWrite,
        AnomalyKind::StaleRead,
        AnomalyKind::VanishedSession,
        AnomalyKind::PhantomWrite,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AnomalyKind::LostWrite => "lost write",
            AnomalyKind::StaleRead => "stale read",
            AnomalyKind::VanishedSession => "vanished session",
            AnomalyKind::PhantomWrite => "phantom write",
        }
    }
}

/// One anomaly: what was expected and what was seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Finding {
    pub(crate) kind: AnomalyKind,
    /// The value the operation saw (for an increment: the value before it).
    pub(crate) seen: u64,
    /// The highest acknowledged value before the operation.
    pub(crate) acked: u64,
    /// The highest value observed before the operation.
    pub(crate) observed: u64,
    /// Increments that may have happened before the operation.
    pub(crate) possible: u64,
    /// For a lost write: how many acknowledged increments are gone.
    pub(crate) lost: u64,
    /// For a lost write: the oldest lost value (`seen + 1`), whose
    /// acknowledgment time the caller can look up.
    pub(crate) oldest_lost: Option<u64>,
}

/// The outcome of one operation, as the checker needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A `2xx` answer carrying the counter's value and whether the
    /// session was new.
    Ok { value: u64, new_session: bool },
    /// Certainly not applied (the request never reached the cluster, or a
    /// `4xx` other than `409`).
    Failed,
    /// May or may not have been applied.
    Unknown,
}

/// One user's counter, as far as the operations so far tell.
#[derive(Debug, Default, Clone)]
pub(crate) struct Counter {
    /// Highest value an acknowledged increment answered.
    acked: u64,
    /// Highest value seen in any answer.
    observed: u64,
    /// Increments that were acknowledged or have an unknown outcome: the
    /// counter cannot exceed this.
    possible: u64,
    /// True once an increment was acknowledged: the session exists for
    /// sure (a read of a new session does not create it).
    used: bool,
}

impl Counter {
    /// Highest acknowledged value.
    #[cfg(test)]
    pub(crate) fn acked(&self) -> u64 {
        self.acked
    }

    /// Feeds one increment's outcome; returns what it shows wrong, if
    /// anything. After a vanished session the model starts over with the
    /// new session (which the server just created and incremented).
    pub(crate) fn increment(&mut self, outcome: Outcome) -> Option<Finding> {
        match outcome {
            Outcome::Failed => None,
            Outcome::Unknown => {
                self.possible += 1;
                None
            }
            Outcome::Ok { value, new_session } => {
                self.possible += 1;
                let before = value.saturating_sub(1);
                let finding = self.check(before, new_session, 1);
                if finding
                    .as_ref()
                    .is_some_and(|f| f.kind == AnomalyKind::VanishedSession)
                {
                    *self = Counter::default();
                    self.possible = 1;
                }
                self.rebase(finding.as_ref(), before);
                self.acked = self.acked.max(value);
                self.observed = self.observed.max(value);
                self.used = true;
                finding
            }
        }
    }

    /// Feeds one read's outcome.
    pub(crate) fn read(&mut self, outcome: Outcome) -> Option<Finding> {
        match outcome {
            Outcome::Failed | Outcome::Unknown => None,
            Outcome::Ok { value, new_session } => {
                let finding = self.check(value, new_session, 0);
                if finding
                    .as_ref()
                    .is_some_and(|f| f.kind == AnomalyKind::VanishedSession)
                {
                    *self = Counter::default();
                }
                self.rebase(finding.as_ref(), value);
                self.observed = self.observed.max(value);
                finding
            }
        }
    }

    /// After a lost write or stale read, what the cluster holds now is the
    /// baseline: the same loss is reported once, and later ones anew.
    fn rebase(&mut self, finding: Option<&Finding>, seen: u64) {
        if finding
            .is_some_and(|f| matches!(f.kind, AnomalyKind::LostWrite | AnomalyKind::StaleRead))
        {
            self.acked = seen;
            self.observed = seen;
        }
    }

    /// `seen`: the value before the operation; `this`: increments the
    /// operation itself counts in `possible` already.
    fn check(&self, seen: u64, new_session: bool, this: u64) -> Option<Finding> {
        let finding = |kind, lost: u64| Finding {
            kind,
            seen,
            acked: self.acked,
            observed: self.observed,
            possible: self.possible - this,
            lost,
            oldest_lost: (lost > 0).then_some(seen + 1),
        };
        if new_session && self.used {
            return Some(finding(AnomalyKind::VanishedSession, self.acked));
        }
        if seen < self.acked {
            return Some(finding(AnomalyKind::LostWrite, self.acked - seen));
        }
        if seen < self.observed {
            return Some(finding(AnomalyKind::StaleRead, 0));
        }
        if seen > self.possible - this {
            return Some(finding(AnomalyKind::PhantomWrite, 0));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(value: u64) -> Outcome {
        Outcome::Ok {
            value,
            new_session: false,
        }
    }

    fn kinds(c: &mut Counter, ops: &[(char, Outcome)]) -> Vec<Option<AnomalyKind>> {
        ops.iter()
            .map(|(op, o)| {
                let f = if *op == 'i' {
                    c.increment(*o)
                } else {
                    c.read(*o)
                };
                f.map(|f| f.kind)
            })
            .collect()
    }

    #[test]
    fn a_clean_history_has_no_finding() {
        let mut c = Counter::default();
        let got = kinds(
            &mut c,
            &[
                ('i', ok(1)),
                ('r', ok(1)),
                ('i', ok(2)),
                ('i', Outcome::Failed),
                ('r', ok(2)),
                ('i', ok(3)),
            ],
        );
        assert!(got.iter().all(Option::is_none), "{got:?}");
        assert_eq!(c.acked(), 3);
    }

    #[test]
    fn unknown_increments_may_or_may_not_show() {
        for shown in [2, 3] {
            let mut c = Counter::default();
            let got = kinds(
                &mut c,
                &[
                    ('i', ok(1)),
                    ('i', Outcome::Unknown),
                    ('i', Outcome::Unknown),
                    ('r', ok(shown)),
                ],
            );
            assert!(got.iter().all(Option::is_none), "{shown}: {got:?}");
        }
        // Nor is it an anomaly if neither applied.
        let mut c = Counter::default();
        let got = kinds(
            &mut c,
            &[('i', ok(1)), ('i', Outcome::Unknown), ('r', ok(1))],
        );
        assert!(got.iter().all(Option::is_none), "{got:?}");
    }

    #[test]
    fn a_value_below_an_acknowledged_one_is_a_lost_write() {
        let mut c = Counter::default();
        let _ = kinds(&mut c, &[('i', ok(1)), ('i', ok(2)), ('i', ok(3))]);
        let f = c.read(ok(1)).map(|f| (f.kind, f.lost, f.oldest_lost));
        assert_eq!(f, Some((AnomalyKind::LostWrite, 2, Some(2))));
        // An increment that starts from an old value lost writes too.
        let mut c = Counter::default();
        let _ = kinds(&mut c, &[('i', ok(1)), ('i', ok(2))]);
        let f = c.increment(ok(2)).map(|f| (f.kind, f.lost));
        assert_eq!(f, Some((AnomalyKind::LostWrite, 1)));
    }

    #[test]
    fn a_loss_is_reported_once_and_the_next_one_again() {
        let mut c = Counter::default();
        let got = kinds(
            &mut c,
            &[
                ('i', ok(1)),
                ('i', ok(2)),
                ('i', ok(3)),
                ('r', ok(1)),
                ('r', ok(1)),
                ('i', ok(2)),
                ('r', ok(2)),
                ('r', ok(1)),
            ],
        );
        assert_eq!(
            got,
            vec![
                None,
                None,
                None,
                Some(AnomalyKind::LostWrite),
                None,
                None,
                None,
                Some(AnomalyKind::LostWrite)
            ]
        );
    }

    #[test]
    fn an_unknown_write_seen_then_gone_is_a_stale_read() {
        let mut c = Counter::default();
        let got = kinds(
            &mut c,
            &[
                ('i', ok(1)),
                ('i', Outcome::Unknown),
                ('r', ok(2)),
                ('r', ok(1)),
            ],
        );
        assert_eq!(got, vec![None, None, None, Some(AnomalyKind::StaleRead)]);
    }

    #[test]
    fn more_than_was_written_is_a_phantom() {
        let mut c = Counter::default();
        let got = kinds(&mut c, &[('i', ok(1)), ('r', ok(2))]);
        assert_eq!(got, vec![None, Some(AnomalyKind::PhantomWrite)]);
        let mut c = Counter::default();
        let got = kinds(&mut c, &[('i', ok(1)), ('i', ok(3))]);
        assert_eq!(got, vec![None, Some(AnomalyKind::PhantomWrite)]);
    }

    #[test]
    fn a_new_session_after_use_vanished_and_the_model_restarts() {
        let mut c = Counter::default();
        let got = kinds(
            &mut c,
            &[
                ('i', ok(1)),
                ('i', ok(2)),
                (
                    'i',
                    Outcome::Ok {
                        value: 1,
                        new_session: true,
                    },
                ),
                ('i', ok(2)),
                ('r', ok(2)),
            ],
        );
        assert_eq!(
            got,
            vec![None, None, Some(AnomalyKind::VanishedSession), None, None]
        );
        // A first read that finds a new session is fine.
        let mut c = Counter::default();
        assert_eq!(
            c.read(Outcome::Ok {
                value: 0,
                new_session: true
            }),
            None
        );
    }
}
