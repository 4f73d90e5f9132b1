//! HTTP/2 streams run inside their connection's task.
//!
//! hyper's HTTP/2 server hands every request stream to its executor as a
//! future of its own. With `TokioExecutor` each became a tokio task: an
//! allocation, a trip through the scheduler to start it, and, when its
//! response was ready, a wake-up of the connection's task (another trip
//! through the scheduler) to write it out. [`StreamExec`] keeps them in
//! the connection's task instead: [`drive`] polls the connection and the
//! streams it started, streams first, so what a stream answered goes out
//! when the connection is polled right after, in the same turn.
//!
//! The streams of one connection live in a `FuturesUnordered`: each has a
//! waker of its own, so a response arriving for one stream polls that
//! stream only, however many are open. A stream started outside
//! [`drive`] (hyper calls the executor from nowhere else, but just in
//! case) is spawned as a tokio task, as before.
//!
//! When the connection ends, its streams that have not finished are
//! dropped with it (a client that closed its connection has reset them
//! all), as a stream reset by the client already drops its request.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures_util::stream::{FuturesUnordered, StreamExt as _};

/// One stream's future.
type StreamFuture = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The streams of one connection.
pub(crate) type Streams = FuturesUnordered<StreamFuture>;

thread_local! {
    /// Streams started while [`drive`] polls a connection on this thread.
    static STARTED: RefCell<Option<Vec<StreamFuture>>> = const { RefCell::new(None) };
}

/// The executor given to hyper's HTTP/2 server: streams started while
/// [`drive`] polls their connection stay in the connection's task.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct StreamExec;

impl<F> hyper::rt::Executor<F> for StreamExec
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, fut: F) {
        let mut fut = Some(fut);
        STARTED.with(|started| {
            if let Ok(mut started) = started.try_borrow_mut() {
                if let (Some(list), Some(f)) = (started.as_mut(), fut.take()) {
                    list.push(Box::pin(f));
                }
            }
        });
        if let Some(f) = fut {
            tokio::spawn(f);
        }
    }
}

/// Collects the streams started during one poll into `into`, and puts
/// back what [`STARTED`] held before when dropped, even if the poll
/// panics, so no later stream goes into a list nobody reads.
struct Collecting<'a> {
    into: &'a mut Vec<StreamFuture>,
    previous: Option<Vec<StreamFuture>>,
    swapped: bool,
}

impl Drop for Collecting<'_> {
    fn drop(&mut self) {
        if !self.swapped {
            return;
        }
        STARTED.with(|started| {
            if let Ok(mut started) = started.try_borrow_mut() {
                let mine = std::mem::replace(&mut *started, self.previous.take());
                *self.into = mine.unwrap_or_default();
            }
        });
    }
}

/// Runs `poll`, gathering into `into` the streams it starts.
fn collect<T>(into: &mut Vec<StreamFuture>, poll: impl FnOnce() -> T) -> T {
    let mut guard = Collecting {
        into,
        previous: None,
        swapped: false,
    };
    STARTED.with(|started| {
        if let Ok(mut started) = started.try_borrow_mut() {
            guard.previous = started.replace(std::mem::take(guard.into));
            guard.swapped = true;
        }
    });
    let out = poll();
    drop(guard);
    out
}

/// Polls the streams that can make progress.
fn poll_streams(streams: &mut Streams, cx: &mut Context<'_>) {
    while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
}

/// Polls `conn` and the streams it started: streams first (what they
/// answer is then written by the connection's poll), then the connection,
/// then the streams it just started, and the connection again while it
/// starts more.
pub(crate) fn drive<C: Future>(
    mut conn: Pin<&mut C>,
    streams: &mut Streams,
    cx: &mut Context<'_>,
) -> Poll<C::Output> {
    poll_streams(streams, cx);
    let mut started = Vec::new();
    loop {
        let polled = collect(&mut started, || conn.as_mut().poll(cx));
        if polled.is_ready() || started.is_empty() {
            // Streams started by a poll that ended the connection are
            // dropped with it.
            return polled;
        }
        streams.extend(started.drain(..));
        poll_streams(streams, cx);
    }
}
