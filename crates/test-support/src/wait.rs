//! Deadlines and waiting for a condition: [`wait_until`] instead of fixed
//! sleeps.
//!
//! Timeouts are generous on purpose: tests run in parallel with each other
//! and with builds on a small, loaded machine.

use std::time::{Duration, Instant};

/// How long a process may take to start answering (a store's `PING`, a
/// backend's first request).
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(20);
/// Default deadline for a condition that should hold "soon".
pub const DEADLINE: Duration = Duration::from_secs(20);
/// Interval between two polls of [`wait_until`] and friends.
pub const POLL: Duration = Duration::from_millis(20);
/// Read/write timeout of the sockets opened by this crate: a bound on a
/// hung test, never a wait that a passing test sits through.
pub const IO_TIMEOUT: Duration = Duration::from_secs(20);

/// Polls `f` every [`POLL`] until it returns `true`; panics with `what` if it
/// has not within `deadline`.
pub fn wait_until(deadline: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    loop {
        if f() {
            return;
        }
        if start.elapsed() >= deadline {
            panic!("timed out after {deadline:?} waiting until {what}");
        }
        std::thread::sleep(POLL);
    }
}
