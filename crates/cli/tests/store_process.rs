//! The `sticky store` process: its flags reach the store, it reads its
//! password from a file, shuts down gracefully on SIGTERM (exit 0) and
//! stops at once on SIGKILL. What the store does with the commands is
//! tested in process in the store crate (`crates/store/tests`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use sticky_test_support::{temp_path, Resp, RespConn, Sticky, StoreProcess, DEADLINE};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// The limits given as flags are the store's: `--max-clients` and
/// `--max-memory` in `INFO`, `--max-bulk` refusing a longer bulk string,
/// `--tombstone-ttl` on a tombstone, `--idle-timeout` closing a silent
/// connection.
#[test]
fn store_flags_reach_the_store() {
    let store = StoreProcess::start(
        STICKY,
        &[
            "--max-memory",
            "1MiB",
            "--max-clients",
            "77",
            "--max-bulk",
            "1KiB",
            "--tombstone-ttl",
            "30",
            "--idle-timeout",
            "1",
            "--pipelined-nap-us",
            "50",
        ],
    );
    let mut c = store.client();
    let info = c.cmd_str("INFO");
    assert_eq!(info.info_field("maxclients").as_deref(), Some("77"));
    assert_eq!(info.info_field("maxmemory").as_deref(), Some("1048576"));

    assert_eq!(c.cmd_str("SESS.DEL s 1 1"), Resp::ok());
    let Resp::Array(items) = c.cmd_str("SESS.GET s") else {
        panic!("SESS.GET of a tombstone is an array");
    };
    let pttl = items[4].as_int().expect("a pttl");
    assert!(
        pttl > 0 && pttl <= 30_000,
        "tombstone pttl {pttl} should come from --tombstone-ttl 30"
    );

    assert_eq!(c.cmd(&[b"SET", b"k", &[b'a'; 1024]]).unwrap(), Resp::ok());
    let mut big = RespConn::from_stream(store.connect()).unwrap();
    big.send_raw(b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1025\r\n")
        .unwrap();
    assert_eq!(
        big.read_reply().unwrap(),
        Resp::error("ERR Protocol error: bulk length 1025 over the limit of 1024 bytes"),
        "--max-bulk 1KiB"
    );
    assert!(big.read_to_close().is_empty());

    let mut silent = RespConn::from_stream(store.connect()).unwrap();
    let idle_since = Instant::now();
    assert!(silent.read_to_close().is_empty());
    assert!(
        idle_since.elapsed() >= Duration::from_millis(900),
        "closed after only {:?}",
        idle_since.elapsed()
    );
}

#[test]
fn requirepass_file_is_read() {
    let path = temp_path("password", "txt");
    std::fs::write(&path, "from-file\nignored second line\n").unwrap();
    let store = StoreProcess::start(STICKY, &["--requirepass-file", path.to_str().unwrap()]);
    let mut c = RespConn::from_stream(store.connect()).unwrap();
    assert_eq!(
        c.cmd_str("PING"),
        Resp::error("NOAUTH Authentication required.")
    );
    assert!(c.cmd_str("AUTH ignored").is_error_starting("WRONGPASS "));
    assert_eq!(c.cmd_str("AUTH from-file"), Resp::ok());
    assert_eq!(c.cmd_str("PING"), Resp::simple("PONG"));
    let _ = std::fs::remove_file(path);
}

#[test]
fn sigterm_shuts_down_gracefully_and_exits_0() {
    let mut store = StoreProcess::start(STICKY, &[]);
    let mut idle = store.client();
    assert_eq!(idle.sess_put("s", 1, 1, "ws1", 0, b"data"), Resp::ok());
    let started = Instant::now();
    store.sigterm();
    let status = store.wait_exit(DEADLINE);
    let took = started.elapsed();
    assert!(status.success(), "exit status {status} after SIGTERM");
    // Open connections are closed at once, not after the 5 s grace period.
    assert!(
        took < Duration::from_millis(4500),
        "shutdown took {took:?} with an idle client connected"
    );
    assert!(idle.read_to_close().is_empty());
    assert!(
        store.log_text().contains("store stopped"),
        "{}",
        store.log_text()
    );
}

#[test]
fn sigkill_stops_the_store_at_once() {
    use std::os::unix::process::ExitStatusExt;
    let mut store = StoreProcess::start(STICKY, &[]);
    let mut c = store.client();
    let status = store.kill9();
    assert_eq!(status.signal(), Some(9), "{status}");
    assert!(!store.is_running());
    assert!(c.cmd(&[b"PING"]).is_err(), "a killed store answered");
}

/// Session 22 (`docs/safety.md` §3): a store started with the cluster file
/// keeps promises and dead-lease records, and refuses leases, kills and
/// prepares after a restart, for twice the file's `claim_timeout_ms` — not
/// a fixed 4 s, which a longer claim timeout would outlast — and refuses a
/// `--claim-window` shorter than that.
#[test]
fn the_claim_window_follows_the_cluster_files_claim_timeout() {
    use sticky_test_support::ClusterConfig;
    let config = ClusterConfig::new(&["127.0.0.1:1".parse().unwrap()], &["ws1"])
        .session("claim_timeout_ms", "3000")
        .write();
    let path = config.path().to_str().unwrap().to_owned();
    let file = ["--config", path.as_str(), "--name", "s1"];

    let out = STICKY
        .command()
        .args(["store"])
        .args(file)
        .args(["--claim-window", "5s"])
        .output()
        .expect("run sticky store");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a window shorter than twice the claim timeout is refused"
    );
    assert!(err.contains("shorter than twice"), "{err}");

    let state = sticky_test_support::temp_dir("claim-window-state");
    std::fs::write(state.join("store.run"), "pid 1\n").unwrap(); // a restart
    let state = state.to_str().unwrap().to_owned();
    let store = StoreProcess::start(
        STICKY,
        &[&file[..], &["--state-dir", state.as_str()]].concat(),
    );
    let log = store.log_text();
    assert!(
        log.contains("starting as a restarted store") && log.contains("window_ms=6000"),
        "{log}"
    );
    // Still inside the window after the old fixed 4 s.
    std::thread::sleep(Duration::from_millis(4_500)); // the length under test
    let mut c = store.client();
    let r = c.cmd_str("SESS.KILL ws1@1");
    assert!(
        matches!(&r, Resp::Error(e) if e.starts_with("RECOVERING")),
        "a kill 4.5 s after the restart: {r:?}"
    );
}
