//! The session-creation workload of `bench/scale.sh` against a real cluster
//! (3 `sticky store`, 1 `sticky web`, R=2, sync mode): the demo app's
//! `/api/note` gives a session a payload of a chosen size in one request,
//! and `sticky bench --fresh-sessions` makes every request a new session,
//! exactly `--requests` of them, also under `--rate`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;
use sticky_test_support::{run_bench, Browser, Cluster, Sticky};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

#[test]
fn notes_are_stored_and_capped() {
    let cluster = Cluster::start(STICKY, 3, &["ws1"], |c| c);
    let addr = cluster.web("ws1").addr();
    let mut b = Browser::new();
    let empty = b.get(addr, "/api/note").json_ok();
    assert_eq!(empty["text"], "", "{empty}");

    let text = "é".repeat(4096);
    let set = b
        .post(addr, "/api/note", Some(&json!({ "text": text })))
        .json_ok();
    assert_eq!(set["chars"], 4096, "{set}");
    assert_eq!(set["server"], "ws1", "{set}");
    assert_eq!(set["source"], "new", "{set}");
    let got = b.get(addr, "/api/note").json_ok();
    assert_eq!(got["text"], text.as_str());
    assert_eq!(got["source"], "cache", "{got}");

    let long = b.post(
        addr,
        "/api/note",
        Some(&json!({ "text": "x".repeat(4097) })),
    );
    assert_eq!(long.status, 400, "{long:?}");
    let kept = b.get(addr, "/api/note").json_ok();
    assert_eq!(
        kept["text"],
        text.as_str(),
        "a refused note changes nothing"
    );
    cluster.web("ws1").assert_no_panic();
}

#[test]
fn fresh_sessions_create_one_session_per_request() {
    let cluster = Cluster::start(STICKY, 3, &["ws1"], |c| c);
    let web = cluster.web("ws1");
    let requests = 300;
    let body = json!({ "text": "n".repeat(1024) }).to_string();
    let requests_arg = requests.to_string();
    let (stdout, report) = run_bench(
        STICKY,
        web,
        &[
            "--fresh-sessions",
            "--users",
            "4",
            "--threads",
            "2",
            "--write-ratio",
            "1",
            "--write-path",
            "/api/note",
            "--write-body",
            &body,
            "--requests",
            &requests_arg,
            "--rate",
            "1000",
            "--warmup",
            "0s",
            "--no-progress",
        ],
    );
    assert!(stdout.contains("a new session per write"), "{stdout}");
    assert_eq!(report["requests"], requests, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert_eq!(report["settings"]["fresh_sessions"], true, "{report}");

    // Every request made its own session, each on two stores (R=2).
    assert_eq!(
        cluster.stored_keys(),
        2 * requests,
        "sessions on the stores (R=2)"
    );
    web.assert_no_panic();
}
