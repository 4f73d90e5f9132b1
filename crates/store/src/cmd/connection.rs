//! Connection commands: PING, ECHO, AUTH, HELLO, SELECT, CLIENT.

use bytes::Bytes;
use sticky_proto::resp::{Reply, Version};
use subtle::ConstantTimeEq;

use super::args::arity;
use super::client::Client;
use crate::config::REDIS_VERSION;
use crate::shared::Shared;

/// `PING [message]`
pub(super) fn ping(a: &[&[u8]]) -> Reply {
    match a {
        [] => Reply::Simple("PONG"),
        [msg] => Reply::bulk(msg),
        _ => arity("ping"),
    }
}

/// `ECHO message`
pub(super) fn echo(a: &[&[u8]]) -> Reply {
    match a {
        [msg] => Reply::bulk(msg),
        _ => arity("echo"),
    }
}

fn check_password(shared: &Shared, client: &mut Client, user: &[u8], pass: &[u8]) -> Reply {
    let Some(expected) = &shared.config.requirepass else {
        return Reply::error(
            "ERR AUTH <password> called without any password configured for the default user. \
             Are you sure your configuration is correct?",
        );
    };
    // Constant time in the password's content; only its length can leak.
    let ok = user == b"default" && bool::from(pass.ct_eq(expected.as_bytes()));
    if ok {
        client.authenticated = true;
        Reply::OK
    } else {
        client.auth_failures = client.auth_failures.saturating_add(1);
        tracing::debug!(client = client.id, "AUTH with a wrong password");
        Reply::error("WRONGPASS invalid username-password pair or user is disabled.")
    }
}

/// `AUTH [username] password`
pub(super) fn auth(shared: &Shared, client: &mut Client, a: &[&[u8]]) -> Reply {
    match a {
        [pass] => check_password(shared, client, b"default", pass),
        [user, pass] => check_password(shared, client, user, pass),
        _ => arity("auth"),
    }
}

/// `HELLO [protover [AUTH username password] [SETNAME clientname]]`
pub(super) fn hello(shared: &Shared, client: &mut Client, a: &[&[u8]]) -> Reply {
    let mut version = client.version;
    let mut rest = a;
    if let [v, more @ ..] = a {
        version = match &v[..] {
            b"2" => Version::Resp2,
            b"3" => Version::Resp3,
            _ => return Reply::error("NOPROTO unsupported protocol version"),
        };
        rest = more;
    }
    let mut name = None;
    while let [opt, more @ ..] = rest {
        if opt.eq_ignore_ascii_case(b"AUTH") {
            let [user, pass, more @ ..] = more else {
                return Reply::error("ERR Syntax error in HELLO option 'auth'");
            };
            if let Reply::Error(e) = check_password(shared, client, user, pass) {
                return Reply::Error(e);
            }
            rest = more;
        } else if opt.eq_ignore_ascii_case(b"SETNAME") {
            let [n, more @ ..] = more else {
                return Reply::error("ERR Syntax error in HELLO option 'setname'");
            };
            name = Some(Bytes::copy_from_slice(n));
            rest = more;
        } else {
            return Reply::error(format!(
                "ERR Syntax error in HELLO option '{}'",
                String::from_utf8_lossy(opt)
                    .chars()
                    .take(32)
                    .collect::<String>()
            ));
        }
    }
    if !client.authenticated {
        return Reply::error(
            "NOAUTH HELLO must be called with the client already authenticated, otherwise the \
             HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and \
             select the RESP protocol version at the same time",
        );
    }
    client.version = version;
    if name.is_some() {
        client.name = name;
    }
    let proto = if version == Version::Resp3 { 3 } else { 2 };
    Reply::Map(vec![
        (Reply::bulk("server"), Reply::bulk("redis")),
        (Reply::bulk("version"), Reply::bulk(REDIS_VERSION)),
        (Reply::bulk("proto"), Reply::Int(proto)),
        (Reply::bulk("id"), Reply::Int(client.id as i64)),
        (Reply::bulk("mode"), Reply::bulk("standalone")),
        (Reply::bulk("role"), Reply::bulk("master")),
        (Reply::bulk("modules"), Reply::Array(Vec::new())),
    ])
}

/// `SELECT 0`: there is one database.
pub(super) fn select(a: &[&[u8]]) -> Reply {
    match a {
        [db] if &db[..] == b"0" => Reply::OK,
        [_] => Reply::error("ERR DB index is out of range"),
        _ => arity("select"),
    }
}

/// `CLIENT SETNAME | GETNAME | SETINFO | ID`
pub(super) fn client(client: &mut Client, a: &[&[u8]]) -> Reply {
    let Some(sub) = a.first() else {
        return arity("client");
    };
    let args = &a[1..];
    if sub.eq_ignore_ascii_case(b"SETNAME") {
        match args {
            [n] if n.iter().all(|c| c.is_ascii_graphic()) => {
                client.name = (!n.is_empty()).then(|| Bytes::copy_from_slice(n));
                Reply::OK
            }
            [_] => Reply::error(
                "ERR Client names cannot contain spaces, newlines or special characters.",
            ),
            _ => arity("client|setname"),
        }
    } else if sub.eq_ignore_ascii_case(b"GETNAME") {
        client.name.clone().map_or(Reply::Null, Reply::Bulk)
    } else if sub.eq_ignore_ascii_case(b"SETINFO") {
        match args {
            [_, _] => Reply::OK,
            _ => arity("client|setinfo"),
        }
    } else if sub.eq_ignore_ascii_case(b"ID") {
        Reply::Int(client.id as i64)
    } else {
        Reply::error(format!(
            "ERR unknown subcommand '{}'. Try CLIENT HELP.",
            String::from_utf8_lossy(sub)
                .chars()
                .take(32)
                .collect::<String>()
        ))
    }
}
