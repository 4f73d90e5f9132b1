//! Commands: parsing of arguments, execution against the keyspace, replies.
//!
//! One file per family: [`session`] (`SESS.*`), [`keys`] (plain Redis data
//! commands), [`connection`] (AUTH, HELLO, CLIENT...), [`server`] (INFO,
//! CONFIG, DBSIZE...). [`execute`] dispatches on the command name; an unknown
//! name is an error reply, never a crash.

/// Unwraps an argument-parsing result or returns its error reply.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reply) => return reply,
        }
    };
}

mod connection;
mod keys;
mod server;
mod session;

use bytes::Bytes;
use sticky_proto::command::SessionCommand;
use sticky_proto::resp::{Reply, Version};
use sticky_proto::Stamp;

use crate::keyspace::WriteError;
use crate::server::Shared;

/// Per-connection state that commands read and change.
#[derive(Debug)]
pub(crate) struct Client {
    pub(crate) id: u64,
    pub(crate) authenticated: bool,
    pub(crate) version: Version,
    pub(crate) name: Option<Bytes>,
    /// Set by `QUIT`: close after flushing the reply.
    pub(crate) quit: bool,
    /// Wrong passwords presented on this connection.
    pub(crate) auth_failures: u32,
}

/// Wrong passwords one connection may present before it is closed: enough
/// for a typo, too few to guess.
pub(crate) const MAX_AUTH_FAILURES: u32 = 10;

/// Whether a request is a line of HTTP (`POST /`, `GET / HTTP/1.1`,
/// `Host: ...`): a web page making the browser send a request to the store
/// (cross-protocol scripting). Like Redis, the store closes the connection
/// at such a line, before anything after it (a request body full of
/// commands) runs.
pub(crate) fn is_http(args: &[&[u8]]) -> bool {
    match args {
        [name, ..] if name.eq_ignore_ascii_case(b"POST") || name.eq_ignore_ascii_case(b"HOST:") => {
            true
        }
        // A request line has three words; Redis's GET takes one argument.
        [name, _, version]
            if name.eq_ignore_ascii_case(b"GET") || name.eq_ignore_ascii_case(b"PUT") =>
        {
            version.len() >= 5 && version[..5].eq_ignore_ascii_case(b"HTTP/")
        }
        _ => false,
    }
}

impl Client {
    pub(crate) fn new(id: u64, needs_auth: bool) -> Self {
        Self {
            id,
            authenticated: !needs_auth,
            version: Version::Resp2,
            name: None,
            quit: false,
            auth_failures: 0,
        }
    }
}

/// Executes one request and returns its reply.
pub(crate) fn execute(shared: &Shared, client: &mut Client, args: &[&[u8]]) -> Reply {
    let Some(name) = args.first() else {
        return Reply::error("ERR empty command");
    };
    let mut upper = [0u8; 16];
    let Some(cmd) = upper.get_mut(..name.len()) else {
        return unknown(name, args);
    };
    cmd.copy_from_slice(name);
    cmd.make_ascii_uppercase();
    let cmd: &[u8] = cmd;
    if !client.authenticated && !matches!(cmd, b"AUTH" | b"HELLO" | b"QUIT") {
        return Reply::error("NOAUTH Authentication required.");
    }
    let a = &args[1..];
    let ks = &shared.keyspace;
    if let Some(session_cmd) = SessionCommand::from_name(cmd) {
        count(shared, session_cmd);
        return match session_cmd {
            SessionCommand::Put => session::put(ks, a),
            SessionCommand::Get => session::get(shared, a),
            SessionCommand::Claim => session::claim(ks, a),
            SessionCommand::Touch => session::touch(ks, a),
            SessionCommand::Del => session::del(shared, a),
            SessionCommand::Lease => session::lease(shared, a),
            SessionCommand::Kill => session::kill(shared, a),
            SessionCommand::Prepare => session::prepare(shared, a),
            SessionCommand::Owned => session::owned(ks, a),
        };
    }
    match cmd {
        b"GET" => keys::get(ks, a),
        b"SET" => keys::set(ks, a),
        b"DEL" | b"UNLINK" => keys::del(ks, a),
        b"EXISTS" => keys::exists(ks, a),
        b"EXPIRE" => keys::expire(ks, a, 1000),
        b"PEXPIRE" => keys::expire(ks, a, 1),
        b"TTL" => keys::ttl(ks, a, 1000),
        b"PTTL" => keys::ttl(ks, a, 1),
        b"TYPE" => keys::key_type(ks, a),
        b"PING" => connection::ping(a),
        b"ECHO" => connection::echo(a),
        b"AUTH" => connection::auth(shared, client, a),
        b"HELLO" => connection::hello(shared, client, a),
        b"SELECT" => connection::select(a),
        b"CLIENT" => connection::client(client, a),
        b"QUIT" => {
            client.quit = true;
            Reply::OK
        }
        b"DBSIZE" => server::dbsize(ks, a),
        b"INFO" => server::info(shared, a),
        b"CONFIG" => server::config(shared, a),
        b"FLUSHALL" | b"FLUSHDB" => server::flush(ks, a),
        b"COMMAND" => server::command(a),
        _ => unknown(name, args),
    }
}

fn count(shared: &Shared, cmd: SessionCommand) {
    crate::stats::Stats::add(&shared.stats.session_calls[cmd.index()], 1);
}

fn unknown(name: &[u8], args: &[&[u8]]) -> Reply {
    let shown: String = String::from_utf8_lossy(name).chars().take(64).collect();
    let rest: String = args
        .iter()
        .skip(1)
        .take(4)
        .map(|a| {
            format!(
                "'{}' ",
                String::from_utf8_lossy(a)
                    .chars()
                    .take(32)
                    .collect::<String>()
            )
        })
        .collect();
    Reply::error(format!(
        "ERR unknown command '{shown}', with args beginning with: {rest}"
    ))
}

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

impl From<WriteError> for Reply {
    fn from(e: WriteError) -> Self {
        Reply::error(e.to_string())
    }
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
