//! Server commands: DBSIZE, INFO, CONFIG GET, FLUSHALL, COMMAND.

use std::fmt::Write as _;

use bytes::Bytes;
use sticky_proto::resp::Reply;

use super::args::{arity, glob};
use crate::config::REDIS_VERSION;
use crate::keyspace::Keyspace;
use crate::shared::Shared;

/// `DBSIZE`
pub(super) fn dbsize(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    if !a.is_empty() {
        return arity("dbsize");
    }
    Reply::Int(ks.counts().0 as i64)
}

/// `FLUSHALL [ASYNC|SYNC]`, `FLUSHDB [ASYNC|SYNC]`
pub(super) fn flush(ks: &Keyspace, a: &[&[u8]]) -> Reply {
    match a {
        [] => {}
        [m] if m.eq_ignore_ascii_case(b"ASYNC") || m.eq_ignore_ascii_case(b"SYNC") => {}
        _ => return Reply::error("ERR syntax error"),
    }
    ks.flush();
    tracing::info!("keyspace flushed by FLUSHALL");
    Reply::OK
}

/// `COMMAND`, `COMMAND COUNT`, `COMMAND DOCS`: enough for redis-cli.
pub(super) fn command(a: &[&[u8]]) -> Reply {
    match a.first() {
        Some(sub) if sub.eq_ignore_ascii_case(b"COUNT") => Reply::Int(COMMANDS.len() as i64),
        Some(sub) if sub.eq_ignore_ascii_case(b"DOCS") => Reply::Map(Vec::new()),
        _ => Reply::Array(Vec::new()),
    }
}

/// Commands this server implements (for `COMMAND COUNT`).
const COMMANDS: &[&str] = &[
    "get",
    "set",
    "del",
    "unlink",
    "exists",
    "expire",
    "pexpire",
    "ttl",
    "pttl",
    "type",
    "sess.put",
    "sess.get",
    "sess.claim",
    "sess.touch",
    "sess.del",
    "ping",
    "echo",
    "auth",
    "hello",
    "select",
    "client",
    "quit",
    "dbsize",
    "info",
    "config",
    "flushall",
    "flushdb",
    "command",
];

/// `CONFIG GET pattern [pattern ...]` (read-only: `CONFIG SET` is refused).
pub(super) fn config(shared: &Shared, a: &[&[u8]]) -> Reply {
    let [sub, patterns @ ..] = a else {
        return arity("config");
    };
    if !sub.eq_ignore_ascii_case(b"GET") {
        return Reply::error("ERR CONFIG subcommands other than GET are not supported");
    }
    if patterns.is_empty() {
        return arity("config|get");
    }
    let c = &shared.config;
    let params: [(&str, String); 8] = [
        ("bind", c.listen.ip().to_string()),
        ("port", c.listen.port().to_string()),
        ("maxmemory", c.max_memory.to_string()),
        ("maxmemory-policy", "noeviction".into()),
        ("maxclients", c.max_clients.to_string()),
        (
            "timeout",
            c.idle_timeout.map_or(0, |d| d.as_secs()).to_string(),
        ),
        ("save", String::new()),
        ("appendonly", "no".into()),
    ];
    let pairs = params
        .iter()
        .filter(|(name, _)| patterns.iter().any(|p| glob(p, name.as_bytes())))
        .map(|(name, value)| (Reply::bulk(name), Reply::bulk(value)))
        .collect();
    Reply::Map(pairs)
}

/// `INFO [section ...]`: server, clients, memory, stats, keyspace.
pub(super) fn info(shared: &Shared, a: &[&[u8]]) -> Reply {
    let all = a.is_empty()
        || a.iter().any(|s| {
            s.eq_ignore_ascii_case(b"all")
                || s.eq_ignore_ascii_case(b"everything")
                || s.eq_ignore_ascii_case(b"default")
        });
    let want = |name: &str| all || a.iter().any(|s| s.eq_ignore_ascii_case(name.as_bytes()));
    let s = shared.snapshot();
    let mut out = String::new();
    // Writing to a String cannot fail.
    if want("server") {
        let _ = write!(
            out,
            "# Server\r\nredis_version:{}\r\nsticky_version:{}\r\nredis_mode:standalone\r\n\
             process_id:{}\r\nrun_id:{}\r\nsticky_flushes:{}\r\ntcp_port:{}\r\n\
             uptime_in_seconds:{}\r\n\r\n",
            REDIS_VERSION,
            env!("CARGO_PKG_VERSION"),
            std::process::id(),
            shared.run_id,
            shared.keyspace.flushes(),
            shared.config.listen.port(),
            shared.started.elapsed().as_secs(),
        );
    }
    if want("clients") {
        let _ = write!(
            out,
            "# Clients\r\nconnected_clients:{}\r\nmaxclients:{}\r\n\r\n",
            s.connected_clients, shared.config.max_clients
        );
    }
    if want("memory") {
        let _ = write!(
            out,
            "# Memory\r\nused_memory:{}\r\nused_memory_human:{}\r\nused_memory_rss:{}\r\n\
             maxmemory:{}\r\nmaxmemory_policy:noeviction\r\n\r\n",
            s.used_memory,
            human(s.used_memory),
            s.rss,
            s.max_memory
        );
    }
    if want("stats") {
        let _ = write!(
            out,
            "# Stats\r\ntotal_connections_received:{}\r\ntotal_commands_processed:{}\r\n\
             rejected_connections:{}\r\nexpired_keys:{}\r\nstale_puts_refused:{}\r\n\
             oom_refused:{}\r\nprotocol_errors:{}\r\nnaps:{}\r\n\r\n",
            s.connections_received,
            s.commands_processed,
            s.rejected_connections,
            s.expired_keys,
            s.stale_refused,
            s.oom_refused,
            s.protocol_errors,
            s.naps
        );
    }
    if want("commandstats") {
        let _ = write!(out, "# Commandstats\r\n");
        for (name, calls) in crate::stats::SESSION_COMMANDS.iter().zip(s.session_calls) {
            let _ = write!(out, "cmdstat_{name}:calls={calls}\r\n");
        }
        let _ = write!(out, "\r\n");
    }
    if want("ownership") {
        let leases = &shared.leases;
        let now = crate::keyspace::now_ms();
        let _ = write!(
            out,
            "# Ownership\r\nleases:{}\r\nrestarted:{}\r\nrecovering_ms:{}\r\n\r\n",
            leases.len(),
            u8::from(leases.restarted()),
            leases.recovering(now).unwrap_or(0)
        );
    }
    if want("keyspace") {
        let _ = write!(out, "# Keyspace\r\n");
        if s.keys > 0 {
            let _ = write!(
                out,
                "db0:keys={},expires={},avg_ttl=0\r\n",
                s.keys, s.keys_with_ttl
            );
        }
    }
    Reply::Bulk(Bytes::from(out))
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "K", "M", "G", "T"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2}{}", UNITS[u])
}
