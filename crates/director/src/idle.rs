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
//! nothing here. Only the director's loops do this: in `sticky web` and
//! `sticky store`, where several processes and threads would each yield
//! to the others, the same hook cost CPU per request (`docs/director.md`).

use std::time::{Duration, Instant};

/// A yield that came back faster than this let nothing else do work: the
/// system call alone takes about a microsecond, and a switch to another
/// task that yields straight back (another loop like this one, on the same
/// CPU) and back again takes 3–6 µs here.
const RAN_NO_WORK: Duration = Duration::from_micros(10);

/// The most yields before one sleep, whatever they ran: two loops like
/// this one on one CPU cannot hand it to each other for long.
const MAX_YIELDS: u32 = 16;

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
    for yields in 1..=MAX_YIELDS {
        std::thread::yield_now();
        let after = Instant::now();
        if !keep_yielding(
            after.saturating_duration_since(before),
            after.saturating_duration_since(start),
            yields,
            limit,
        ) {
            return;
        }
        before = after;
    }
}

/// Whether to yield again after `yields` yields: the last one let
/// something else work, the loop has yielded for less than `limit`, and
/// fewer than [`MAX_YIELDS`] times.
fn keep_yielding(last_yield: Duration, so_far: Duration, yields: u32, limit: Duration) -> bool {
    last_yield >= RAN_NO_WORK && so_far < limit && yields < MAX_YIELDS
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(200);
    const US: fn(u64) -> Duration = Duration::from_micros;

    #[test]
    fn a_yield_that_let_nothing_work_ends_the_wait() {
        assert!(!keep_yielding(Duration::from_nanos(800), US(1), 1, LIMIT));
        // Another loop like this one yielding straight back.
        assert!(!keep_yielding(US(6), US(50), 3, LIMIT));
        assert!(!keep_yielding(
            Duration::from_nanos(9_999),
            US(50),
            3,
            LIMIT
        ));
    }

    #[test]
    fn while_others_work_it_yields_until_the_limit() {
        assert!(keep_yielding(US(10), US(10), 1, LIMIT));
        assert!(keep_yielding(US(40), US(199), 5, LIMIT));
        assert!(!keep_yielding(US(40), US(200), 5, LIMIT));
        assert!(!keep_yielding(US(5_000), US(5_000), 1, LIMIT));
    }

    #[test]
    fn never_more_than_max_yields() {
        assert!(keep_yielding(US(11), US(150), MAX_YIELDS - 1, LIMIT));
        assert!(!keep_yielding(US(11), US(150), MAX_YIELDS, LIMIT));
    }

    #[test]
    fn the_hook_returns_when_off_and_when_on() {
        // Generous bounds: on a loaded machine one yield may run other
        // tasks for a whole time slice (a few ms), but never for seconds.
        let t = Instant::now();
        before_sleep(Duration::ZERO)();
        assert!(t.elapsed() < Duration::from_secs(1));
        let t = Instant::now();
        before_sleep(LIMIT)();
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
