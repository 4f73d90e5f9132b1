//! TLS between web servers and the stores, with real processes: two
//! `sticky store`s serving TLS (one with `--tls-cert --tls-key`, one with
//! `tls_cert`/`tls_key` in its `[[store]]` entry) and a `sticky web` whose cluster
//! file names them `sticky+tls://` and trusts the test CA (`[session]
//! store_tls_ca`). Sessions are written over TLS (the web server's
//! lease and every change need the stores), and the stores hold them; a
//! plain RESP client gets nothing from a TLS store; the director's store
//! probes reach them over TLS.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use sticky_client::{ClientOptions, StoreClient};
use sticky_test_support::director::DirectorProcess;
use sticky_test_support::{
    wait_until, Browser, ClusterConfig, Sticky, StoreProcess, TestCa, WebProcess, DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

#[test]
fn web_servers_keep_sessions_on_tls_stores() {
    let ca = TestCa::new("store-tls");
    let cert = ca.issue("store");
    let tls_args = [
        "--tls-cert",
        cert.cert.to_str().unwrap(),
        "--tls-key",
        cert.key.to_str().unwrap(),
    ];
    let s1 = StoreProcess::start(STICKY, &tls_args);
    // s2 takes its certificate from its [[store]] entry instead of flags.
    let entry = ca.dir().join("s2.toml");
    std::fs::write(
        &entry,
        format!(
            "secret = \"{}\"\n[[store]]\nname = \"s2\"\nlisten = \"127.0.0.1:1\"\n\
             url = \"sticky+tls://127.0.0.1:1\"\ntls_cert = {:?}\ntls_key = {:?}\n",
            "s".repeat(32),
            cert.cert.display().to_string(),
            cert.key.display().to_string()
        ),
    )
    .unwrap();
    let s2 = StoreProcess::start(
        STICKY,
        &["--config", entry.to_str().unwrap(), "--name", "s2"],
    );
    assert!(s2.log_text().contains("tls=true"), "{}", s2.log_text());
    let url = |s: &StoreProcess| format!("sticky+tls://127.0.0.1:{}", s.port());
    let config = ClusterConfig::new(&[s1.addr(), s2.addr()], &["ws1"])
        .store_url("s1", &url(&s1))
        .store_url("s2", &url(&s2))
        .session(
            "store_tls_ca",
            &format!("{:?}", ca.ca_file().display().to_string()),
        )
        .write();
    // Ready means its lease is held by both stores: over TLS.
    let ws1 = WebProcess::start(STICKY, config.path(), "ws1");
    let mut browser = Browser::new();
    assert_eq!(browser.increment(ws1.addr()).value, 1);
    assert_eq!(browser.increment(ws1.addr()).value, 2);
    let sid = browser.session_id().expect("a session cookie");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let options = ClientOptions {
        tls_ca: Some(ca.ca_file().to_owned()),
        request_timeout: Duration::from_secs(5),
        connect_timeout: Duration::from_secs(5),
        ..ClientOptions::default()
    };
    let mut held = 0;
    for s in [&s1, &s2] {
        let client = StoreClient::new(&url(s), options.clone()).unwrap();
        let copy = rt.block_on(client.get(sid.as_bytes())).unwrap();
        // The owner is `ws1@<epoch>`; seq 2: both increments.
        if copy.is_some_and(|c| c.owner.starts_with("ws1@") && c.stamp.seq == 2) {
            held += 1;
        }
    }
    assert_eq!(held, 2, "both stores hold the session, written over TLS");

    // Plain RESP gets no PONG from a TLS store.
    let mut plain = s1.connect();
    plain
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    use std::io::{Read, Write};
    let _ = plain.write_all(b"PING\r\n");
    let mut buf = [0u8; 64];
    let n = plain.read(&mut buf).unwrap_or(0);
    assert!(
        !buf[..n].starts_with(b"+PONG"),
        "a TLS store answered plain RESP"
    );
    ws1.assert_no_panic();

    // The director's store probes speak TLS to them too (the dashboard's
    // store column): both up, with their keys counted.
    let director = format!(
        "{}\n[director]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\nadmin_hosts = [\"sticky.test\"]\n",
        config.toml()
    );
    let d = DirectorProcess::start_no_wait(STICKY, &director);
    wait_until(DEADLINE, "the director sees both TLS stores up", || {
        let stores = d.cluster()["stores"].clone();
        stores.as_array().is_some_and(|s| {
            s.len() == 2
                && s.iter()
                    .all(|s| s["state"] == "up" && s["keys"].as_u64() >= Some(1))
        })
    });
}
