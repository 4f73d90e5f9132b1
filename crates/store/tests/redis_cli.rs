//! The real `redis-cli` drives a store served in this process on a free
//! port ([`StoreServer`]): what it prints must be
//! exactly what it prints against Redis. Skipped (loudly) when `redis-cli`
//! is not installed, except in CI (`CI` set), where that is a failure.
//!
//! `redis-cli` prints replies raw when its output is not a terminal (as
//! here), and in the interactive format with `--no-raw`; both are checked.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output, Stdio};

use sticky_store::StoreConfig;
use sticky_test_support::{require_program, StoreServer};

/// Runs `redis-cli -h 127.0.0.1 -p PORT ARGS...` and returns its output;
/// fails the test if it does not exit 0.
fn cli(store: &StoreServer, args: &[&str]) -> Output {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &store.port().to_string()])
        .args(args)
        // Never read a password or settings from the environment.
        .env_remove("REDISCLI_AUTH")
        .env_remove("REDISCLI_HISTFILE")
        .env("REDISCLI_RCFILE", "/dev/null")
        .stdin(Stdio::null())
        .output()
        .expect("run redis-cli");
    assert!(
        out.status.success(),
        "redis-cli {args:?} exited with {}; stderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// stdout of `redis-cli ARGS...`.
fn run(store: &StoreServer, args: &[&str]) -> String {
    String::from_utf8(cli(store, args).stdout).expect("redis-cli printed UTF-8")
}

#[test]
fn redis_cli_plain_commands() {
    if !require_program("redis-cli") {
        return;
    }
    let store = StoreServer::start_default();
    assert_eq!(run(&store, &["PING"]), "PONG\n");
    assert_eq!(run(&store, &["PING", "hello world"]), "hello world\n");
    assert_eq!(run(&store, &["SET", "k", "v"]), "OK\n");
    assert_eq!(run(&store, &["GET", "k"]), "v\n");
    assert_eq!(run(&store, &["GET", "missing"]), "\n");
    assert_eq!(
        run(&store, &["SET", "spaced key", "a value\twith blanks"]),
        "OK\n"
    );
    assert_eq!(
        run(&store, &["GET", "spaced key"]),
        "a value\twith blanks\n"
    );
    assert_eq!(
        run(&store, &["EXISTS", "k", "missing", "spaced key"]),
        "2\n"
    );
    assert_eq!(run(&store, &["TTL", "k"]), "-1\n");
    assert_eq!(run(&store, &["EXPIRE", "k", "100"]), "1\n");
    // Seconds left, rounded: each redis-cli is a new process, and on a
    // loaded machine seconds can pass between two of them.
    let ttl: u64 = run(&store, &["TTL", "k"]).trim().parse().unwrap();
    assert!((90..=100).contains(&ttl), "TTL {ttl}");
    assert_eq!(run(&store, &["EXPIRE", "missing", "100"]), "0\n");
    assert_eq!(run(&store, &["TTL", "missing"]), "-2\n");
    assert_eq!(run(&store, &["TYPE", "k"]), "string\n");
    assert_eq!(run(&store, &["DBSIZE"]), "2\n");
    assert_eq!(run(&store, &["DEL", "k", "missing"]), "1\n");
    assert_eq!(run(&store, &["DEL", "k"]), "0\n");
    assert_eq!(run(&store, &["GET", "k"]), "\n");
    assert_eq!(run(&store, &["DBSIZE"]), "1\n");
    assert_eq!(run(&store, &["ECHO", "echoed"]), "echoed\n");
    assert_eq!(
        run(&store, &["CONFIG", "GET", "maxmemory"]),
        "maxmemory\n0\n"
    );
    // Errors go to stdout, as with Redis (and redis-cli still exits 0).
    assert_eq!(
        run(&store, &["NOSUCHCOMMAND", "a"]),
        "ERR unknown command 'NOSUCHCOMMAND', with args beginning with: 'a' \n\n"
    );
    assert_eq!(run(&store, &["FLUSHALL"]), "OK\n");
    assert_eq!(run(&store, &["DBSIZE"]), "0\n");
}

#[test]
fn redis_cli_interactive_format_with_no_raw() {
    if !require_program("redis-cli") {
        return;
    }
    let store = StoreServer::start_default();
    let nr = |args: &[&str]| {
        let mut all = vec!["--no-raw"];
        all.extend_from_slice(args);
        run(&store, &all)
    };
    assert_eq!(nr(&["PING"]), "PONG\n");
    assert_eq!(nr(&["SET", "k", "v"]), "OK\n");
    assert_eq!(nr(&["GET", "k"]), "\"v\"\n");
    assert_eq!(nr(&["GET", "missing"]), "(nil)\n");
    assert_eq!(nr(&["EXPIRE", "k", "100"]), "(integer) 1\n");
    let ttl = nr(&["TTL", "k"]);
    let secs: u64 = ttl
        .strip_prefix("(integer) ")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("TTL answered {ttl:?}"));
    assert!((90..=100).contains(&secs), "TTL {secs}");
    assert_eq!(nr(&["DBSIZE"]), "(integer) 1\n");
    assert_eq!(
        nr(&["SESS.PUT", "s", "1", "2", "ws1", "0", "payload"]),
        "OK\n"
    );
    assert_eq!(
        nr(&["SESS.GET", "s"]),
        "1) \"live\"\n2) (integer) 1\n3) (integer) 2\n4) \"ws1\"\n5) (integer) -1\n6) \"payload\"\n"
    );
    assert_eq!(
        nr(&["SESS.PUT", "s", "1", "1", "ws1", "0", "old"]),
        "(error) STALE 1 2\n"
    );
    assert_eq!(nr(&["SESS.GET", "missing"]), "(nil)\n");
    assert_eq!(
        nr(&["GET", "s"]),
        "(error) WRONGTYPE Operation against a key holding the wrong kind of value\n"
    );
    assert_eq!(nr(&["TYPE", "s"]), "session\n");
    assert_eq!(nr(&["DEL", "k", "s"]), "(integer) 2\n");
    assert_eq!(nr(&["DBSIZE"]), "(integer) 0\n");
}

#[test]
fn redis_cli_session_commands_raw() {
    if !require_program("redis-cli") {
        return;
    }
    let store = StoreServer::start_default();
    assert_eq!(run(&store, &["SESS.GET", "s"]), "\n");
    assert_eq!(
        run(&store, &["SESS.PUT", "s", "1", "2", "ws1", "0", "pay load"]),
        "OK\n"
    );
    assert_eq!(
        run(&store, &["SESS.GET", "s"]),
        "live\n1\n2\nws1\n-1\npay load\n"
    );
    assert_eq!(
        run(&store, &["SESS.PUT", "s", "1", "2", "ws1", "0", "again"]),
        "STALE 1 2\n\n"
    );
    assert_eq!(
        run(&store, &["SESS.CLAIM", "s", "1", "2", "2", "0", "ws2", "0"]),
        "OK\n"
    );
    assert_eq!(run(&store, &["SESS.TOUCH", "s", "0"]), "1\n");
    assert_eq!(
        run(&store, &["SESS.GET", "s"]),
        "live\n2\n0\nws2\n-1\npay load\n"
    );
    assert_eq!(run(&store, &["SESS.DEL", "s", "2", "1"]), "OK\n");
    assert_eq!(
        run(&store, &["SESS.CLAIM", "s", "2", "1", "3", "0", "ws3", "0"]),
        "DELETED 2 1\n\n"
    );
    assert_eq!(
        run(
            &store,
            &["SESS.CLAIM", "nope", "1", "1", "2", "0", "ws3", "0"]
        ),
        "NOSESSION no such session\n\n"
    );
    let tomb = run(&store, &["SESS.GET", "s"]);
    let lines: Vec<&str> = tomb.split('\n').collect();
    assert_eq!(lines.len(), 7, "{tomb:?}");
    assert_eq!(&lines[..4], ["tombstone", "2", "1", ""], "{tomb:?}");
    let pttl: i64 = lines[4].parse().unwrap();
    assert!(pttl > 0 && pttl <= 60_000, "{tomb:?}");
    assert_eq!(&lines[5..], ["", ""], "{tomb:?}");
}

#[test]
fn redis_cli_info() {
    if !require_program("redis-cli") {
        return;
    }
    let store = StoreServer::start(StoreConfig {
        max_memory: 1 << 20,
        max_clients: 77,
        ..StoreConfig::default()
    });
    assert_eq!(run(&store, &["SET", "a", "1"]), "OK\n");
    assert_eq!(run(&store, &["SET", "b", "2", "EX", "1000"]), "OK\n");
    let info = run(&store, &["INFO"]);
    // INFO's lines end in CRLF, as Redis's do; redis-cli prints them as is.
    let lines: Vec<&str> = info.lines().map(|l| l.trim_end_matches('\r')).collect();
    for section in ["# Server", "# Clients", "# Memory", "# Stats", "# Keyspace"] {
        assert!(lines.contains(&section), "INFO lacks {section}:\n{info}");
    }
    let field = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("INFO lacks {name}:\n{info}"))
            .to_owned()
    };
    assert_eq!(field("redis_version"), "7.0.0");
    assert_eq!(field("redis_mode"), "standalone");
    assert_eq!(field("process_id"), store.pid().to_string());
    assert_eq!(field("tcp_port"), store.port().to_string());
    assert_eq!(field("connected_clients"), "1");
    assert_eq!(field("maxclients"), "77");
    assert_eq!(field("maxmemory"), "1048576");
    assert_eq!(field("maxmemory_policy"), "noeviction");
    assert_eq!(field("db0"), "keys=2,expires=1,avg_ttl=0");
    assert!(field("used_memory").parse::<u64>().unwrap() > 0);
    assert!(field("used_memory_rss").parse::<u64>().unwrap() > 0);

    // One section only.
    let clients = run(&store, &["INFO", "clients"]);
    assert_eq!(
        clients.replace('\r', ""),
        "# Clients\nconnected_clients:1\nmaxclients:77\n\n"
    );
}

#[test]
fn redis_cli_with_a_password() {
    if !require_program("redis-cli") {
        return;
    }
    let pass = "pa ss!word";
    let store = StoreServer::start(StoreConfig {
        requirepass: Some(pass.into()),
        ..StoreConfig::default()
    });
    // Without the password: NOAUTH, printed on stdout.
    assert_eq!(
        run(&store, &["PING"]),
        "NOAUTH Authentication required.\n\n"
    );
    assert_eq!(
        run(&store, &["SET", "k", "v"]),
        "NOAUTH Authentication required.\n\n"
    );
    // With it.
    let auth = ["-a", pass, "--no-auth-warning"];
    let with = |args: &[&str]| {
        let mut all = auth.to_vec();
        all.extend_from_slice(args);
        cli(&store, &all)
    };
    let out = with(&["PING"]);
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "PONG\n");
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "",
        "--no-auth-warning must silence the warning"
    );
    assert_eq!(
        String::from_utf8(with(&["SET", "k", "v"]).stdout).unwrap(),
        "OK\n"
    );
    assert_eq!(
        String::from_utf8(with(&["GET", "k"]).stdout).unwrap(),
        "v\n"
    );
    assert_eq!(String::from_utf8(with(&["DBSIZE"]).stdout).unwrap(), "1\n");
    // --user/--pass sends AUTH default PASS.
    let out = cli(
        &store,
        &[
            "--user",
            "default",
            "--pass",
            pass,
            "--no-auth-warning",
            "GET",
            "k",
        ],
    );
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "v\n");
    // A wrong password: redis-cli reports the AUTH failure on stderr and
    // the command itself gets NOAUTH.
    let out = cli(&store, &["-a", "wrong", "--no-auth-warning", "GET", "k"]);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        "NOAUTH Authentication required.\n\n"
    );
    assert_eq!(
        String::from_utf8(out.stderr).unwrap(),
        "AUTH failed: WRONGPASS invalid username-password pair or user is disabled.\n"
    );
}

#[test]
fn redis_cli_reads_commands_from_stdin_and_pipes() {
    if !require_program("redis-cli") {
        return;
    }
    use std::io::Write;
    let store = StoreServer::start_default();
    // Several commands on stdin, one per line: one reply line each.
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &store.port().to_string()])
        .env_remove("REDISCLI_AUTH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redis-cli");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"SET a 1\nSET b 2\nGET a\nDBSIZE\nDEL a b\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8(out.stdout).unwrap(), "OK\nOK\n1\n2\n2\n");

    // --pipe mode (mass insertion) with raw RESP.
    let mut data = Vec::new();
    for i in 0..1000 {
        data.extend(sticky_test_support::encode_request(&[
            b"SET",
            format!("key:{i}").as_bytes(),
            format!("value:{i}").as_bytes(),
        ]));
    }
    let mut child = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &store.port().to_string(), "--pipe"])
        .env_remove("REDISCLI_AUTH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run redis-cli --pipe");
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("errors: 0, replies: 1000"),
        "redis-cli --pipe said: {stdout}"
    );
    assert_eq!(run(&store, &["DBSIZE"]), "1000\n");
    assert_eq!(run(&store, &["GET", "key:999"]), "value:999\n");
}
