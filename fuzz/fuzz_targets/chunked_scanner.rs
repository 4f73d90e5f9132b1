//! Fuzzes the director's chunked-body scanner
//! (`sticky_director::fuzzing::ChunkedScanner`), which finds where a web
//! server's chunked response ends on the fast path.
//!
//! Input: `data[0] % 16` cut lengths (`data[1..]`, each byte + 1, used in
//! turn), then the stream. The stream is fed three ways: whole, one byte at
//! a time, and in pieces of the cut lengths. However the bytes arrive, the
//! outcome must be the same: the same error, or the same end (bytes that
//! belong to the body) and the same "done". It must never panic, and:
//!
//! * a scanner reports all bytes it was given as the body's unless it is
//!   done (then no more than it was given);
//! * a done body ends with an empty line (`\r\n\r\n`), and scanning just
//!   its bytes finds the same end;
//! * once done, a scanner takes nothing more.

#![no_main]

use libfuzzer_sys::fuzz_target;
use sticky_director::fuzzing::ChunkedScanner;

/// (bytes of the body, done) or the error.
type Outcome = Result<(usize, bool), String>;

/// Feeds `stream` in pieces of the lengths `cuts` yields (the rest at
/// once when they run out), the way the fast path feeds its reads.
fn scan(stream: &[u8], mut cuts: impl Iterator<Item = usize>) -> Outcome {
    let mut s = ChunkedScanner::new();
    let mut pos = 0;
    while pos < stream.len() {
        let step = cuts
            .next()
            .unwrap_or(stream.len())
            .clamp(1, stream.len() - pos);
        let n = s.feed(&stream[pos..pos + step])?;
        assert!(n <= step, "took {n} of {step}");
        pos += n;
        if n < step {
            assert!(s.is_done(), "took {n} of {step} without being done");
            break;
        }
        if s.is_done() {
            break;
        }
    }
    if s.is_done() {
        // Done takes nothing more.
        assert_eq!(s.feed(b"0\r\n\r\n"), Ok(0));
        assert!(s.is_done());
    }
    Ok((pos, s.is_done()))
}

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let n = usize::from(n % 16).min(rest.len());
    let (cuts, stream) = rest.split_at(n);
    let cut_lengths: Vec<usize> = cuts.iter().map(|&c| usize::from(c) + 1).collect();

    let whole = scan(stream, std::iter::empty());
    let bytewise = scan(stream, std::iter::repeat(1));
    let pieces = scan(stream, cut_lengths.iter().copied().cycle());
    assert_eq!(whole, bytewise, "whole vs byte by byte");
    assert_eq!(whole, pieces, "whole vs pieces {cut_lengths:?}");

    if let Ok((end, done)) = whole {
        assert!(end <= stream.len());
        if done {
            assert!(
                stream[..end].ends_with(b"\r\n\r\n"),
                "done without an empty line"
            );
            assert_eq!(scan(&stream[..end], std::iter::empty()), Ok((end, true)));
        } else {
            assert_eq!(end, stream.len(), "not done but stopped early");
        }
    }
});
