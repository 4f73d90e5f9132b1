//! Fuzzes `sticky_proto::resp::parse_request`, the server's request parser.
//!
//! Every input is drained the way a store connection drains its read buffer
//! (parse while the parser returns `Ok(Some(_))`), three times:
//!
//! 1. the whole input with the default [`Limits`];
//! 2. the input minus its first three bytes with tiny limits derived from
//!    those bytes (`max_bulk` 0..=63, `max_args` 0..=15, `max_inline`
//!    0..=255), so that every limit check is reached often;
//! 3. that same rest with the default limits, for a differential check: the
//!    limits only ever refuse, so whatever the tiny limits accept must be
//!    parsed identically with the default ones.
//!
//! Invariants checked on every call:
//!
//! * `Ok(None)` consumes nothing;
//! * `Ok(Some(args))` consumes at least one byte, and every call consumes
//!   only from the front (what is left is always the input's tail; an error
//!   may consume, since the connection is closed after it);
//! * no argument is longer than `max_bulk` (and no inline argument longer
//!   than `max_inline`);
//! * no request has more than `max_args` arguments.
//!
//! And the store's own way, a pipeline arriving in reads of any size: the
//! whole input is fed to `parse_request_in_place` in chunks whose sizes
//! come from the input's first byte (1 to 64 bytes, so every split point
//! of a pipelined batch is reached), parsing all complete requests after
//! each chunk as a store connection does. It must give exactly the
//! requests, and end, of the one-shot `parse_request` drain: how the
//! bytes were split never changes what is parsed.
//!

#![no_main]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sticky_proto::resp::{parse_request, parse_request_in_place, Limits, ProtocolError};

/// One parsed request: the bytes it consumed and its arguments.
#[derive(Debug, PartialEq, Eq)]
struct Parsed {
    consumed: usize,
    args: Vec<Bytes>,
}

/// How a drain ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    /// `Ok(None)`: more bytes needed (or the buffer is empty).
    Incomplete,
    /// A protocol error.
    Error(ProtocolError),
}

/// Parses `input` request after request, checking the invariants.
fn drain(input: &[u8], limits: &Limits) -> (Vec<Parsed>, End) {
    let mut buf = BytesMut::from(input);
    let mut consumed_total = 0usize;
    let mut parsed = Vec::new();
    let end = loop {
        let before = buf.len();
        let inline = buf.first().is_some_and(|&b| b != b'*');
        match parse_request(&mut buf, limits) {
            Ok(Some(args)) => {
                assert!(
                    buf.len() < before,
                    "Ok(Some({args:?})) consumed nothing ({before} bytes left), limits {limits:?}"
                );
                let consumed = before - buf.len();
                assert!(
                    args.len() <= limits.max_args,
                    "{} args over max_args {}: {args:?}",
                    args.len(),
                    limits.max_args
                );
                for a in &args {
                    assert!(
                        a.len() <= limits.max_bulk,
                        "{} argument of {} bytes over max_bulk {} (limits {limits:?}): {a:?}",
                        if inline { "inline" } else { "bulk" },
                        a.len(),
                        limits.max_bulk
                    );
                    if inline {
                        assert!(
                            a.len() <= limits.max_inline,
                            "inline argument of {} bytes over max_inline {}",
                            a.len(),
                            limits.max_inline
                        );
                    }
                    assert!(a.len() < consumed, "argument longer than its request");
                }
                consumed_total += consumed;
                parsed.push(Parsed { consumed, args });
            }
            Ok(None) => {
                assert_eq!(
                    buf.len(),
                    before,
                    "Ok(None) consumed {} bytes, limits {limits:?}",
                    before.wrapping_sub(buf.len())
                );
                break End::Incomplete;
            }
            Err(e) => {
                // The connection is closed after an error, so the parser may
                // have consumed part of the buffer (an inline line with
                // unbalanced quotes is split off first); it must not grow.
                assert!(buf.len() <= before, "the buffer grew on {e:?}");
                consumed_total += before - buf.len();
                break End::Error(e);
            }
        }
    };
    // Only ever consumed from the front: what is left is the input's tail
    // (after an error, its bytes may have been partly rewritten: quoted
    // inline arguments are unescaped in place before a later quote turns
    // out unbalanced, and the connection is closed anyway).
    assert_eq!(consumed_total + buf.len(), input.len());
    assert!(
        matches!(end, End::Error(_)) || buf[..] == input[consumed_total..],
        "the buffer left is not the unconsumed tail of the input"
    );
    (parsed, end)
}

/// Parses `input` as a store connection does: in place, in reads of
/// `chunk` bytes, every complete request after each read.
fn drain_in_chunks(input: &[u8], chunk: usize, limits: &Limits) -> (Vec<Parsed>, End) {
    let mut buf: Vec<u8> = Vec::new();
    let mut fed = 0;
    let mut parsed = Vec::new();
    let mut ranges = Vec::new();
    loop {
        let take = chunk.min(input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + take]);
        fed += take;
        let mut pos = 0;
        loop {
            match parse_request_in_place(&mut buf[pos..], limits, &mut ranges) {
                Ok(Some(len)) => {
                    assert!(len > 0, "a request of no bytes");
                    let frame = &buf[pos..pos + len];
                    let args = ranges
                        .iter()
                        .map(|r| Bytes::copy_from_slice(&frame[r.clone()]))
                        .collect();
                    parsed.push(Parsed { consumed: len, args });
                    pos += len;
                }
                Ok(None) => break,
                Err(e) => return (parsed, End::Error(e)),
            }
        }
        buf.drain(..pos);
        if fed == input.len() {
            return (parsed, End::Incomplete);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let whole = drain(data, &Limits::default());
    if let Some((&first, _)) = data.split_first() {
        let chunk = usize::from(first % 64) + 1;
        let split = drain_in_chunks(data, chunk, &Limits::default());
        assert_eq!(
            split, whole,
            "read in chunks of {chunk} bytes, the pipeline parsed differently"
        );
    }

    if let [a, b, c, rest @ ..] = data {
        let tiny = Limits {
            max_bulk: usize::from(a % 64),
            max_args: usize::from(b % 16),
            max_inline: usize::from(*c),
        };
        let (small, small_end) = drain(rest, &tiny);
        let (full, full_end) = drain(rest, &Limits::default());
        // Limits only refuse: what the tiny limits accepted, the default
        // limits parse the same way.
        assert!(
            full.len() >= small.len() && full[..small.len()] == small[..],
            "tiny limits {tiny:?} accepted {small:?} but the default limits gave {full:?}"
        );
        // Every error is either limit-independent (grammar) or a limit the
        // defaults are looser on, so a request the tiny limits wait on
        // cannot be an error under the defaults.
        if full.len() == small.len() && small_end == End::Incomplete {
            assert_eq!(
                full_end,
                End::Incomplete,
                "incomplete under {tiny:?} but an error under the defaults"
            );
        }
    }
});
