//! [`Problem`]: one thing wrong with a cluster file, with its field and
//! what to do.

use std::fmt;

/// One thing wrong with a cluster file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `replicas`, `[director] fall`, `[[store]] s2 url`...
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl Problem {
    pub(crate) fn new(field: &str, message: String, fix: &str) -> Self {
        Self {
            field: field.to_owned(),
            message,
            fix: fix.to_owned(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (fix: {})", self.field, self.message, self.fix)
    }
}
