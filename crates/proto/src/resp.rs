//! RESP request parsing (server side) and reply encoding.
//!
//! Requests are RESP arrays of bulk strings (what every client sends) or
//! inline commands (`PING\r\n`, what `telnet` and `redis-benchmark`'s
//! `PING_INLINE` send). Every size a peer controls is checked against
//! [`Limits`] *before* anything is buffered for it, so a declared 1 GB bulk
//! string is refused from its header alone.

use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};

/// Limits on what one request may declare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Longest bulk string (key or value), in bytes.
    pub max_bulk: usize,
    /// Most arguments (including the command name) in one request.
    pub max_args: usize,
    /// Longest inline command line, in bytes.
    pub max_inline: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_bulk: 16 * 1024 * 1024,
            max_args: 4096,
            max_inline: 64 * 1024,
        }
    }
}

/// A request that cannot be parsed. The connection it came from cannot be
/// resynchronised and should be closed after replying with the error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// `*<n>` with a malformed or negative count.
    #[error("invalid multibulk length")]
    InvalidMultibulkLength,
    /// More arguments than [`Limits::max_args`].
    #[error("too many arguments: {0} (limit {1})")]
    TooManyArgs(u64, usize),
    /// `$<n>` with a malformed length.
    #[error("invalid bulk length")]
    InvalidBulkLength,
    /// A bulk string longer than [`Limits::max_bulk`].
    #[error("bulk length {0} over the limit of {1} bytes")]
    BulkTooLarge(u64, usize),
    /// An array element that is not a bulk string.
    #[error("expected '$', got '{0}'")]
    ExpectedBulk(char),
    /// A bulk string not followed by CRLF.
    #[error("bulk string not terminated by CRLF")]
    MissingCrlf,
    /// An inline line longer than [`Limits::max_inline`].
    #[error("too big inline request")]
    InlineTooLong,
    /// An inline line with an unterminated quote.
    #[error("unbalanced quotes in request")]
    UnbalancedQuotes,
}

/// Longest `*<n>\r\n` or `$<n>\r\n` header line we accept.
const MAX_HEADER: usize = 32;

/// Parses one request from the front of `buf`.
///
/// Returns `Ok(Some(args))` and removes the request's bytes from `buf`,
/// `Ok(None)` when more bytes are needed (nothing is consumed), or an error
/// for a request that breaks a limit or the grammar. An empty inline line
/// yields an empty argument list, which callers skip.
///
/// The returned arguments share one allocation with the request's bytes;
/// copy them before keeping them long-term. [`parse_request_in_place`] does
/// the same without allocating or consuming anything.
///
/// # Errors
///
/// [`ProtocolError`] when the request is malformed or breaks `limits`.
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<Vec<Bytes>>, ProtocolError> {
    let mut ranges = Vec::new();
    let Some(len) = parse_request_in_place(buf, limits, &mut ranges)? else {
        return Ok(None);
    };
    let frame = buf.split_to(len).freeze();
    Ok(Some(ranges.into_iter().map(|r| frame.slice(r)).collect()))
}

/// Parses one request at the front of `buf` without copying or allocating
/// (beyond growing `args`): replaces the contents of `args` with the byte
/// range of each argument within `buf` and returns the request's length.
///
/// Returns `Ok(None)` when more bytes are needed; then `buf` is untouched.
/// An empty inline line gives no arguments. A quoted inline argument
/// (`SET k "a b"`) is unescaped in place, which is why `buf` is mutable:
/// its unescaped form is never longer than its quoted form, so it is
/// written over the bytes it came from.
///
/// # Errors
///
/// [`ProtocolError`] when the request is malformed or breaks `limits`;
/// the connection cannot be resynchronised, and `buf` may have been
/// partly rewritten.
pub fn parse_request_in_place(
    buf: &mut [u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, ProtocolError> {
    args.clear();
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits, args),
        Some(_) => parse_inline(buf, limits, args),
    }
}

/// Reads a `<prefix>[-]<digits>\r\n` header at `pos`; `Ok(None)` if
/// incomplete. Like Redis: no leading zeros (`01`), no `-0`, at most 18
/// digits, and the whole line within [`MAX_HEADER`] bytes.
fn header(
    buf: &[u8],
    pos: usize,
    bad: ProtocolError,
) -> Result<Option<(i64, usize)>, ProtocolError> {
    let end = buf.len().min(pos.saturating_add(MAX_HEADER));
    let mut i = pos + 1;
    let neg = buf.get(i) == Some(&b'-');
    if neg {
        i += 1;
    }
    let digits = i;
    let mut v: i64 = 0;
    while i < end && buf[i].is_ascii_digit() {
        if i - digits == 18 {
            return Err(bad);
        }
        v = v * 10 + i64::from(buf[i] - b'0');
        i += 1;
    }
    if i >= end {
        return if end - pos >= MAX_HEADER {
            Err(bad)
        } else {
            Ok(None)
        };
    }
    let n = i - digits;
    if buf[i] != b'\r' || n == 0 || n > 1 && buf[digits] == b'0' || neg && v == 0 {
        return Err(bad);
    }
    match buf.get(i + 1) {
        None => Ok(None),
        Some(b'\n') => Ok(Some((if neg { -v } else { v }, i + 2))),
        Some(_) => Err(bad),
    }
}

fn parse_multibulk(
    buf: &[u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, ProtocolError> {
    let Some((count, mut pos)) = header(buf, 0, ProtocolError::InvalidMultibulkLength)? else {
        return Ok(None);
    };
    if count < 0 {
        // `*-1` (a null array) is not a request; Redis skips it.
        if count == -1 {
            return Ok(Some(pos));
        }
        return Err(ProtocolError::InvalidMultibulkLength);
    }
    let count = count as u64;
    if count > limits.max_args as u64 {
        return Err(ProtocolError::TooManyArgs(count, limits.max_args));
    }
    // Never reserve from the peer's word alone: `args` grows as arguments
    // arrive.
    for _ in 0..count {
        let Some(&first) = buf.get(pos) else {
            return Ok(None);
        };
        if first != b'$' {
            return Err(ProtocolError::ExpectedBulk(char::from(first)));
        }
        let Some((len, start)) = header(buf, pos, ProtocolError::InvalidBulkLength)? else {
            return Ok(None);
        };
        if len < 0 {
            return Err(ProtocolError::InvalidBulkLength);
        }
        let len = len as u64;
        if len > limits.max_bulk as u64 {
            return Err(ProtocolError::BulkTooLarge(len, limits.max_bulk));
        }
        let end = start + len as usize;
        let Some(crlf) = buf.get(end..end + 2) else {
            return Ok(None);
        };
        if crlf != b"\r\n" {
            return Err(ProtocolError::MissingCrlf);
        }
        args.push(start..end);
        pos = end + 2;
    }
    Ok(Some(pos))
}

fn parse_inline(
    buf: &mut [u8],
    limits: &Limits,
    args: &mut Vec<Range<usize>>,
) -> Result<Option<usize>, ProtocolError> {
    let Some(nl) = buf
        .iter()
        .take(limits.max_inline.saturating_add(1))
        .position(|&b| b == b'\n')
    else {
        if buf.len() > limits.max_inline {
            return Err(ProtocolError::InlineTooLong);
        }
        return Ok(None);
    };
    let mut end = nl;
    if end > 0 && buf[end - 1] == b'\r' {
        end -= 1;
    }
    let line = &mut buf[..end];
    if line.iter().any(|&c| c == b'"' || c == b'\'') {
        split_inline(line, args)?;
    } else {
        // No quotes: the words are ranges of the line as it is.
        let mut i = 0;
        while i < line.len() {
            if line[i].is_ascii_whitespace() {
                i += 1;
                continue;
            }
            let start = i;
            while i < line.len() && !line[i].is_ascii_whitespace() {
                i += 1;
            }
            args.push(start..i);
        }
    }
    if args.len() > limits.max_args {
        return Err(ProtocolError::TooManyArgs(
            args.len() as u64,
            limits.max_args,
        ));
    }
    if let Some(long) = args.iter().find(|a| a.len() > limits.max_bulk) {
        return Err(ProtocolError::BulkTooLarge(
            long.len() as u64,
            limits.max_bulk,
        ));
    }
    Ok(Some(nl + 1))
}

/// Splits an inline line on blanks; `"..."` and `'...'` group words, and
/// double-quoted strings understand `\"`, `\\`, `\n`, `\r`, `\t`.
///
/// Each word is written, unescaped, from the offset where it starts: the
/// write position never passes the read position, because a word's
/// unescaped form is never longer than its source.
fn split_inline(text: &mut [u8], args: &mut Vec<Range<usize>>) -> Result<(), ProtocolError> {
    let mut i = 0;
    while i < text.len() {
        while i < text.len() && text[i].is_ascii_whitespace() {
            i += 1;
        }
        if i == text.len() {
            break;
        }
        let start = i;
        let mut w = start;
        match text[i] {
            q @ (b'"' | b'\'') => {
                i += 1;
                loop {
                    let Some(&c) = text.get(i) else {
                        return Err(ProtocolError::UnbalancedQuotes);
                    };
                    i += 1;
                    if c == q {
                        break;
                    }
                    let out = if c == b'\\' && q == b'"' {
                        let Some(&e) = text.get(i) else {
                            return Err(ProtocolError::UnbalancedQuotes);
                        };
                        i += 1;
                        match e {
                            b'n' => b'\n',
                            b'r' => b'\r',
                            b't' => b'\t',
                            other => other,
                        }
                    } else {
                        c
                    };
                    text[w] = out;
                    w += 1;
                }
                if text.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                    return Err(ProtocolError::UnbalancedQuotes);
                }
            }
            _ => {
                while i < text.len() && !text[i].is_ascii_whitespace() {
                    i += 1;
                }
                w = i;
            }
        }
        args.push(start..w);
    }
    Ok(())
}

/// The protocol version a connection negotiated with `HELLO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Version {
    /// RESP2, the default.
    #[default]
    Resp2,
    /// RESP3.
    Resp3,
}

/// A reply, encoded per the connection's [`Version`].
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// `+OK`-style status.
    Simple(&'static str),
    /// A status built at run time.
    Status(String),
    /// `-CODE message`. The text must not contain CR or LF.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$n\r\n...`.
    Bulk(Bytes),
    /// Null: `$-1` in RESP2, `_` in RESP3.
    Null,
    /// An array.
    Array(Vec<Reply>),
    /// A map in RESP3, a flat key/value array in RESP2.
    Map(Vec<(Reply, Reply)>),
}

impl Reply {
    /// `+OK`.
    pub const OK: Reply = Reply::Simple("OK");

    /// An error reply; CR and LF in `msg` are replaced by blanks.
    pub fn error(msg: impl Into<String>) -> Self {
        let mut msg: String = msg.into();
        if msg.contains(['\r', '\n']) {
            msg = msg.replace(['\r', '\n'], " ");
        }
        Reply::Error(msg)
    }

    /// A bulk string copied from `s`.
    pub fn bulk(s: impl AsRef<[u8]>) -> Self {
        Reply::Bulk(Bytes::copy_from_slice(s.as_ref()))
    }

    /// Appends the encoding of this reply to `out`.
    pub fn encode(&self, version: Version, out: &mut BytesMut) {
        match self {
            Reply::Simple(s) => simple(out, b'+', s.as_bytes()),
            Reply::Status(s) => simple(out, b'+', s.as_bytes()),
            Reply::Error(s) => simple(out, b'-', s.as_bytes()),
            Reply::Int(n) => {
                out.put_u8(b':');
                put_int(out, *n);
                out.put_slice(b"\r\n");
            }
            Reply::Bulk(b) => {
                encode_bulk(b, out);
            }
            Reply::Null => match version {
                Version::Resp2 => out.put_slice(b"$-1\r\n"),
                Version::Resp3 => out.put_slice(b"_\r\n"),
            },
            Reply::Array(items) => {
                aggregate(out, b'*', items.len());
                for item in items {
                    item.encode(version, out);
                }
            }
            Reply::Map(pairs) => {
                match version {
                    Version::Resp2 => aggregate(out, b'*', pairs.len() * 2),
                    Version::Resp3 => aggregate(out, b'%', pairs.len()),
                }
                for (k, v) in pairs {
                    k.encode(version, out);
                    v.encode(version, out);
                }
            }
        }
    }
}

/// Encodes a bulk string, as [`Reply::Bulk`] would, from borrowed bytes
/// (the same in RESP2 and RESP3): a server can encode a value while it
/// holds it, without a handle of its own.
pub fn encode_bulk(b: &[u8], out: &mut BytesMut) {
    out.reserve(b.len() + 16);
    out.put_u8(b'$');
    put_int(out, b.len() as i64);
    out.put_slice(b"\r\n");
    out.put_slice(b);
    out.put_slice(b"\r\n");
}

fn simple(out: &mut BytesMut, prefix: u8, text: &[u8]) {
    out.reserve(text.len() + 3);
    out.put_u8(prefix);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

fn aggregate(out: &mut BytesMut, prefix: u8, n: usize) {
    out.put_u8(prefix);
    put_int(out, n as i64);
    out.put_slice(b"\r\n");
}

fn put_int(out: &mut BytesMut, n: i64) {
    let mut b = itoa::Buffer::new();
    out.put_slice(b.format(n).as_bytes());
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(input: &[u8]) -> Result<Option<Vec<Bytes>>, ProtocolError> {
        parse_request(&mut BytesMut::from(input), &Limits::default())
    }

    fn encode_request(args: &[Vec<u8>]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        out
    }

    #[test]
    fn parses_multibulk_and_pipelined_requests() {
        let mut buf = BytesMut::from(&b"*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"[..]);
        let l = Limits::default();
        assert_eq!(
            parse_request(&mut buf, &l).unwrap().unwrap(),
            vec![Bytes::from("PING")]
        );
        assert_eq!(
            parse_request(&mut buf, &l).unwrap().unwrap(),
            vec![Bytes::from("GET"), Bytes::from("k")]
        );
        assert!(buf.is_empty());
        assert_eq!(parse_request(&mut buf, &l).unwrap(), None);
    }

    #[test]
    fn incomplete_requests_consume_nothing() {
        let full = b"*2\r\n$3\r\nSET\r\n$5\r\nhello\r\n";
        for cut in 1..full.len() {
            let mut buf = BytesMut::from(&full[..cut]);
            assert_eq!(
                parse_request(&mut buf, &Limits::default()),
                Ok(None),
                "cut {cut}"
            );
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn parses_inline_with_quotes() {
        assert_eq!(
            parse(b"SET k \"a b\\n\" 'c d'\r\n").unwrap().unwrap(),
            vec![
                Bytes::from("SET"),
                Bytes::from("k"),
                Bytes::from("a b\n"),
                Bytes::from("c d")
            ]
        );
        assert_eq!(
            parse(b"PING\n").unwrap().unwrap(),
            vec![Bytes::from("PING")]
        );
        assert_eq!(parse(b"\r\n").unwrap().unwrap(), Vec::<Bytes>::new());
        assert_eq!(
            parse(b"SET \"k v\r\n"),
            Err(ProtocolError::UnbalancedQuotes)
        );
    }

    #[test]
    fn refuses_oversized_declarations_from_the_header_alone() {
        assert_eq!(
            parse(b"*1\r\n$1073741824\r\n"),
            Err(ProtocolError::BulkTooLarge(1 << 30, 16 * 1024 * 1024))
        );
        assert_eq!(
            parse(b"*100000\r\n"),
            Err(ProtocolError::TooManyArgs(100_000, 4096))
        );
        assert_eq!(
            parse(b"*-5\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse(b"*1\r\n$-1\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        assert_eq!(parse(b"*x\r\n"), Err(ProtocolError::InvalidMultibulkLength));
        assert_eq!(
            parse(b"*01\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            parse(b"*1\r\n$-0\r\n"),
            Err(ProtocolError::InvalidBulkLength)
        );
        let tiny = Limits {
            max_bulk: 4,
            ..Limits::default()
        };
        assert_eq!(
            parse_request(&mut BytesMut::from(&b"SET k hello\r\n"[..]), &tiny),
            Err(ProtocolError::BulkTooLarge(5, 4)),
            "inline arguments obey max_bulk too"
        );
        assert_eq!(
            parse(b"*1\r\n:1\r\n"),
            Err(ProtocolError::ExpectedBulk(':'))
        );
        assert_eq!(
            parse(b"*1\r\n$1\r\nab\r\n"),
            Err(ProtocolError::MissingCrlf)
        );
        assert_eq!(
            parse(&[b'*'; 40]),
            Err(ProtocolError::InvalidMultibulkLength),
            "a header line without CRLF cannot grow forever"
        );
        assert_eq!(
            parse(&vec![b'a'; 70_000]),
            Err(ProtocolError::InlineTooLong)
        );
    }

    #[test]
    fn encodes_replies_per_version() {
        let mut out = BytesMut::new();
        let r = Reply::Map(vec![(Reply::bulk("a"), Reply::Int(1))]);
        r.encode(Version::Resp2, &mut out);
        assert_eq!(&out[..], b"*2\r\n$1\r\na\r\n:1\r\n");
        out.clear();
        r.encode(Version::Resp3, &mut out);
        assert_eq!(&out[..], b"%1\r\n$1\r\na\r\n:1\r\n");
        out.clear();
        Reply::Null.encode(Version::Resp3, &mut out);
        Reply::Null.encode(Version::Resp2, &mut out);
        Reply::error("bad\r\nthing").encode(Version::Resp2, &mut out);
        assert_eq!(&out[..], b"_\r\n$-1\r\n-bad  thing\r\n");
    }

    /// A request's length and its arguments, as `parse_request_in_place` saw them.
    type InPlace = Option<(usize, Vec<Vec<u8>>)>;

    fn in_place(input: &[u8]) -> Result<InPlace, ProtocolError> {
        let mut buf = input.to_vec();
        let mut ranges = vec![0..0; 3];
        let parsed = parse_request_in_place(&mut buf, &Limits::default(), &mut ranges)?;
        Ok(parsed.map(|len| {
            (
                len,
                ranges.iter().map(|r| buf[r.clone()].to_vec()).collect(),
            )
        }))
    }

    #[test]
    fn in_place_gives_ranges_and_lengths() {
        let input = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\nPING\r\n";
        assert_eq!(
            in_place(input).unwrap(),
            Some((20, vec![b"GET".to_vec(), b"k".to_vec()]))
        );
        assert_eq!(
            in_place(&input[20..]).unwrap(),
            Some((6, vec![b"PING".to_vec()]))
        );
        assert_eq!(in_place(b"  \r\n").unwrap(), Some((4, vec![])));
        assert_eq!(in_place(b"*-1\r\n").unwrap(), Some((5, vec![])));
        assert_eq!(in_place(b"*2\r\n$3\r\nGET\r\n$1\r\nk\r").unwrap(), None);
        assert_eq!(in_place(b"*1\r").unwrap(), None);
        assert_eq!(in_place(b"PING").unwrap(), None);
    }

    #[test]
    fn in_place_unescapes_quoted_inline_words_over_their_source() {
        let mut buf = b"SET \"k\\\"1\" 'a b' \"\\n\"\r\nGET x\r\n".to_vec();
        let mut ranges = Vec::new();
        let len = parse_request_in_place(&mut buf, &Limits::default(), &mut ranges)
            .unwrap()
            .unwrap();
        let words: Vec<&[u8]> = ranges.iter().map(|r| &buf[r.clone()]).collect();
        assert_eq!(words, [&b"SET"[..], b"k\"1", b"a b", b"\n"]);
        assert_eq!(&buf[len..], b"GET x\r\n", "the next request is untouched");
    }

    #[test]
    fn headers_follow_redis_rules() {
        assert_eq!(in_place(b"*0\r\n").unwrap(), Some((4, vec![])));
        assert_eq!(
            in_place(b"*1\r\n$0\r\n\r\n").unwrap(),
            Some((10, vec![vec![]]))
        );
        assert_eq!(
            in_place(b"*1\rx\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            in_place(b"*1x\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            in_place(b"*\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            in_place(b"*-\r\n"),
            Err(ProtocolError::InvalidMultibulkLength)
        );
        assert_eq!(
            in_place(b"*1\r\n$999999999999999999\r\n"),
            Err(ProtocolError::BulkTooLarge(
                999_999_999_999_999_999,
                16 * 1024 * 1024
            ))
        );
        assert_eq!(
            in_place(b"*1\r\n$1000000000000000000\r\n"),
            Err(ProtocolError::InvalidBulkLength),
            "19 digits"
        );
    }

    /// Bytes that look like requests often enough to reach every branch.
    fn request_like_bytes() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            Just(b"*".to_vec()),
            Just(b"$".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"-".to_vec()),
            Just(b"0".to_vec()),
            Just(b" ".to_vec()),
            Just(b"\"".to_vec()),
            Just(b"'".to_vec()),
            Just(b"\\".to_vec()),
            (0u32..100).prop_map(|n| n.to_string().into_bytes()),
            proptest::collection::vec(any::<u8>(), 0..4),
            proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..5)
                .prop_map(|args| encode_request(&args)),
        ];
        proptest::collection::vec(piece, 0..24).prop_map(|v| v.concat())
    }

    /// What a connection fed `reads` one after another parses with
    /// `parse_request_in_place` (every complete request after each read):
    /// the requests' arguments, and the error that ended it, if any.
    fn drain_in_place(
        reads: &[&[u8]],
        limits: &Limits,
    ) -> (Vec<Vec<Vec<u8>>>, Option<ProtocolError>) {
        let mut buf = Vec::new();
        let mut ranges = Vec::new();
        let mut parsed = Vec::new();
        for read in reads {
            buf.extend_from_slice(read);
            let mut pos = 0;
            loop {
                match parse_request_in_place(&mut buf[pos..], limits, &mut ranges) {
                    Ok(Some(len)) => {
                        assert!(len > 0);
                        let frame = &buf[pos..pos + len];
                        parsed.push(ranges.iter().map(|r| frame[r.clone()].to_vec()).collect());
                        pos += len;
                    }
                    Ok(None) => break,
                    Err(e) => return (parsed, Some(e)),
                }
            }
            buf.drain(..pos);
        }
        (parsed, None)
    }

    /// The parser as it was before `parse_request_in_place` (copying into
    /// `Bytes`, scanning for CRLF): the model the new one must agree with.
    mod reference {
        use super::super::{Limits, ProtocolError, MAX_HEADER};
        use bytes::{Bytes, BytesMut};

        pub(super) fn parse_request(
            buf: &mut BytesMut,
            limits: &Limits,
        ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
            if buf.is_empty() {
                return Ok(None);
            }
            if buf[0] == b'*' {
                parse_multibulk(buf, limits)
            } else {
                parse_inline(buf, limits)
            }
        }

        fn find_crlf(buf: &[u8], from: usize, max: usize) -> Option<usize> {
            let end = buf.len().min(from.saturating_add(max));
            buf.get(from..end)?
                .windows(2)
                .position(|w| w == b"\r\n")
                .map(|p| p + from)
        }

        /// Parses the decimal integer in `line`, which must be all digits with an
        /// optional leading `-`.
        fn parse_int(line: &[u8]) -> Option<i64> {
            let (neg, digits) = match line.split_first() {
                Some((b'-', rest)) => (true, rest),
                _ => (false, line),
            };
            if digits.is_empty() || digits.len() > 18 || !digits.iter().all(u8::is_ascii_digit) {
                return None;
            }
            // Like Redis: no leading zeros ("01") and no "-0".
            if digits.len() > 1 && digits[0] == b'0' || neg && digits == b"0" {
                return None;
            }
            let v = digits
                .iter()
                .fold(0i64, |acc, d| acc * 10 + i64::from(d - b'0'));
            Some(if neg { -v } else { v })
        }

        /// Reads a `<prefix><int>\r\n` header at `pos`; `Ok(None)` if incomplete.
        fn header(
            buf: &[u8],
            pos: usize,
            bad: ProtocolError,
        ) -> Result<Option<(i64, usize)>, ProtocolError> {
            match find_crlf(buf, pos, MAX_HEADER) {
                Some(end) => {
                    let n = parse_int(&buf[pos + 1..end]).ok_or(bad)?;
                    Ok(Some((n, end + 2)))
                }
                None if buf.len() - pos >= MAX_HEADER => Err(bad),
                None => Ok(None),
            }
        }

        fn parse_multibulk(
            buf: &mut BytesMut,
            limits: &Limits,
        ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
            let Some((count, mut pos)) = header(buf, 0, ProtocolError::InvalidMultibulkLength)?
            else {
                return Ok(None);
            };
            if count < 0 {
                // `*-1` (a null array) is not a request; Redis skips it.
                if count == -1 {
                    let _ = buf.split_to(pos);
                    return Ok(Some(Vec::new()));
                }
                return Err(ProtocolError::InvalidMultibulkLength);
            }
            let count = count as u64;
            if count > limits.max_args as u64 {
                return Err(ProtocolError::TooManyArgs(count, limits.max_args));
            }
            // Never reserve from the peer's word alone: grow as arguments arrive.
            let mut ranges = Vec::with_capacity((count as usize).min(64));
            for _ in 0..count {
                let Some(&first) = buf.get(pos) else {
                    return Ok(None);
                };
                if first != b'$' {
                    return Err(ProtocolError::ExpectedBulk(char::from(first)));
                }
                let Some((len, start)) = header(buf, pos, ProtocolError::InvalidBulkLength)? else {
                    return Ok(None);
                };
                if len < 0 {
                    return Err(ProtocolError::InvalidBulkLength);
                }
                let len = len as u64;
                if len > limits.max_bulk as u64 {
                    return Err(ProtocolError::BulkTooLarge(len, limits.max_bulk));
                }
                let end = start + len as usize;
                if buf.len() < end + 2 {
                    return Ok(None);
                }
                if &buf[end..end + 2] != b"\r\n" {
                    return Err(ProtocolError::MissingCrlf);
                }
                ranges.push(start..end);
                pos = end + 2;
            }
            let frame = buf.split_to(pos).freeze();
            Ok(Some(ranges.into_iter().map(|r| frame.slice(r)).collect()))
        }

        fn parse_inline(
            buf: &mut BytesMut,
            limits: &Limits,
        ) -> Result<Option<Vec<Bytes>>, ProtocolError> {
            let Some(nl) = buf
                .iter()
                .take(limits.max_inline.saturating_add(1))
                .position(|&b| b == b'\n')
            else {
                if buf.len() > limits.max_inline {
                    return Err(ProtocolError::InlineTooLong);
                }
                return Ok(None);
            };
            let line = buf.split_to(nl + 1).freeze();
            let mut end = nl;
            if end > 0 && line[end - 1] == b'\r' {
                end -= 1;
            }
            let text = &line[..end];
            let args = if text.iter().any(|&c| c == b'"' || c == b'\'') {
                split_inline(text)?
            } else {
                // No quotes: the words are slices of the line, no copies.
                text.split(u8::is_ascii_whitespace)
                    .filter(|w| !w.is_empty())
                    .map(|w| line.slice_ref(w))
                    .collect()
            };
            if args.len() > limits.max_args {
                return Err(ProtocolError::TooManyArgs(
                    args.len() as u64,
                    limits.max_args,
                ));
            }
            if let Some(long) = args.iter().find(|a| a.len() > limits.max_bulk) {
                return Err(ProtocolError::BulkTooLarge(
                    long.len() as u64,
                    limits.max_bulk,
                ));
            }
            Ok(Some(args))
        }

        /// Splits an inline line on blanks; `"..."` and `'...'` group words, and
        /// double-quoted strings understand `\"`, `\\`, `\n`, `\r`, `\t`.
        fn split_inline(text: &[u8]) -> Result<Vec<Bytes>, ProtocolError> {
            let mut args = Vec::new();
            let mut i = 0;
            while i < text.len() {
                while i < text.len() && text[i].is_ascii_whitespace() {
                    i += 1;
                }
                if i == text.len() {
                    break;
                }
                let mut word = Vec::new();
                match text[i] {
                    q @ (b'"' | b'\'') => {
                        i += 1;
                        loop {
                            let Some(&c) = text.get(i) else {
                                return Err(ProtocolError::UnbalancedQuotes);
                            };
                            i += 1;
                            if c == q {
                                break;
                            }
                            if c == b'\\' && q == b'"' {
                                let Some(&e) = text.get(i) else {
                                    return Err(ProtocolError::UnbalancedQuotes);
                                };
                                i += 1;
                                word.push(match e {
                                    b'n' => b'\n',
                                    b'r' => b'\r',
                                    b't' => b'\t',
                                    other => other,
                                });
                            } else {
                                word.push(c);
                            }
                        }
                        if text.get(i).is_some_and(|c| !c.is_ascii_whitespace()) {
                            return Err(ProtocolError::UnbalancedQuotes);
                        }
                    }
                    _ => {
                        while i < text.len() && !text[i].is_ascii_whitespace() {
                            word.push(text[i]);
                            i += 1;
                        }
                    }
                }
                args.push(Bytes::from(word));
            }
            Ok(args)
        }
    }

    proptest! {
        #[test]
        fn multibulk_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..16)) {
            let bytes = encode_request(&args);
            let parsed = parse(&bytes).unwrap().unwrap();
            prop_assert_eq!(parsed.iter().map(|b| b.to_vec()).collect::<Vec<_>>(), args);
        }

        #[test]
        fn agrees_with_the_reference_parser(input in request_like_bytes()) {
            let limits = Limits { max_bulk: 40, max_args: 6, max_inline: 48 };
            let mut old = BytesMut::from(&input[..]);
            let mut new = BytesMut::from(&input[..]);
            // Drain both the way the server does.
            for _ in 0..=input.len() {
                let o = reference::parse_request(&mut old, &limits);
                let n = parse_request(&mut new, &limits);
                match (&o, &n) {
                    // The new parser may refuse earlier what no more bytes
                    // could make valid; everything else must agree.
                    (Ok(None), Err(_)) => break,
                    _ => prop_assert_eq!(&o, &n),
                }
                if !matches!(o, Ok(Some(_))) {
                    break;
                }
                prop_assert_eq!(&old[..], &new[..]);
            }
        }

        /// A pipeline read in two parts, split at any byte, parses as
        /// when read whole: the same requests, in order, and the same end.
        #[test]
        fn a_pipeline_parses_the_same_at_every_split(
            requests in proptest::collection::vec(request_like_bytes(), 1..6),
        ) {
            let limits = Limits { max_bulk: 40, max_args: 6, max_inline: 48 };
            let input = requests.concat();
            let whole = drain_in_place(&[&input], &limits);
            for cut in 0..=input.len() {
                let (a, b) = input.split_at(cut);
                prop_assert_eq!(&drain_in_place(&[a, b], &limits), &whole, "cut at {}", cut);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut buf = BytesMut::from(&input[..]);
            // Drain the buffer the way the server does; must terminate.
            for _ in 0..=input.len() {
                match parse_request(&mut buf, &Limits::default()) {
                    Ok(Some(_)) => continue,
                    _ => break,
                }
            }
        }
    }
}
