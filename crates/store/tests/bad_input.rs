//! Bad input over raw TCP against a store served in this process on a free
//! port ([`StoreServer`]): garbage, truncated
//! and malformed frames, oversized declarations, connection floods and idle
//! clients. Each time the offending connection gets an error or is closed,
//! while a client connected before keeps working and the data written
//! before is still there.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::time::{Duration, Instant};

use sticky_proto::resp::Limits;
use sticky_store::StoreConfig;
use sticky_test_support::{encode_request, wait_until, Resp, RespConn, StoreServer, DEADLINE};

/// A client connected, with data written, before an attack.
struct Bystander {
    conn: RespConn,
    tag: String,
}

impl Bystander {
    fn new(store: &StoreServer, tag: &str) -> Bystander {
        let mut conn = store.client();
        assert_eq!(
            conn.cmd(&[b"SET", format!("before:{tag}").as_bytes(), b"plain value"])
                .unwrap(),
            Resp::ok()
        );
        assert_eq!(
            conn.cmd(&[
                b"SESS.PUT",
                format!("sess:{tag}").as_bytes(),
                b"1",
                b"1",
                b"ws1",
                b"0",
                b"session payload",
            ])
            .unwrap(),
            Resp::ok()
        );
        Bystander {
            conn,
            tag: tag.to_owned(),
        }
    }

    /// The store still runs, this connection still works, the data is
    /// still there, and new clients are served.
    fn check(&mut self, store: &StoreServer) {
        assert!(store.is_running(), "the store stopped serving");
        let tag = &self.tag;
        let c = &mut self.conn;
        assert_eq!(c.cmd_str("PING"), Resp::simple("PONG"), "[{tag}]");
        assert_eq!(
            c.cmd(&[b"GET", format!("before:{tag}").as_bytes()])
                .unwrap(),
            Resp::bulk("plain value"),
            "[{tag}]"
        );
        match c
            .cmd(&[b"SESS.GET", format!("sess:{tag}").as_bytes()])
            .unwrap()
        {
            Resp::Array(items) => assert_eq!(items[5], Resp::bulk("session payload")),
            other => panic!("[{tag}] SESS.GET after the attack: {other:?}"),
        }
        let mut fresh = store.client();
        assert_eq!(fresh.cmd_str("PING"), Resp::simple("PONG"), "[{tag}]");
        assert_eq!(
            fresh
                .cmd(&[b"GET", format!("before:{tag}").as_bytes()])
                .unwrap(),
            Resp::bulk("plain value"),
            "[{tag}]"
        );
    }
}

/// A raw connection that has not sent anything yet.
fn attacker(store: &StoreServer) -> RespConn {
    RespConn::from_stream(store.connect()).unwrap()
}

/// Sends `bytes`, ignoring a write error (the store may close first).
fn send(c: &mut RespConn, bytes: &[u8]) {
    let _ = c.send_raw(bytes);
}

/// Reads exactly the error `-expected`, then the store must close.
fn expect_error_then_close(c: &mut RespConn, expected: &str, what: &str) {
    assert_eq!(
        c.read_reply()
            .unwrap_or_else(|e| panic!("{what}: no reply: {e}")),
        Resp::error(expected),
        "{what}"
    );
    let rest = c.read_to_close();
    assert!(
        rest.is_empty(),
        "{what}: more after the error: {:?}",
        String::from_utf8_lossy(&rest)
    );
}

/// The store must close; if the error reply arrived before (it may be lost
/// to a connection reset when unread input remained), it is `-expected`.
fn expect_close_maybe_error(c: &mut RespConn, expected: &str, what: &str) {
    let got = c.read_to_close();
    assert!(
        got.is_empty() || got == format!("-{expected}\r\n").as_bytes(),
        "{what}: got {:?}",
        String::from_utf8_lossy(&got)
    );
}

fn info_field(store: &StoreServer, section: &str, name: &str) -> String {
    store
        .client()
        .cmd(&[b"INFO", section.as_bytes()])
        .unwrap()
        .info_field(name)
        .unwrap_or_else(|| panic!("INFO {section} has no {name}"))
}

/// Deterministic pseudo-random bytes (xorshift).
fn garbage(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 24) as u8
        })
        .collect()
}

#[test]
fn garbage_bytes() {
    let store = StoreServer::start_default();
    let mut by = Bystander::new(&store, "garbage");

    // A line of binary junk is an unknown inline command: an error reply,
    // and the connection stays usable, as with Redis.
    let mut c = attacker(&store);
    send(&mut c, b"\x00\x01\xfe\xff junk \x7f\r\n");
    assert!(
        c.read_reply()
            .unwrap()
            .is_error_starting("ERR unknown command"),
        "junk line"
    );
    assert_eq!(c.cmd_str("PING"), Resp::simple("PONG"));

    // 256 KB of random bytes, then EOF: every reply is an error, and the
    // store ends the connection (protocol error or our EOF).
    for seed in [1, 0x5eed, 0xdead_beef] {
        let mut c = attacker(&store);
        send(&mut c, &garbage(256 * 1024, seed));
        let _ = c.shutdown_write();
        let got = c.read_to_close();
        for line in got.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(
                line.is_empty() || line.starts_with(b"-ERR "),
                "seed {seed}: non-error reply {:?}",
                String::from_utf8_lossy(line)
            );
        }
    }
    by.check(&store);
    let errors: u64 = info_field(&store, "stats", "protocol_errors")
        .parse()
        .unwrap();
    assert!(errors >= 1, "protocol_errors {errors}");
}

#[test]
fn malformed_frames_get_a_protocol_error_and_are_closed() {
    let store = StoreServer::start_default();
    let mut by = Bystander::new(&store, "malformed");
    let cases: &[(&str, &[u8], &str)] = &[
        (
            "bad count",
            b"*abc\r\n",
            "ERR Protocol error: invalid multibulk length",
        ),
        (
            "negative count",
            b"*-5\r\n",
            "ERR Protocol error: invalid multibulk length",
        ),
        (
            "header without CRLF",
            &[b'*'; 40],
            "ERR Protocol error: invalid multibulk length",
        ),
        (
            "integer instead of bulk",
            b"*1\r\n:1\r\n",
            "ERR Protocol error: expected '$', got ':'",
        ),
        (
            "bad bulk length",
            b"*1\r\n$x\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            "null bulk",
            b"*1\r\n$-1\r\n",
            "ERR Protocol error: invalid bulk length",
        ),
        (
            "bulk longer than declared",
            b"*1\r\n$1\r\nab\r\n",
            "ERR Protocol error: bulk string not terminated by CRLF",
        ),
        (
            "unterminated double quote",
            b"SET k \"abc\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
        (
            "unterminated single quote",
            b"SET k 'abc\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
        (
            "text glued to a closing quote",
            b"SET k \"a\"b\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
        (
            "escape at the end of a quoted string",
            b"SET k \"abc\\\r\n",
            "ERR Protocol error: unbalanced quotes in request",
        ),
    ];
    for (what, bytes, expected) in cases {
        let mut c = attacker(&store);
        send(&mut c, bytes);
        expect_error_then_close(&mut c, expected, what);
    }

    // Replies to the valid requests before a bad frame come first.
    let mut c = attacker(&store);
    send(&mut c, b"PING\r\n*1\r\n$4\r\nPING\r\n*x\r\n");
    assert_eq!(c.read_reply().unwrap(), Resp::simple("PONG"));
    assert_eq!(c.read_reply().unwrap(), Resp::simple("PONG"));
    expect_error_then_close(
        &mut c,
        "ERR Protocol error: invalid multibulk length",
        "bad frame after good ones",
    );

    // A quoted inline command that is complete works.
    let mut c = attacker(&store);
    send(&mut c, b"SET quoted \"a b\\n\" \r\n");
    assert_eq!(c.read_reply().unwrap(), Resp::ok());
    assert_eq!(c.cmd_str("GET quoted"), Resp::bulk("a b\n"));

    by.check(&store);
    let errors: u64 = info_field(&store, "stats", "protocol_errors")
        .parse()
        .unwrap();
    assert_eq!(errors, cases.len() as u64 + 1);
}

#[test]
fn truncated_frames_then_disconnect() {
    let store = StoreServer::start_default();
    let mut by = Bystander::new(&store, "truncated");
    let full = encode_request(&[b"SET", b"t", b"hello"]);
    // Every strict prefix, each on its own connection, then a disconnect.
    for cut in 1..full.len() {
        let mut c = attacker(&store);
        send(&mut c, &full[..cut]);
        drop(c);
    }
    // A declared 10 MB value of which 1 MB arrives, then a disconnect.
    let mut c = attacker(&store);
    send(&mut c, b"*3\r\n$3\r\nSET\r\n$1\r\nt\r\n$10000000\r\n");
    send(&mut c, &vec![b'x'; 1_000_000]);
    drop(c);
    by.check(&store);
    assert_eq!(
        by.conn.cmd_str("GET t"),
        Resp::NilBulk,
        "a truncated SET landed"
    );

    // A frame split anywhere is executed once it is complete.
    for cut in 1..full.len() {
        let mut c = attacker(&store);
        send(&mut c, &full[..cut]);
        c.stream().flush().unwrap();
        send(&mut c, &full[cut..]);
        assert_eq!(c.read_reply().unwrap(), Resp::ok(), "cut at {cut}");
    }
    assert_eq!(by.conn.cmd_str("GET t"), Resp::bulk("hello"));
    by.check(&store);
}

#[test]
fn a_1_gb_bulk_length_is_refused_from_the_header_alone() {
    let store = StoreServer::start_default();
    let mut by = Bystander::new(&store, "huge-bulk");
    let rss_before = store.rss_bytes();
    let mut c = attacker(&store);
    // Only the header: the store must answer without waiting for the body.
    send(&mut c, b"*2\r\n$3\r\nSET\r\n$1073741824\r\n");
    expect_error_then_close(
        &mut c,
        "ERR Protocol error: bulk length 1073741824 over the limit of 16777216 bytes",
        "1 GB bulk",
    );
    // The same with the body starting to stream in.
    let mut c = attacker(&store);
    send(&mut c, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1073741824\r\n");
    send(&mut c, &vec![b'x'; 256 * 1024]);
    expect_close_maybe_error(
        &mut c,
        "ERR Protocol error: bulk length 1073741824 over the limit of 16777216 bytes",
        "1 GB bulk with a body",
    );
    // Lengths beyond i64 and u64.
    for len in ["9223372036854775807", "99999999999999999999999"] {
        let mut c = attacker(&store);
        send(&mut c, format!("*1\r\n${len}\r\n").as_bytes());
        let reply = c.read_reply().unwrap();
        assert!(
            reply.is_error_starting("ERR Protocol error: "),
            "${len}: {reply:?}"
        );
        assert!(c.read_to_close().is_empty());
    }
    let rss_after = store.rss_bytes();
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
    assert!(rss_after < 256 * 1024 * 1024, "RSS {rss_after} bytes");
    by.check(&store);
}

#[test]
fn max_bulk_is_enforced() {
    let store = StoreServer::start(StoreConfig {
        limits: Limits {
            max_bulk: 1024,
            ..Limits::default()
        },
        ..StoreConfig::default()
    });
    let mut by = Bystander::new(&store, "max-bulk");
    let mut c = attacker(&store);
    assert_eq!(c.cmd(&[b"SET", b"k", &[b'a'; 1024]]).unwrap(), Resp::ok());
    let mut c = attacker(&store);
    send(&mut c, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n");
    expect_error_then_close(
        &mut c,
        "ERR Protocol error: bulk length 1025 over the limit of 1024 bytes",
        "max_bulk 1 KiB",
    );
    by.check(&store);
}

#[test]
fn a_frame_declaring_100000_arguments() {
    let store = StoreServer::start_default();
    let mut by = Bystander::new(&store, "many-args");
    let expected = "ERR Protocol error: too many arguments: 100000 (limit 4096)";
    let rss_before = store.rss_bytes();
    // The header alone is refused.
    let mut c = attacker(&store);
    send(&mut c, b"*100000\r\n");
    expect_error_then_close(&mut c, expected, "*100000 header");
    // With all 100,000 arguments following: refused and closed too.
    let mut frame = b"*100000\r\n".to_vec();
    for _ in 0..100_000 {
        frame.extend_from_slice(b"$1\r\na\r\n");
    }
    let mut c = attacker(&store);
    send(&mut c, &frame);
    expect_close_maybe_error(&mut c, expected, "*100000 with arguments");
    // Inline commands have the same limit.
    let mut c = attacker(&store);
    send(&mut c, format!("{}\r\n", "a ".repeat(5000)).as_bytes());
    expect_error_then_close(
        &mut c,
        "ERR Protocol error: too many arguments: 5000 (limit 4096)",
        "5000 inline words",
    );
    // At the limit, a command is executed (and is just unknown or wrong).
    let mut c = attacker(&store);
    let mut args: Vec<&[u8]> = vec![b"DEL"];
    args.extend(std::iter::repeat_n(&b"nokey"[..], 4095));
    assert_eq!(c.cmd(&args).unwrap(), Resp::Int(0));
    let rss_after = store.rss_bytes();
    assert!(
        rss_after < rss_before + 64 * 1024 * 1024,
        "RSS grew from {rss_before} to {rss_after} bytes"
    );
    by.check(&store);
}

#[test]
fn an_over_long_inline_line() {
    let store = StoreServer::start_default();
    let mut by = Bystander::new(&store, "inline");
    let expected = "ERR Protocol error: too big inline request";
    // One byte over 64 KiB, without a newline: all of it must be read
    // before the store can tell, so the reply is never lost to a reset.
    let mut c = attacker(&store);
    send(&mut c, &vec![b'a'; 64 * 1024 + 1]);
    expect_error_then_close(&mut c, expected, "64 KiB + 1 inline");
    // 70 KB without a newline.
    let mut c = attacker(&store);
    send(&mut c, &vec![b'a'; 70 * 1024]);
    expect_close_maybe_error(&mut c, expected, "70 KB inline");
    // 70 KB of blanks (no argument at all) is still too long.
    let mut c = attacker(&store);
    send(&mut c, &vec![b' '; 70 * 1024]);
    expect_close_maybe_error(&mut c, expected, "70 KB of blanks");
    // Just under the limit, with a newline, is a (long, unknown) command.
    let mut c = attacker(&store);
    let mut line = vec![b'x'; 64 * 1024 - 2];
    line.extend_from_slice(b"\r\n");
    send(&mut c, &line);
    assert!(c
        .read_reply()
        .unwrap()
        .is_error_starting("ERR unknown command"));
    assert_eq!(c.cmd_str("PING"), Resp::simple("PONG"));
    by.check(&store);
}

#[test]
fn connection_flood_beyond_max_clients() {
    let store = StoreServer::start(StoreConfig {
        max_clients: 5,
        ..StoreConfig::default()
    });
    let mut first = store.client();
    // The readiness probe's connection may still hold a slot: wait until
    // it is gone.
    wait_until(DEADLINE, "only one client is connected", || {
        first
            .cmd_str("INFO clients")
            .info_field("connected_clients")
            == Some("1".into())
    });
    assert_eq!(first.cmd_str("SET before flood"), Resp::ok());
    let mut clients = vec![first];
    while clients.len() < 5 {
        let mut accepted = None;
        wait_until(DEADLINE, "a client within the limit is accepted", || {
            let mut c = RespConn::from_stream(store.connect()).unwrap();
            match c.cmd(&[b"PING"]) {
                Ok(r) if r == Resp::simple("PONG") => {
                    accepted = Some(c);
                    true
                }
                _ => false,
            }
        });
        clients.push(accepted.unwrap());
    }

    // 20 more at once: each is told why and closed.
    let mut refused: Vec<RespConn> = (0..20)
        .map(|_| RespConn::from_stream(store.connect()).unwrap())
        .collect();
    for (i, c) in refused.iter_mut().enumerate() {
        assert_eq!(
            c.read_reply().unwrap(),
            Resp::error("ERR max number of clients reached"),
            "connection {i} over the limit"
        );
        assert!(c.read_to_close().is_empty());
    }

    // The five keep working.
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(c.cmd_str("GET before"), Resp::bulk("flood"), "client {i}");
        assert_eq!(
            c.cmd(&[b"SET", format!("client{i}").as_bytes(), b"ok"])
                .unwrap(),
            Resp::ok()
        );
    }
    let stats = clients[0].cmd_str("INFO stats");
    let rejected: u64 = stats
        .info_field("rejected_connections")
        .unwrap()
        .parse()
        .unwrap();
    assert!(rejected >= 20, "rejected_connections {rejected}");
    assert_eq!(
        clients[0]
            .cmd_str("INFO clients")
            .info_field("connected_clients"),
        Some("5".into())
    );

    // A freed slot is given to the next client.
    drop(clients.pop());
    let mut next = None;
    wait_until(DEADLINE, "a new client is accepted once one left", || {
        let mut c = RespConn::from_stream(store.connect()).unwrap();
        match c.cmd(&[b"GET", b"client0"]) {
            Ok(r) if r == Resp::bulk("ok") => {
                next = Some(c);
                true
            }
            _ => false,
        }
    });
    assert!(store.is_running());
}

#[test]
fn idle_timeout_closes_idle_connections() {
    let store = StoreServer::start(StoreConfig {
        idle_timeout: Some(Duration::from_secs(1)),
        ..StoreConfig::default()
    });
    let mut c = store.client();
    assert_eq!(c.cmd_str("SET before idle"), Resp::ok());
    let idle_since = Instant::now();
    // The store closes it by itself (read_to_close fails the test if the
    // connection is still open after its 20 s bound).
    let rest = c.read_to_close();
    let took = idle_since.elapsed();
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    assert!(
        took >= Duration::from_millis(900),
        "closed after only {took:?}"
    );
    // A connection that never sent anything is closed too.
    let mut silent = attacker(&store);
    assert!(silent.read_to_close().is_empty());
    // The data stays, new clients are served.
    let mut fresh = store.client();
    assert_eq!(fresh.cmd_str("GET before"), Resp::bulk("idle"));
    assert!(store.is_running());
}

#[test]
fn idle_timeout_spares_active_connections() {
    let store = StoreServer::start(StoreConfig {
        idle_timeout: Some(Duration::from_secs(2)),
        ..StoreConfig::default()
    });
    let mut c = store.client();
    // A request every 100 ms for 3 s, longer than the 2 s timeout.
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            c.cmd(&[b"PING"]).unwrap_or_else(|e| panic!(
                "an active client was cut after {:?} and {n} requests: {e}",
                start.elapsed()
            )),
            Resp::simple("PONG")
        );
        n += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Then, idle, it is closed.
    assert!(c.read_to_close().is_empty());
}
