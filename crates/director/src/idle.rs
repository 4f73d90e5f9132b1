//! What an event loop does when it runs out of work, before it sleeps:
//! it hands its CPU to whatever else is waiting to run there, for a
//! bounded time, and sleeps only once nothing else wants that CPU or the
//! time is up.
//!
//! Why: on a machine whose cores the director shares with its web
//! servers (or anything else busy), sleeping the moment the run queue
//! empties hurts the processes it waits for. Linux's scheduler (EEVDF,
//! 6.6 and later) keeps a task's *lag*, the CPU time it was owed, across
//! a sleep. A loaded event loop that sleeps for a few hundred
//! microseconds wakes owed time, preempts whoever runs on its CPU, and
//! keeps that CPU for up to two slices (2.8 ms here) while a web server
//! woken onto the same CPU by the director's own request waits behind it.
//! Every request in flight to that web server then waits too. Yielding
//! instead of sleeping lets the waiting processes run first while the
//! loop stays runnable; when their answers arrive, the loop finds them
//! without having slept. `docs/director.md`, "Before an event loop
//! sleeps", has the measurements (`perf sched`, and the HTTP/2 p99 against
//! HAProxy going from 1.20x to parity).
//!
//! When nothing else is runnable on the CPU, a yield comes straight back
//! and the loop sleeps at once: an idle or lightly loaded director spends
//! nothing here.

use std::time::{Duration, Instant};

/// A yield that came back faster than this ran nothing else (the system
/// call alone takes about a microsecond; switching to another task and
/// back takes several).
const RAN_NOTHING: Duration = Duration::from_micros(3);

/// The hook for tokio's `on_thread_park`: yields the CPU while others
/// want it, for at most `limit`. A zero `limit` turns it off.
pub(crate) fn before_sleep(limit: Duration) -> impl Fn() + Send + Sync + 'static {
    move || yield_while_others_run(limit)
}

fn yield_while_others_run(limit: Duration) {
    if limit.is_zero() {
        return;
    }
    let start = Instant::now();
    let mut before = start;
    // Bounded: every round but the last took at least `RAN_NOTHING`, so
    // there are at most `limit / RAN_NOTHING + 1` of them.
    loop {
        std::thread::yield_now();
        let after = Instant::now();
        if !keep_yielding(
            after.saturating_duration_since(before),
            after.saturating_duration_since(start),
            limit,
        ) {
            return;
        }
        before = after;
    }
}

/// Whether to yield again: the last yield ran something else, and the
/// loop has yielded for less than `limit`.
fn keep_yielding(last_yield: Duration, so_far: Duration, limit: Duration) -> bool {
    last_yield >= RAN_NOTHING && so_far < limit
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(200);

    #[test]
    fn a_yield_that_ran_nothing_ends_the_wait() {
        assert!(!keep_yielding(
            Duration::from_nanos(800),
            Duration::from_micros(1),
            LIMIT
        ));
        assert!(!keep_yielding(
            Duration::from_nanos(2_999),
            Duration::from_micros(50),
            LIMIT
        ));
    }

    #[test]
    fn while_others_run_it_yields_until_the_limit() {
        assert!(keep_yielding(
            Duration::from_micros(3),
            Duration::from_micros(3),
            LIMIT
        ));
        assert!(keep_yielding(
            Duration::from_micros(40),
            Duration::from_micros(199),
            LIMIT
        ));
        assert!(!keep_yielding(
            Duration::from_micros(40),
            Duration::from_micros(200),
            LIMIT
        ));
        assert!(!keep_yielding(
            Duration::from_millis(5),
            Duration::from_millis(5),
            LIMIT
        ));
    }

    #[test]
    fn the_hook_returns_when_off_and_when_on() {
        // Off: returns at once, whatever else runs.
        let t = Instant::now();
        before_sleep(Duration::ZERO)();
        // Generous bounds: on a loaded machine one yield may run other
        // tasks for a whole time slice (a few ms), but never for seconds.
        assert!(t.elapsed() < Duration::from_secs(1));
        let t = Instant::now();
        before_sleep(LIMIT)();
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
