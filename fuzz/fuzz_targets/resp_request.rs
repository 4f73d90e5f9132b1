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

#![no_main]

use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sticky_proto::resp::{parse_request, Limits, ProtocolError};

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
    // Only ever consumed from the front: what is left is the input's tail.
    assert_eq!(consumed_total + buf.len(), input.len());
    assert!(
        buf[..] == input[consumed_total..],
        "the buffer left is not the unconsumed tail of the input"
    );
    (parsed, end)
}

fuzz_target!(|data: &[u8]| {
    drain(data, &Limits::default());

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
