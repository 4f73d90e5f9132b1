//! `sticky chaos` end to end (issue #6): a short fault schedule on a real
//! cluster of processes, sync mode, R=2, must show zero anomalies; and
//! chaos can start (and stop) its own cluster.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use sticky_test_support::{random_u64, Sticky, UpProcess};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

fn chaos(args: &[&str]) -> Output {
    STICKY
        .command()
        .arg("chaos")
        .args(args)
        .output()
        .expect("run sticky chaos")
}

fn text(out: &Output) -> String {
    format!(
        "exit {}\n--- stdout\n{}\n--- stderr (tail)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

fn summary(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the JSON summary");
    serde_json::from_str(&text).expect("the JSON summary parses")
}

fn assert_no_anomaly(s: &Value, out: &str) {
    let anomalies = s["anomalies"].as_object().expect("anomalies");
    assert_eq!(anomalies.len(), 4, "{anomalies:?}");
    for (kind, n) in anomalies {
        assert_eq!(n.as_u64(), Some(0), "{kind}: {out}");
    }
    assert_eq!(s["unverified"].as_u64(), Some(0), "{out}");
    assert_eq!(s["lost_increments"].as_u64(), Some(0), "{out}");
}

#[test]
fn a_short_sync_schedule_with_two_replicas_shows_no_anomaly() {
    let up = UpProcess::start(
        STICKY,
        &[
            "--web",
            "3",
            "--standby",
            "1",
            "--stores",
            "3",
            "--replicas",
            "2",
            "--mode",
            "sync",
        ],
    );
    let dir = up.dir.to_str().expect("a UTF-8 temp path").to_owned();
    let json = up.dir.join("chaos.json");
    let history = up.dir.join("chaos-history.jsonl");
    let out = chaos(&[
        "--attach",
        &dir,
        "--duration",
        "60s",
        "--users",
        "24",
        "--interval",
        "1500ms",
        "--json",
        json.to_str().unwrap(),
        "--history",
        history.to_str().unwrap(),
        "--no-progress",
    ]);
    let shown = text(&out);
    assert!(out.status.success(), "{shown}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("result: no anomaly"), "{shown}");

    let s = summary(&json);
    assert_no_anomaly(&s, &shown);
    assert_eq!(s["settings"]["mode"], "sync");
    assert_eq!(s["settings"]["replicas"].as_u64(), Some(2));
    // About one fault every 1.5 s; each kind comes once per round.
    let total = s["faults_total"].as_u64().unwrap();
    assert!(total >= 18, "only {total} faults: {shown}");
    for kind in [
        "kill-web",
        "kill-store",
        "pause-web",
        "pause-store",
        "restart-web",
        "restart-store",
    ] {
        assert!(
            s["faults"]["started"][kind].as_u64().unwrap_or(0) >= 1,
            "no {kind}: {shown}"
        );
    }
    assert_eq!(s["faults"]["unsettled"].as_u64(), Some(0), "{shown}");
    assert!(s["faults"]["max_concurrent"].as_u64().unwrap() <= 2);
    // The users did work, and every session was read back at the end.
    assert!(s["increments"]["ok"].as_u64().unwrap() > 500, "{shown}");
    assert!(s["reads"]["ok"].as_u64().unwrap() > 500, "{shown}");

    // The history has every operation and every fault step, as JSON lines.
    let lines = std::fs::read_to_string(&history).expect("history");
    let events: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    let ops = events.iter().filter(|e| e["type"] == "op").count() as u64;
    let counted = ["increments", "reads"]
        .iter()
        .flat_map(|k| ["ok", "failed", "unknown"].map(|o| s[*k][o].as_u64().unwrap()))
        .sum::<u64>();
    assert_eq!(ops, counted, "one history line per operation");
    let starts = events
        .iter()
        .filter(|e| e["type"] == "fault" && e["phase"] == "start")
        .count() as u64;
    assert_eq!(starts, total + s["faults"]["errors"].as_u64().unwrap());
    // The closing read is retried until it succeeds (a fault may still be
    // healing): one successful closing read per user.
    assert_eq!(
        events
            .iter()
            .filter(|e| e["op"] == "final" && e["outcome"] == "ok")
            .count(),
        24,
        "one successful closing read per user"
    );
    assert!(!lines.contains("sticky.sid"), "no cookie in the history");
    // The cluster is still up (attached, not started, by chaos).
    assert!(std::net::TcpStream::connect(up.shop()).is_ok());
}

#[test]
fn chaos_starts_and_stops_its_own_cluster() {
    let dir = sticky_test_support::temp_path("chaos-own", "d");
    let json = dir.join("chaos.json");
    let mut last = String::new();
    for _ in 0..5 {
        let base = 10_000 + (random_u64() % 220) as u16 * 100;
        let out = chaos(&[
            "--port",
            &base.to_string(),
            "--web",
            "2",
            "--standby",
            "0",
            "--stores",
            "2",
            "--replicas",
            "2",
            "--dir",
            dir.to_str().unwrap(),
            "--duration",
            "8s",
            "--users",
            "8",
            "--faults",
            "kill-web,pause-store",
            "--interval",
            "1s",
            "--json",
            json.to_str().unwrap(),
            "--no-progress",
        ]);
        let shown = text(&out);
        let up_log = std::fs::read_to_string(dir.join("cluster/up.log")).unwrap_or_default();
        if !out.status.success() && up_log.contains("is not free") {
            last = shown;
            continue;
        }
        assert!(out.status.success(), "{shown}\n--- up.log\n{up_log}");
        let s = summary(&json);
        assert_no_anomaly(&s, &shown);
        let started = s["faults"]["started"].as_object().unwrap();
        assert!(
            started
                .keys()
                .all(|k| k == "kill-web" || k == "pause-store"),
            "only the faults asked for: {started:?}"
        );
        // chaos stopped the cluster it started: no process of it is left.
        let state: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("cluster/up.json")).expect("up.json"),
        )
        .unwrap();
        assert_eq!(state["running"], false, "{state}");
        for p in state["processes"].as_array().unwrap() {
            let pid = p["pid"].as_u64().unwrap();
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists()
                    || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                        .is_ok_and(|s| s.contains(") Z ")),
                "{} (pid {pid}) still runs",
                p["name"]
            );
        }
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    panic!("no free port range in 5 attempts:\n{last}");
}
