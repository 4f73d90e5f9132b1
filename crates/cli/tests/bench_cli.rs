//! `sticky bench` against a real cluster (3 `sticky store`, 1 `sticky web`,
//! R=2, sync mode): a short run measures requests, sees no errors, and its
//! virtual users keep their sessions (one session per user on the stores).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use sticky_test_support::{run_bench, sess_command_calls, Cluster, Sticky};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

#[test]
fn bench_runs_against_a_real_cluster() {
    let cluster = Cluster::start(STICKY, 3, &["ws1"], |c| c);
    let web = cluster.web("ws1");
    let users = 8;
    let (stdout, report) = run_bench(
        STICKY,
        web,
        &[
            "--users",
            &users.to_string(),
            "--duration",
            "2s",
            "--warmup",
            "500ms",
            "--write-ratio",
            "0.2",
            "--session-bytes",
            "200",
            "--threads",
            "1",
            "--no-progress",
        ],
    );
    assert!(stdout.contains("| all |"), "no summary table:\n{stdout}");

    let count = |k: &str| {
        report[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {report}"))
    };
    assert!(count("requests") > 0, "{report}");
    assert_eq!(count("errors"), 0, "{report}");
    assert!(report["rps"].as_f64().unwrap() > 0.0, "{report}");
    assert!(report["read"]["count"].as_u64().unwrap() > 0, "{report}");
    assert!(report["write"]["count"].as_u64().unwrap() > 0, "{report}");
    let all = &report["all"];
    assert!(
        all["p50_ms"].as_f64().unwrap() <= all["p99_ms"].as_f64().unwrap(),
        "{report}"
    );
    assert!(
        all["p99_ms"].as_f64().unwrap() <= all["max_ms"].as_f64().unwrap(),
        "{report}"
    );
    assert_eq!(report["settings"]["fill_requests_per_user"], 4, "{report}");

    // Every user kept its cookie: exactly one session per user, each on two
    // stores (R=2). A user that lost its cookie would have made new ones.
    assert_eq!(
        cluster.stored_keys(),
        2 * users,
        "sessions on the stores (R=2, {users} users)"
    );
    let puts: u64 = cluster
        .store_addrs()
        .iter()
        .map(|a| sess_command_calls(*a)["sess.put"])
        .sum();
    assert!(puts > 0, "writes reached the stores");
    web.assert_no_panic();
}
