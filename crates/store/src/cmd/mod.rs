//! Commands: parsing of arguments, execution against the keyspace, replies.
//!
//! One file per family: [`session`] (`SESS.*`), [`keys`] (plain Redis data
//! commands), [`connection`] (AUTH, HELLO, CLIENT...), [`server`] (INFO,
//! CONFIG, DBSIZE...). [`execute`] dispatches on the command name; an unknown
//! name is an error reply, never a crash. `args` parses arguments for all
//! of them; `client` is the per-connection state they read and change.

/// Unwraps an argument-parsing result or returns its error reply.
macro_rules! tri {
    ($e:expr) => {
        match $e {
            Ok(v) => v,
            Err(reply) => return reply,
        }
    };
}

mod args;
mod client;
mod connection;
mod keys;
mod server;
mod session;

use sticky_proto::command::SessionCommand;
use sticky_proto::resp::Reply;

use crate::keyspace::WriteError;
use crate::shared::Shared;

pub(crate) use client::{Client, MAX_AUTH_FAILURES};

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

/// Executes one request and returns its reply.
/// The hot commands of a plain key-value workload by an authenticated
/// client, encoded straight into `out`: `GET key` under the shard lock
/// ([`Keyspace::get_into`](crate::keyspace::Keyspace::get_into)), and a
/// bare `PING`. Returns false for every other command: [`execute`] it.
pub(crate) fn execute_fast(
    shared: &Shared,
    client: &Client,
    args: &[&[u8]],
    out: &mut bytes::BytesMut,
) -> bool {
    if !client.authenticated {
        return false;
    }
    match args {
        [name, key] if name.eq_ignore_ascii_case(b"GET") => {
            shared.keyspace.get_into(key, client.version, out);
            true
        }
        // Health checks and pipelined probes: no dispatch for a constant.
        [name] if name.eq_ignore_ascii_case(b"PING") => {
            out.extend_from_slice(b"+PONG\r\n");
            true
        }
        _ => false,
    }
}

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

impl From<WriteError> for Reply {
    fn from(e: WriteError) -> Self {
        Reply::error(e.to_string())
    }
}
