//! Which worker thread runs the caller: each of
//! [`Director::run`](crate::Director::run)'s threads is its own event loop,
//! and a web server's pooled connections are kept per worker
//! (`Backend::pool`), since a connection is only ever used by the event
//! loop that drives it.

use std::cell::Cell;

thread_local! {
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// The index of the worker thread running the caller (0 outside
/// [`Director::run`](crate::Director::run)'s extra threads).
pub(crate) fn current() -> usize {
    WORKER.with(Cell::get)
}

/// Makes the calling thread worker `index`.
pub(crate) fn set_current(index: usize) {
    WORKER.with(|w| w.set(index));
}
