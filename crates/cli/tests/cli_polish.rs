//! The command line's polish (issue 18, item 7), with real processes:
//!
//! - `sticky up --store-url`: every form `sticky up --help` names works
//!   on a real store it did not start (`HOST:PORT` and `sticky://` of a
//!   running `sticky store`, with and without a password; `sticky+tls://`
//!   with `--store-tls-ca`; `redis://` with a password and `rediss://` on
//!   a real `redis-server`), and what is not a store address is refused
//!   in one clear line;
//! - errors: a bad number, fraction or duration of every subcommand's
//!   flags, and a bad cluster-file value, is refused once, in plain words
//!   naming the flag or field (no `invalid digit`, no `expected u32`), a
//!   cause never repeated; durations take units (`30m`, `500ms`) in flags
//!   and in the cluster file's `*_ms` and `*_secs` fields, plain numbers
//!   keeping their old unit;
//! - with two `sticky up`s running: `sticky status` says so, which one it
//!   shows and how to pick the other; `sticky bench` without `--url`
//!   finds the same one (or the one `--dir` names); `sticky chaos
//!   --attach` prints what it attached to.
//!
//! The Redis forms are skipped loudly without `redis-server`, unless `CI`
//! is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io::Read;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use sticky_test_support::{
    have_redis, http_request, random_u64, read_text, signal, temp_dir, Browser, ChildProcess,
    NotReady, RedisProcess, Sticky, StoreProcess, TestCa, UpProcess, DEADLINE, POLL, UP_DEADLINE,
    UP_READY_LINE, UP_STOP_DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// A small cluster: one web server, no standby.
const SMALL: [&str; 4] = ["--web", "1", "--standby", "0"];

/// Runs `sticky ARGS...` with `home` as `HOME`: exit code, stdout, stderr.
fn sticky_in(home: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let out = STICKY
        .command()
        .env_remove("XDG_RUNTIME_DIR")
        .env("HOME", home)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run sticky");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs `sticky ARGS...` in a new empty `HOME`.
fn sticky(args: &[&str]) -> (Option<i32>, String, String) {
    sticky_in(&temp_dir("polish-home"), args)
}

/// A session on the shop of `up` counts 1, 2: the stores keep it.
fn shop_keeps_a_session(up: &UpProcess) {
    let mut browser = Browser::new();
    assert_eq!(browser.increment(up.shop()).value, 1);
    assert_eq!(browser.increment(up.shop()).value, 2);
    assert_eq!(browser.counter(up.shop()).value, 2);
}

/// Waits until `sticky status` shows every store of `up` up (asked
/// directly, with the cluster file's password).
fn wait_stores_up(up: &UpProcess, n: usize) {
    let start = Instant::now();
    loop {
        let status = up.status_json();
        let stores: Vec<&Value> = status["processes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["role"] == "store")
            .collect();
        if stores.len() == n && stores.iter().all(|s| s["state"] == "up") {
            return;
        }
        assert!(
            start.elapsed() < DEADLINE,
            "sticky status does not show {n} stores up: {status:#}"
        );
        std::thread::sleep(POLL);
    }
}

// ---------------------------------------------------------------------------
// --store-url
// ---------------------------------------------------------------------------

#[test]
fn store_url_takes_every_form_the_help_names() {
    let (code, help, _) = sticky(&["up", "--help"]);
    assert_eq!(code, Some(0));
    for form in [
        "HOST:PORT",
        "sticky://[:PASSWORD@]HOST:PORT",
        "sticky+tls://",
        "redis://[[USER]:PASSWORD@]HOST[:PORT]",
        "rediss://",
        "--store-tls-ca",
    ] {
        assert!(
            help.contains(form),
            "`sticky up --help` names {form}:\n{help}"
        );
    }

    // HOST:PORT of a running `sticky store` (the issue: it was refused).
    let plain = StoreProcess::start(STICKY, &[]);
    let hostport = format!("127.0.0.1:{}", plain.port());
    let up = UpProcess::start(
        STICKY,
        &[&SMALL[..], &["--replicas", "1", "--store-url", &hostport]].concat(),
    );
    let file = std::fs::read_to_string(up.config_path()).unwrap();
    assert!(
        file.contains(&format!("url = \"sticky://{hostport}\"")),
        "written as a sticky:// URL:\n{file}"
    );
    up.wait_all_up();
    shop_keeps_a_session(&up);
    wait_stores_up(&up, 1);
    drop(up);

    // sticky://:PASSWORD@ of a store with a password; the same password
    // on a Redis server (redis://:PASSWORD@): the director and `sticky
    // status` look at both with it.
    let locked = StoreProcess::start(STICKY, &["--requirepass", "polish-pw"]);
    let mut urls = vec![format!("sticky://:polish-pw@127.0.0.1:{}", locked.port())];
    let redis = have_redis(false).then(|| {
        // The password is set once it runs: the readiness probe has none.
        let r = RedisProcess::start(&[]);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("polish-pw")
            .query(&mut r.conn())
            .unwrap();
        r
    });
    if let Some(r) = &redis {
        urls.push(format!("redis://:polish-pw@127.0.0.1:{}", r.port()));
    }
    let mut args: Vec<&str> = [&SMALL[..], &["--replicas", "1"]].concat();
    for u in &urls {
        args.extend(["--store-url", u.as_str()]);
    }
    let up = UpProcess::start(STICKY, &args);
    up.wait_all_up();
    shop_keeps_a_session(&up);
    wait_stores_up(&up, urls.len());
    assert!(
        !up.stderr_text().contains("different passwords"),
        "{}",
        up.stderr_text()
    );
    drop(up);

    // sticky+tls://:PASSWORD@ of a store serving TLS, and
    // rediss://:PASSWORD@ of a Redis server serving TLS, verified against
    // --store-tls-ca.
    let ca = TestCa::new("polish-tls");
    let cert = ca.issue("store");
    let tls = StoreProcess::start(
        STICKY,
        &[
            "--tls-cert",
            cert.cert.to_str().unwrap(),
            "--tls-key",
            cert.key.to_str().unwrap(),
            "--requirepass",
            "polish-pw",
        ],
    );
    let mut urls = vec![format!("sticky+tls://:polish-pw@127.0.0.1:{}", tls.port())];
    let redis_tls = have_redis(false).then(|| {
        let r = RedisProcess::start_tls(&cert, ca.ca_file(), &[]);
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg("polish-pw")
            .query(&mut r.conn())
            .unwrap();
        r
    });
    if let Some(r) = &redis_tls {
        urls.push(r.tls_url().replace("rediss://", "rediss://:polish-pw@"));
    }
    let ca_path = ca.ca_file().to_str().unwrap().to_owned();
    let mut args: Vec<&str> =
        [&SMALL[..], &["--replicas", "1", "--store-tls-ca", &ca_path]].concat();
    for u in &urls {
        args.extend(["--store-url", u.as_str()]);
    }
    let up = UpProcess::start(STICKY, &args);
    up.wait_all_up();
    shop_keeps_a_session(&up);
    wait_stores_up(&up, urls.len());
    drop(up);

    // redis://USER:PASSWORD@ of an ACL user: the web servers use it; the
    // director's health checks, which take one password and no user
    // name, cannot, and `up` says so.
    if let Some(r) = &redis {
        let _: () = redis::cmd("ACL")
            .arg("SETUSER")
            .arg("polish")
            .arg("on")
            .arg(">user-pw")
            .arg("~*")
            .arg("&*")
            .arg("+@all")
            .query(&mut {
                let client =
                    redis::Client::open(format!("redis://:polish-pw@127.0.0.1:{}", r.port()))
                        .unwrap();
                client.get_connection().unwrap()
            })
            .unwrap();
        let url = format!("redis://polish:user-pw@127.0.0.1:{}", r.port());
        let up = UpProcess::start(
            STICKY,
            &[&SMALL[..], &["--replicas", "1", "--store-url", &url]].concat(),
        );
        assert!(
            up.stderr_text()
                .contains("different passwords or a user name"),
            "{}",
            up.stderr_text()
        );
        up.wait_all_up_but(&["s1"]);
        shop_keeps_a_session(&up);
        assert!(
            !up.stderr_text().contains("user-pw"),
            "{}",
            up.stderr_text()
        );
    }

    // Without the CA, the TLS store is refused before anything starts,
    // in one line.
    let home = temp_dir("polish-home");
    let dir = temp_dir("polish-up");
    let port = (10_000 + (random_u64() % 220) as u16 * 100).to_string();
    let (code, _, err) = sticky_in(
        &home,
        &[
            "up",
            "--port",
            &port,
            "--dir",
            dir.to_str().unwrap(),
            "--replicas",
            "1",
            "--store-url",
            &urls[0],
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("does not answer PING"), "{err}");
    assert!(err.contains("give --store-tls-ca FILE"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn what_is_not_a_store_address_is_refused_in_one_line() {
    for (url, says) in [
        ("127.0.0.1", "must be HOST:PORT"),
        ("http://127.0.0.1:1", "begins with \"http\"://"),
        ("nosuchhost.invalid:7379", "cannot resolve"),
    ] {
        let (code, _, err) = sticky(&["up", "--replicas", "1", "--store-url", url]);
        assert_eq!(code, Some(1), "{url}: {err}");
        assert!(err.contains(says), "{url}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{url}: one line: {err}");
    }
    // A store that wants a password, given none or a wrong one: refused
    // before anything starts, saying what to give, the password unsaid.
    let locked = StoreProcess::start(STICKY, &["--requirepass", "polish-pw"]);
    for (url, says) in [
        (
            format!("127.0.0.1:{}", locked.port()),
            "give its password in the URL",
        ),
        (
            format!("sticky://:wrong-pw@127.0.0.1:{}", locked.port()),
            "check the password",
        ),
    ] {
        // A port range of its own: the ports are checked before the PING.
        let port = (10_000 + (random_u64() % 220) as u16 * 100).to_string();
        let dir = temp_dir("polish-up");
        let (code, _, err) = sticky(&[
            "up",
            "--port",
            &port,
            "--dir",
            dir.to_str().unwrap(),
            "--replicas",
            "1",
            "--store-url",
            &url,
        ]);
        assert_eq!(code, Some(1), "{url}: {err}");
        assert!(
            err.contains("does not answer PING") && err.contains(says),
            "{url}: {err}"
        );
        assert!(!err.contains("wrong-pw"), "{err}");
        assert_eq!(err.trim().lines().count(), 1, "{url}: one line: {err}");
    }
    // A password in a refused URL is never printed.
    let (_, _, err) = sticky(&["up", "--replicas", "1", "--store-url", "ftp://:hunter2@h:1"]);
    assert!(!err.contains("hunter2"), "{err}");
    // --store-tls-ca goes with --store-url.
    let (code, _, err) = sticky(&["up", "--store-tls-ca", "/nonexistent/ca.pem"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--store-url"), "{err}");
}

// ---------------------------------------------------------------------------
// Errors and durations
// ---------------------------------------------------------------------------

/// The line of `err` that holds clap's or our message (not the usage).
fn assert_plain_once(what: &str, err: &str, names: &str, says: &str) {
    for raw in [
        "invalid digit",
        "expected u",
        "expected i64",
        "expected f64",
        "ParseIntError",
        "ParseFloatError",
        "cannot parse integer",
        "invalid float literal",
        "number too large to fit",
    ] {
        assert!(!err.contains(raw), "{what}: raw Rust words {raw:?}:\n{err}");
    }
    assert!(err.contains(names), "{what}: names {names:?}:\n{err}");
    assert!(err.contains(says), "{what}: says {says:?}:\n{err}");
    assert_eq!(
        err.matches(says).count(),
        1,
        "{what}: the error is printed once:\n{err}"
    );
}

#[test]
fn bad_numbers_and_durations_of_every_subcommand_are_refused_once_in_plain_words() {
    let cases: &[(&[&str], &str, &str)] = &[
        (
            &["store", "--listen", "7379"],
            "--listen",
            "is not an address",
        ),
        // A negative number reaches the parser (not "unexpected argument").
        (
            &["up", "--stores", "-1"],
            "--stores",
            "\"-1\" is not a whole number",
        ),
        (&["bench", "--rate", "-5"], "--rate", "-5 is not above 0"),
        (
            &["chaos", "--write-ratio", "-0.5"],
            "--write-ratio",
            "-0.5 is out of range",
        ),
        (
            &["up", "--web", "abc"],
            "--web",
            "\"abc\" is not a whole number",
        ),
        (&["up", "--web", "0"], "--web", "from 1 to 32"),
        (&["up", "--stores", "99"], "--stores", "from 1 to 16"),
        (&["up", "--standby=-1"], "--standby", "not a whole number"),
        (&["up", "--replicas", "3"], "--replicas", "from 1 to 2"),
        (
            &["up", "--directors", "x"],
            "--directors",
            "not a whole number",
        ),
        (&["up", "--port", "70000"], "--port", "from 1 to 65535"),
        (
            &["bench", "--users", "many"],
            "--users",
            "not a whole number",
        ),
        (
            &["bench", "--write-ratio", "2"],
            "--write-ratio",
            "from 0 to 1",
        ),
        (&["bench", "--rate", "fast"], "--rate", "not a number"),
        (&["bench", "--requests", "0"], "--requests", "1 or more"),
        (
            &["bench", "--threads", "1.5"],
            "--threads",
            "not a whole number",
        ),
        (
            &["bench", "--session-bytes", "lots"],
            "--session-bytes",
            "invalid size",
        ),
        (
            &["bench", "--duration", "soon"],
            "--duration",
            "is not a duration",
        ),
        (&["bench", "--warmup", "5 parsecs"], "--warmup", "500ms"),
        (
            &["bench", "--timeout=-1s"],
            "--timeout",
            "is not a duration",
        ),
        (&["chaos", "--users", "0"], "--users", "1 or more"),
        (
            &["chaos", "--write-ratio", "half"],
            "--write-ratio",
            "not a number",
        ),
        (
            &["chaos", "--drop-route", "1.5"],
            "--drop-route",
            "from 0 to 1",
        ),
        (
            &["chaos", "--max-faults", "x"],
            "--max-faults",
            "not a whole number",
        ),
        (
            &["chaos", "--duration", "2 fortnights"],
            "--duration",
            "is not a duration",
        ),
        (&["chaos", "--think", "x"], "--think", "is not a duration"),
        (&["chaos", "--web", "40"], "--web", "from 1 to 32"),
        (&["chaos", "--port", "port"], "--port", "not a whole number"),
        (
            &["store", "--max-clients", "0"],
            "--max-clients",
            "from 1 to",
        ),
        (
            &["store", "--idle-timeout", "5x"],
            "--idle-timeout",
            "or a number of seconds",
        ),
        (
            &["store", "--tombstone-ttl", "forever"],
            "--tombstone-ttl",
            "is not a duration",
        ),
        (
            &["store", "--busy-poll-us", "1s"],
            "--busy-poll-us",
            "at most 10ms",
        ),
        (&["store", "--max-args", "2"], "--max-args", "from 3 to"),
        (
            &["store", "--threads", "two"],
            "--threads",
            "not a whole number",
        ),
        (
            &["store", "--max-memory", "lots"],
            "--max-memory",
            "invalid size",
        ),
        (
            &[
                "web",
                "--config",
                "c.toml",
                "--name",
                "ws1",
                "--threads",
                "0",
            ],
            "--threads",
            "from 1 to",
        ),
        (
            &[
                "web",
                "--config",
                "c.toml",
                "--name",
                "ws1",
                "--app",
                "http://127.0.0.1:1",
                "--app-timeout-ms",
                "soon",
            ],
            "--app-timeout-ms",
            "or a number of milliseconds",
        ),
        (
            &[
                "web",
                "--config",
                "c.toml",
                "--name",
                "ws1",
                "--app",
                "http://127.0.0.1:1",
                "--app-max-session",
                "big",
            ],
            "--app-max-session",
            "invalid size",
        ),
        (
            &["director", "--config", "c.toml", "--threads", "x"],
            "--threads",
            "not a whole number",
        ),
        (&["status", "--admin", "nowhere"], "--admin", "give IP:PORT"),
    ];
    for (argv, flag, says) in cases {
        let (code, _, err) = sticky(argv);
        assert_eq!(code, Some(2), "{argv:?} is a usage error:\n{err}");
        assert_plain_once(&format!("{argv:?}"), &err, flag, says);
    }
}

/// A cluster file with `extra` in it (sections included), checked by
/// `sticky check` and read by `sticky director`.
fn cluster_file(extra: &str) -> PathBuf {
    let dir = temp_dir("polish-file");
    let path = dir.join("cluster.toml");
    std::fs::write(
        &path,
        format!(
            "secret = \"{}\"\n{extra}\n[[web]]\nname = \"ws1\"\nlisten = \"127.0.0.1:1\"\n\
             [[store]]\nname = \"s1\"\nlisten = \"127.0.0.1:2\"\n",
            "k".repeat(40)
        ),
    )
    .unwrap();
    path
}

#[test]
fn bad_cluster_file_values_are_refused_once_in_plain_words() {
    for (extra, field, says) in [
        (
            "[director]\nfall = \"x\"",
            "fall",
            "expected a whole number",
        ),
        (
            "[director]\nmax_connections = -5",
            "max_connections",
            "whole number",
        ),
        (
            "[director]\nfast_path = 1",
            "fast_path",
            "expected true or false",
        ),
        (
            "[session]\nlease_ms = \"soon\"",
            "lease_ms",
            "is not a duration",
        ),
        (
            "[session]\nidle_timeout_secs = \"1500ms\"",
            "idle_timeout_secs",
            "not a whole number of seconds",
        ),
        (
            "[director]\nhealth_interval_ms = 0.5",
            "health_interval_ms",
            "a fraction",
        ),
    ] {
        let path = cluster_file(extra);
        let p = path.to_str().unwrap();
        // The process that reads it: one line naming the field.
        let (code, _, err) = sticky(&["director", "--config", p]);
        assert_eq!(code, Some(1), "{extra}: {err}");
        assert_plain_once(extra, &err, field, says);
        assert_eq!(err.trim().lines().count(), 1, "{extra}: one line:\n{err}");
        // `sticky check`: the field and the same words.
        let (code, out, err) = sticky(&["check", p]);
        assert_ne!(code, Some(0), "{extra}: {out}{err}");
        let text = format!("{out}{err}");
        assert_plain_once(extra, &text, field, says);
    }

    // A cause is never said twice (the file's error carries the reason).
    let (code, _, err) = sticky(&["director", "--config", "/nonexistent/cluster.toml"]);
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(
        err.matches("No such file or directory").count(),
        1,
        "said once:\n{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
    let (_, _, err) = sticky(&["status", "--dir", "/nonexistent/run"]);
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one line:\n{err}");
}

#[test]
fn durations_take_units_in_the_cluster_file_and_plain_numbers_keep_theirs() {
    let path = cluster_file(
        "[session]\nlease_ms = \"3s\"\nclaim_timeout_ms = 2000\nidle_timeout_secs = \"30m\"\n\
         new_session_ttl_secs = \"5m\"\n[director]\nhealth_interval_ms = \"250ms\"\n\
         drain_timeout_ms = \"1m\"\nresponse_timeout_ms = 60000\n",
    );
    let (code, out, err) = sticky(&["check", path.to_str().unwrap()]);
    assert_eq!(code, Some(0), "durations with units are fine:\n{out}{err}");
}

#[test]
fn store_flags_take_durations_and_the_idle_timeout_closes_on_time() {
    // `--idle-timeout 700ms`: an idle client is closed after about that.
    let store = StoreProcess::start(
        STICKY,
        &[
            "--idle-timeout",
            "700ms",
            "--tombstone-ttl",
            "90s",
            "--threads",
            "1",
            "--busy-poll-us",
            "50us",
        ],
    );
    let mut conn = TcpStream::connect(store.addr()).unwrap();
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 16];
    // A signal to this test process (another test's child exiting) can
    // interrupt the read: read again.
    let read = loop {
        match conn.read(&mut buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            other => break other,
        }
    };
    let idle = start.elapsed();
    let n = read.unwrap_or_else(|e| panic!("read after {idle:?}: {e}"));
    assert_eq!(n, 0, "closed, not answered");
    assert!(
        idle >= Duration::from_millis(500) && idle < Duration::from_secs(10),
        "closed after {idle:?}, not about 700ms"
    );
    // The old plain numbers of seconds still work (it starts and answers).
    let _old = StoreProcess::start(STICKY, &["--idle-timeout", "300", "--tombstone-ttl", "60"]);
}

// ---------------------------------------------------------------------------
// Several clusters: status, bench, chaos --attach
// ---------------------------------------------------------------------------

/// A second `sticky up` sharing the `HOME` (so the records) of another.
struct SecondUp {
    proc: ChildProcess,
    dir: PathBuf,
    port: u16,
    stdout: PathBuf,
}

impl SecondUp {
    fn start(home: &Path) -> SecondUp {
        for attempt in 0..8u16 {
            let _ = attempt;
            // As UpProcess: ports base..base+60, on a 100-port grid.
            let port = 10_000 + (random_u64() % 220) as u16 * 100;
            let dir = temp_dir("polish-up2");
            let stdout = dir.join("up.stdout");
            let mut cmd = STICKY.command();
            cmd.env_remove("XDG_RUNTIME_DIR")
                .env("HOME", home)
                .args(["up", "--port", &port.to_string(), "--dir"])
                .arg(&dir)
                .args(SMALL)
                .args(["--stores", "1", "--replicas", "1"])
                .stdin(Stdio::null())
                .stdout(File::create(&stdout).unwrap())
                .stderr(File::create(dir.join("up.stderr")).unwrap());
            let mut proc = ChildProcess::spawn(&mut cmd, "second sticky up");
            let out = stdout.clone();
            match proc.wait_for(UP_DEADLINE, POLL, || {
                read_text(&out).contains(UP_READY_LINE).then_some(())
            }) {
                Ok(()) => {
                    return SecondUp {
                        proc,
                        dir,
                        port,
                        stdout,
                    }
                }
                Err(NotReady::Exited(_)) => {
                    let err = read_text(&dir.join("up.stderr"));
                    assert!(
                        err.contains("is not free"),
                        "second sticky up failed:\n{err}"
                    );
                }
                Err(NotReady::TimedOut) => panic!(
                    "second sticky up not ready:\n{}",
                    read_text(&dir.join("up.stderr"))
                ),
            }
        }
        panic!("no free port range for a second sticky up");
    }

    fn pid(&self) -> u32 {
        self.proc.pid()
    }

    fn stop(&mut self) {
        if self.proc.try_exited().is_none() {
            signal(self.pid(), "INT");
            assert!(self.proc.wait_exit(UP_STOP_DEADLINE).is_some());
        }
    }
}

impl Drop for SecondUp {
    fn drop(&mut self) {
        if self.proc.try_exited().is_none() {
            signal(self.pid(), "INT");
            if self.proc.wait_exit(UP_STOP_DEADLINE).is_none() {
                self.proc.kill_quietly();
            }
        }
    }
}

/// The director's request count at `admin`.
fn director_requests(admin: std::net::SocketAddr) -> u64 {
    let r = http_request(admin, "GET", "/api/cluster", &[], None).unwrap();
    r.json()["director"]["requests"].as_u64().unwrap_or(0)
}

#[test]
fn with_two_clusters_status_bench_and_chaos_say_which_they_use() {
    let first = UpProcess::start(
        STICKY,
        &[&SMALL[..], &["--stores", "1", "--replicas", "1"]].concat(),
    );
    let mut second = SecondUp::start(&first.home);
    let _ = read_text(&second.stdout);
    let second_admin = std::net::SocketAddr::from(([127, 0, 0, 1], second.port + 1));
    let first_dir = first.dir.display().to_string();
    let second_dir = second.dir.display().to_string();

    // status: the latest started, saying so, naming the other and how to
    // pick it.
    let (_, out, err) = sticky_in(&first.home, &["status"]);
    assert!(out.contains("2 clusters are running"), "{out}{err}");
    assert!(
        out.contains(&format!(
            "this is the latest started: sticky up pid {}, run dir {second_dir}",
            second.pid()
        )),
        "{out}"
    );
    assert!(
        out.contains(&format!(
            "also running: sticky up pid {}, shop http://{}/, run dir {first_dir}",
            first.pid(),
            first.shop()
        )),
        "{out}"
    );
    assert!(out.contains("sticky status --dir DIR"), "{out}");
    assert!(out.contains(&format!("run dir:    {second_dir}")), "{out}");
    let (_, json, _) = sticky_in(&first.home, &["status", "--json"]);
    let json: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["dir"], second_dir.as_str());
    assert_eq!(json["other_clusters"][0]["dir"], first_dir.as_str());
    assert_eq!(json["other_clusters"][0]["up_pid"], first.pid());
    // --dir picks one, and then there is nothing to say.
    let (_, out, _) = sticky_in(&first.home, &["status", "--dir", &first_dir]);
    assert!(out.contains(&format!("run dir:    {first_dir}")), "{out}");
    assert!(!out.contains("clusters are running"), "{out}");

    // bench: the same cluster as status, saying which; --dir the other.
    let before = (
        director_requests(first.admin()),
        director_requests(second_admin),
    );
    let bench = [
        "bench",
        "--duration",
        "1s",
        "--warmup",
        "0s",
        "--users",
        "2",
        "--no-progress",
    ];
    let (code, _, err) = sticky_in(&first.home, &bench);
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "bench: http://127.0.0.1:{}, the shop of the sticky up in {second_dir} (pid {})",
            second.port,
            second.pid()
        )),
        "{err}"
    );
    assert!(err.contains("2 clusters are running"), "{err}");
    assert!(err.contains("sticky bench --dir DIR"), "{err}");
    let after = (
        director_requests(first.admin()),
        director_requests(second_admin),
    );
    assert!(
        after.1 > before.1,
        "the second cluster got the load: {before:?} {after:?}"
    );
    assert_eq!(
        after.0, before.0,
        "the first got none: {before:?} {after:?}"
    );
    let (code, _, err) = sticky_in(&first.home, &[&bench[..], &["--dir", &first_dir]].concat());
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "the shop of the sticky up in {first_dir} (pid {})",
            first.pid()
        )),
        "{err}"
    );
    assert!(director_requests(first.admin()) > after.0);

    // chaos --attach: what it attached to. No fault within the run
    // (--interval 1h), so the clusters are left as they were.
    let chaos = [
        "chaos",
        "--attach",
        "--duration",
        "1s",
        "--users",
        "2",
        "--interval",
        "1h",
        "--no-progress",
    ];
    let chaos_dir = temp_dir("polish-chaos");
    let (code, out, err) = sticky_in(
        &first.home,
        &[&chaos[..], &["--dir", chaos_dir.to_str().unwrap()]].concat(),
    );
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(
        err.contains(&format!(
            "chaos: attached to the sticky up in {second_dir} (pid {})",
            second.pid()
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!("state file {second_dir}/up.json")),
        "{err}"
    );
    assert!(err.contains("2 clusters are running"), "{err}");
    for name in ["director", "ws1", "s1"] {
        assert!(err.contains(&format!("{name} (")), "{name} listed: {err}");
    }
    assert_eq!(err.matches("attached to").count(), 1, "{err}");
    let (code, _, err) = sticky_in(
        &first.home,
        &[
            "chaos",
            "--attach",
            &first_dir,
            "--duration",
            "1s",
            "--users",
            "2",
            "--interval",
            "1h",
            "--no-progress",
            "--dir",
            temp_dir("polish-chaos").to_str().unwrap(),
        ],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(
        err.contains(&format!(
            "chaos: attached to the sticky up in {first_dir} (pid {})",
            first.pid()
        )),
        "{err}"
    );
    assert!(
        !err.contains("clusters are running"),
        "--attach DIR chose: {err}"
    );

    // Once the second stops, status shows the first (still running), with
    // nothing to say about others.
    second.stop();
    let (_, out, _) = sticky_in(&first.home, &["status"]);
    assert!(out.contains(&format!("run dir:    {first_dir}")), "{out}");
    assert!(!out.contains("clusters are running"), "{out}");

    // No cluster at all: bench and chaos --attach say so, once.
    let (code, _, err) = sticky(&bench);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no `sticky up` recorded"), "{err}");
    assert!(err.contains("start one, or pass --url"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
