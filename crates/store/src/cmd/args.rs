//! Argument parsing shared by every command family, and its error replies.

use sticky_proto::resp::Reply;
use sticky_proto::Stamp;

/// `-ERR wrong number of arguments for '<cmd>' command`.
pub(crate) fn arity(cmd: &str) -> Reply {
    Reply::error(format!("ERR wrong number of arguments for '{cmd}' command"))
}

/// Parses a signed decimal argument.
pub(crate) fn int_arg(arg: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Reply::error("ERR value is not an integer or out of range"))
}

/// Parses an unsigned decimal argument below 2^63.
pub(crate) fn uint_arg(arg: &[u8]) -> Result<u64, Reply> {
    match int_arg(arg)? {
        n if n >= 0 => Ok(n as u64),
        _ => Err(Reply::error("ERR value is out of range, must be positive")),
    }
}

/// Largest stamp part accepted: 2^53 − 1. Far above any real count of
/// takeovers or writes, and it leaves room above it, so a client cannot
/// write a stamp that no later claim can exceed.
pub(crate) const MAX_STAMP_PART: u64 = (1 << 53) - 1;

/// Parses one part of a stamp: plain decimal digits (no sign), at most
/// [`MAX_STAMP_PART`].
pub(crate) fn stamp_part(arg: &[u8]) -> Result<u64, Reply> {
    let digits = !arg.is_empty() && arg.len() <= 16 && arg.iter().all(u8::is_ascii_digit);
    let n = digits
        .then(|| std::str::from_utf8(arg).ok()?.parse::<u64>().ok())
        .flatten();
    match n {
        Some(n) if n <= MAX_STAMP_PART => Ok(n),
        _ => Err(Reply::error(format!(
            "ERR a stamp part must be decimal digits from 0 to {MAX_STAMP_PART}"
        ))),
    }
}

/// Parses a `gen seq` pair.
pub(crate) fn stamp_args(g: &[u8], s: &[u8]) -> Result<Stamp, Reply> {
    Ok(Stamp::new(stamp_part(g)?, stamp_part(s)?))
}

/// Redis-style glob match with `*`, `?` and `[...]`-less patterns.
pub(crate) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some(p);
                mark = t;
                p += 1;
            }
            Some(&c) if c == b'?' || c.eq_ignore_ascii_case(&text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some(s) => {
                    p = s + 1;
                    mark += 1;
                    t = mark;
                }
                None => return false,
            },
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob;

    #[test]
    fn glob_matches_like_redis() {
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"max*", b"maxmemory"));
        assert!(glob(b"save", b"SAVE"));
        assert!(glob(b"a?c", b"abc"));
        assert!(!glob(b"a?c", b"abbc"));
        assert!(glob(b"*mem*", b"maxmemory"));
        assert!(!glob(b"appendonly", b"save"));
    }
}
