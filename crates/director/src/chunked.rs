//! Finding the end of a `Transfer-Encoding: chunked` body without decoding
//! it: the fast path forwards a web server's chunked response to the
//! client byte for byte, and needs only to know where it ends (so the
//! connection to the server can be reused) and that it is well formed (so
//! a malformed one is never passed on as if it were complete). For HTTP/2
//! clients (`raw_forward.rs`) the same scan also hands out the chunk data
//! ([`ChunkedScanner::feed_with`]).
//!
//! RFC 9112 section 7.1: `size [; extensions] CRLF data CRLF`, repeated,
//! then `0 [; extensions] CRLF`, trailer lines, and an empty line.

/// Longest chunk-size line (size and extensions), and longest trailer
/// line, accepted.
pub(crate) const MAX_LINE: usize = 4096;

/// Most bytes of trailer lines accepted after the last chunk.
pub(crate) const MAX_TRAILERS: usize = 16 << 10;

/// Why a chunked body is malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ChunkError {
    #[error("bad chunk size line")]
    BadSize,
    #[error("chunk size too large")]
    SizeOverflow,
    #[error("chunk size line or trailer line too long")]
    LineTooLong,
    #[error("chunk data not followed by CRLF")]
    MissingCrlf,
    #[error("trailers too long")]
    TrailersTooLong,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In a chunk-size line.
    Size {
        value: u64,
        digits: u8,
        /// Past the size: in extensions (or the whitespace before them).
        ext: bool,
        cr: bool,
        len: usize,
    },
    /// In a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data: expecting CR, then LF.
    DataCr,
    DataLf,
    /// After the last chunk: in a trailer line (`len` 0: at its start).
    Trailer {
        len: usize,
        cr: bool,
        total: usize,
    },
    Done,
}

/// Follows a chunked body through the bytes fed to it.
#[derive(Debug, Clone)]
pub(crate) struct ChunkedScanner {
    state: State,
}

const SIZE_START: State = State::Size {
    value: 0,
    digits: 0,
    ext: false,
    cr: false,
    len: 0,
};

impl Default for ChunkedScanner {
    fn default() -> Self {
        Self { state: SIZE_START }
    }
}

impl ChunkedScanner {
    /// Reads `bytes`, the next bytes of the body. Returns how many of them
    /// belong to it: all of them unless the body ends inside `bytes`
    /// (then [`is_done`](Self::is_done) is true and the rest is not part
    /// of this message).
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Result<usize, ChunkError> {
        self.feed_with(bytes, |_| {})
    }

    /// As [`feed`](Self::feed), and hands every piece of chunk data (the
    /// decoded body) to `data`, in order: for a client that gets the body
    /// without HTTP/1.1 framing (HTTP/2).
    pub(crate) fn feed_with(
        &mut self,
        bytes: &[u8],
        mut data: impl FnMut(std::ops::Range<usize>),
    ) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < bytes.len() {
            match self.state {
                State::Done => return Ok(i),
                State::Data(left) => {
                    let avail = u64::try_from(bytes.len() - i).unwrap_or(u64::MAX);
                    let take = left.min(avail);
                    // `take` is at most `bytes.len() - i`, so it fits.
                    let end = i + usize::try_from(take).unwrap_or(bytes.len() - i);
                    data(i..end);
                    i = end;
                    self.state = if take == left {
                        State::DataCr
                    } else {
                        State::Data(left - take)
                    };
                }
                State::DataCr => {
                    if bytes[i] != b'\r' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    i += 1;
                    self.state = State::DataLf;
                }
                State::DataLf => {
                    if bytes[i] != b'\n' {
                        return Err(ChunkError::MissingCrlf);
                    }
                    i += 1;
                    self.state = SIZE_START;
                }
                State::Size {
                    value,
                    digits,
                    ext,
                    cr,
                    len,
                } => {
                    let c = bytes[i];
                    i += 1;
                    if len + 1 > MAX_LINE {
                        return Err(ChunkError::LineTooLong);
                    }
                    if cr {
                        if c != b'\n' {
                            return Err(ChunkError::BadSize);
                        }
                        if digits == 0 {
                            return Err(ChunkError::BadSize);
                        }
                        self.state = if value == 0 {
                            State::Trailer {
                                len: 0,
                                cr: false,
                                total: 0,
                            }
                        } else {
                            State::Data(value)
                        };
                        continue;
                    }
                    let next = |value, digits, ext, cr| State::Size {
                        value,
                        digits,
                        ext,
                        cr,
                        len: len + 1,
                    };
                    self.state = match c {
                        b'\r' => next(value, digits, ext, true),
                        _ if ext => {
                            if c == b'\n' {
                                return Err(ChunkError::BadSize);
                            }
                            next(value, digits, ext, false)
                        }
                        b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                            // 15 hex digits are 60 bits: no overflow.
                            if digits >= 15 {
                                return Err(ChunkError::SizeOverflow);
                            }
                            let d = u64::from(match c {
                                b'0'..=b'9' => c - b'0',
                                b'a'..=b'f' => c - b'a' + 10,
                                _ => c - b'A' + 10,
                            });
                            next(value << 4 | d, digits + 1, false, false)
                        }
                        b';' | b' ' | b'\t' if digits > 0 => next(value, digits, true, false),
                        _ => return Err(ChunkError::BadSize),
                    };
                }
                State::Trailer { len, cr, total } => {
                    let c = bytes[i];
                    i += 1;
                    if total + 1 > MAX_TRAILERS {
                        return Err(ChunkError::TrailersTooLong);
                    }
                    if cr {
                        if c != b'\n' {
                            return Err(ChunkError::MissingCrlf);
                        }
                        if len == 0 {
                            self.state = State::Done;
                            return Ok(i);
                        }
                        self.state = State::Trailer {
                            len: 0,
                            cr: false,
                            total: total + 1,
                        };
                        continue;
                    }
                    if len + 1 > MAX_LINE {
                        return Err(ChunkError::LineTooLong);
                    }
                    self.state = match c {
                        b'\r' => State::Trailer {
                            len,
                            cr: true,
                            total: total + 1,
                        },
                        b'\n' => return Err(ChunkError::MissingCrlf),
                        _ => State::Trailer {
                            len: len + 1,
                            cr: false,
                            total: total + 1,
                        },
                    };
                }
            }
        }
        Ok(i)
    }

    /// The whole body has been seen.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Feeds `body` whole; (bytes taken, done).
    fn scan(body: &[u8]) -> Result<(usize, bool), ChunkError> {
        let mut s = ChunkedScanner::default();
        let n = s.feed(body)?;
        Ok((n, s.is_done()))
    }

    #[test]
    fn finds_the_end_and_leaves_what_follows() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n\r\nHTTP/1.1 200 OK";
        let end = body.len() - b"HTTP/1.1 200 OK".len();
        assert_eq!(scan(body), Ok((end, true)));
    }

    #[test]
    fn trailers_are_part_of_the_body() {
        let body = b"1\r\na\r\n0\r\nx-checksum: 1\r\nx-other: 2\r\n\r\n";
        assert_eq!(scan(body), Ok((body.len(), true)));
    }

    #[test]
    fn unfinished_bodies_are_not_done() {
        for body in [
            &b"5\r\nhel"[..],
            b"5\r\nhello\r\n",
            b"5\r\nhello\r\n0\r\n",
            b"0\r\nx: 1\r\n",
            b"A",
        ] {
            assert_eq!(scan(body), Ok((body.len(), false)), "{body:?}");
        }
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for (body, err) in [
            (&b"x\r\n"[..], ChunkError::BadSize),
            (b"\r\n", ChunkError::BadSize),
            (b"5\nhello", ChunkError::BadSize),
            (b"5\r\nhelloXX", ChunkError::MissingCrlf),
            (b"ffffffffffffffff\r\n", ChunkError::SizeOverflow),
            (b"-1\r\n", ChunkError::BadSize),
            (b"0\r\nx: 1\n\r\n", ChunkError::MissingCrlf),
        ] {
            assert_eq!(scan(body), Err(err), "{body:?}");
        }
        let long_ext = [b"1;".as_slice(), &[b'x'; MAX_LINE], b"\r\n"].concat();
        assert_eq!(scan(&long_ext), Err(ChunkError::LineTooLong));
        let mut trailers = b"0\r\n".to_vec();
        for _ in 0..(MAX_TRAILERS / 10 + 1) {
            trailers.extend_from_slice(b"x: 123456\r\n");
        }
        assert_eq!(scan(&trailers), Err(ChunkError::TrailersTooLong));
    }

    fn encode(chunks: &[Vec<u8>], trailer: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            out.extend_from_slice(format!("{:x}\r\n", c.len()).as_bytes());
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        if trailer {
            out.extend_from_slice(b"x-t: 1\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    proptest! {
        /// However the bytes are split into reads, the scanner finds the
        /// same end: exactly the encoded body, not the bytes after it.
        #[test]
        fn the_end_does_not_depend_on_how_bytes_arrive(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
            trailer in any::<bool>(),
            cuts in proptest::collection::vec(1usize..64, 0..40),
        ) {
            let body = encode(&chunks, trailer);
            let mut stream = body.clone();
            stream.extend_from_slice(b"NEXT");
            let mut s = ChunkedScanner::default();
            let mut pos = 0;
            let mut cuts = cuts.into_iter();
            while !s.is_done() && pos < stream.len() {
                let step = cuts.next().unwrap_or(stream.len()).min(stream.len() - pos);
                let n = s.feed(&stream[pos..pos + step]).unwrap();
                pos += n;
                if n < step {
                    break;
                }
            }
            prop_assert!(s.is_done());
            prop_assert_eq!(pos, body.len());
        }

        /// Decoding (for HTTP/2 clients) gives back exactly the data
        /// that was encoded, however the bytes arrive.
        #[test]
        fn decoding_gives_back_the_data(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..6),
            trailer in any::<bool>(),
            cuts in proptest::collection::vec(1usize..64, 0..40),
        ) {
            let body = encode(&chunks, trailer);
            let mut s = ChunkedScanner::default();
            let mut pos = 0;
            let mut decoded = Vec::new();
            let mut cuts = cuts.into_iter();
            while !s.is_done() && pos < body.len() {
                let step = cuts.next().unwrap_or(body.len()).min(body.len() - pos);
                let piece = &body[pos..pos + step];
                let n = s.feed_with(piece, |r| decoded.extend_from_slice(&piece[r])).unwrap();
                pos += n;
            }
            prop_assert!(s.is_done());
            prop_assert_eq!(decoded, chunks.concat());
        }
    }
}
