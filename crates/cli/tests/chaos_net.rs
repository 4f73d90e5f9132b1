//! `sticky chaos --net` end to end (issue 14, item 7): every process of a
//! real cluster in its own network namespace (`sticky up --netns`), every
//! network fault kind, every process fault kind and every client fault
//! (route cookie dropped, old route cookie replayed, users switching
//! between directors), sync mode, R=2, two directors: zero anomalies.
//!
//! Also: `sticky up --netns` itself, and the removal of what a killed one
//! left. Needs root, `ip` and `tc`: skips loudly without them, except
//! under `CI`, where it fails instead.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Output;

use serde_json::Value;
use sticky_test_support::{
    http_request, pid_alive, random_u64, require_program_from, require_root, signal, wait_until,
    Sticky, UpProcess, DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// The network fault kinds (`sticky chaos --faults`), and the one that
/// needs two directors.
const NET_KINDS: [&str; 6] = [
    "isolate-web",
    "cut-web-directors",
    "cut-web-stores",
    "cut-store-web-one-way",
    "isolate-store",
    "slow-link",
];
const TWO_DIRECTOR_KIND: &str = "cut-director-web";
const PROCESS_KINDS: [&str; 6] = [
    "kill-web",
    "kill-store",
    "pause-web",
    "pause-store",
    "restart-web",
    "restart-store",
];

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

/// Two directors: users switch between them, and one of them is cut from
/// a web server (`cut-director-web`).
fn directors() -> u32 {
    2
}

/// The network namespaces whose name says `sticky up` process `pid`
/// created them (`TAG.PID.START.LABEL`).
fn namespaces_of(pid: u64) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.split('.').nth(1) == Some(&pid.to_string()))
        .map(str::to_owned)
        .collect()
}

#[test]
fn network_and_client_faults_with_two_replicas_show_no_anomaly() {
    if !can_run("sticky chaos --net") {
        return;
    }
    let directors = directors();
    let dir = sticky_test_support::temp_path("chaos-net", "d");
    let json = dir.join("chaos.json");
    let history = dir.join("chaos-history.jsonl");
    let mut last = String::new();
    for _ in 0..5 {
        let base = 10_000 + (random_u64() % 220) as u16 * 100;
        let out = STICKY
            .command()
            .arg("chaos")
            .args(["--net", "--port", &base.to_string()])
            .args(["--web", "3", "--standby", "1", "--stores", "3"])
            .args(["--replicas", "2", "--mode", "sync"])
            .args(["--directors", &directors.to_string()])
            .args(["--duration", "90s", "--users", "24", "--interval", "1500ms"])
            // Holds shorter than a web server's lease (3 s) as well as
            // longer ones: on the code before issue 14 the short ones are
            // those that lost writes (docs/reliability.md).
            .args(["--net-hold-min", "1s", "--net-hold-max", "5s"])
            .args(["--drop-route", "0.05", "--replay-route", "0.05"])
            .arg("--dir")
            .arg(&dir)
            .arg("--json")
            .arg(&json)
            .arg("--history")
            .arg(&history)
            .arg("--no-progress")
            .output()
            .expect("run sticky chaos");
        let shown = text(&out);
        let up_log = std::fs::read_to_string(dir.join("cluster/up.log")).unwrap_or_default();
        if !out.status.success() && up_log.contains("is not free") {
            last = shown;
            continue;
        }
        check(&dir, &json, &history, directors, &shown, &up_log);
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    panic!("no free port range in 5 attempts:\n{last}");
}

fn check(dir: &Path, json: &Path, history: &Path, directors: u32, shown: &str, up_log: &str) {
    let s: Value = serde_json::from_str(
        &std::fs::read_to_string(json).unwrap_or_else(|e| panic!("no summary ({e}): {shown}")),
    )
    .expect("the JSON summary parses");
    let shown = format!("{shown}\n--- up.log (tail)\n{}", tail(up_log, 30));

    // The set-up: namespaces, sync, R=2, the directors asked for.
    assert_eq!(s["settings"]["net"], true, "{shown}");
    assert_eq!(s["settings"]["mode"], "sync");
    assert_eq!(s["settings"]["replicas"].as_u64(), Some(2));
    assert_eq!(
        s["settings"]["directors"].as_u64(),
        Some(u64::from(directors))
    );

    // Every fault kind came, each was carried out and healed, and the
    // network faults dropped packets.
    let started = &s["faults"]["started"];
    let mut kinds: Vec<&str> = NET_KINDS.iter().chain(&PROCESS_KINDS).copied().collect();
    if directors >= 2 {
        kinds.push(TWO_DIRECTOR_KIND);
    }
    for kind in kinds {
        assert!(
            started[kind].as_u64().unwrap_or(0) >= 1,
            "no {kind}: {started}\n{shown}"
        );
    }
    assert_eq!(s["faults"]["errors"].as_u64(), Some(0), "{shown}");
    assert_eq!(s["faults"]["unsettled"].as_u64(), Some(0), "{shown}");
    assert!(s["faults"]["max_concurrent"].as_u64().unwrap() <= 2);
    let dropped: u64 = s["net_dropped"]
        .as_object()
        .expect("net_dropped")
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert!(dropped > 0, "no packet dropped: {shown}");

    // Every client fault came.
    let c = &s["client"];
    assert!(c["dropped_route"].as_u64().unwrap() >= 1, "{c}");
    assert!(c["replayed_route"].as_u64().unwrap() >= 1, "{c}");
    let per_director = c["by_director"].as_array().unwrap();
    assert_eq!(per_director.len(), directors as usize, "{c}");
    if directors >= 2 {
        assert!(c["director_switches"].as_u64().unwrap() >= 1, "{c}");
        assert!(
            per_director.iter().all(|n| n.as_u64().unwrap() > 0),
            "every director served: {c}"
        );
    }

    // The users did work; nothing anomalous; every session read back.
    assert!(s["increments"]["ok"].as_u64().unwrap() > 500, "{shown}");
    assert!(s["reads"]["ok"].as_u64().unwrap() > 500, "{shown}");
    let anomalies = s["anomalies"].as_object().expect("anomalies");
    assert_eq!(anomalies.len(), 4, "{anomalies:?}");
    for (kind, n) in anomalies {
        assert_eq!(
            n.as_u64(),
            Some(0),
            "{kind}: {shown}\n(history: {})",
            history.display()
        );
    }
    assert_eq!(s["unverified"].as_u64(), Some(0), "{shown}");
    assert_eq!(s["lost_increments"].as_u64(), Some(0), "{shown}");
    let lines = std::fs::read_to_string(history).expect("history");
    assert_eq!(
        lines
            .lines()
            .filter(|l| l.contains(r#""op":"final""#) && l.contains(r#""outcome":"ok""#))
            .count(),
        24,
        "one successful closing read per user (it is retried until it succeeds)"
    );
    assert!(!lines.contains("sticky.sid"), "no cookie in the history");

    // chaos stopped the cluster, and `sticky up` removed its network.
    let state: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("cluster/up.json")).expect("up.json"),
    )
    .unwrap();
    assert_eq!(state["running"], false, "{state}");
    let up_pid = state["pid"].as_u64().unwrap();
    assert_eq!(
        namespaces_of(up_pid),
        Vec::<String>::new(),
        "namespaces left behind"
    );
}

/// Whether this machine can run the network tests (root, `ip`, `tc`);
/// skips loudly otherwise (fails under `CI`).
fn can_run(what: &str) -> bool {
    require_root(what)
        && require_program_from("ip", "iproute2")
        && require_program_from("tc", "iproute2")
}

#[test]
fn up_netns_serves_from_namespaces_and_a_killed_runs_leftovers_go_at_the_next_start() {
    if !can_run("sticky up --netns") {
        return;
    }
    let args = [
        "--netns",
        "--web",
        "1",
        "--standby",
        "0",
        "--stores",
        "1",
        "--replicas",
        "1",
    ];
    let first = UpProcess::start(STICKY, &args);
    let table = first.table();
    assert_eq!(table.len(), 3, "{table:?}");
    // Every process on its own address of the run's /24 (not loopback).
    let mut ips: Vec<String> = table.iter().map(|r| r.2.ip().to_string()).collect();
    assert!(ips.iter().all(|ip| ip.starts_with("10.213.")), "{ips:?}");
    ips.dedup();
    assert_eq!(ips.len(), 3, "one address each: {ips:?}");
    let shop = table.iter().find(|r| r.1 == "director").unwrap().2;
    let r = http_request(shop, "POST", "/api/counter", &[], None).expect("the shop answers");
    assert_eq!(r.status, 200, "the shop over the bridge");
    let pid = first.pid();
    assert_eq!(
        namespaces_of(u64::from(pid)).len(),
        4,
        "3 hosts and the switch"
    );

    // kill -9: the namespaces stay (nobody removes them)...
    signal(pid, "KILL");
    wait_until(DEADLINE, "sticky up dies", || !pid_alive(pid));
    assert_eq!(namespaces_of(u64::from(pid)).len(), 4);
    // ... until the next `sticky up --netns` starts.
    let second = UpProcess::start(STICKY, &args);
    assert_eq!(
        namespaces_of(u64::from(pid)),
        Vec::<String>::new(),
        "the dead run's namespaces are removed"
    );
    let second_pid = second.pid();
    assert_eq!(namespaces_of(u64::from(second_pid)).len(), 4);
    drop(first);
    // A clean stop removes its own.
    drop(second);
    assert_eq!(namespaces_of(u64::from(second_pid)), Vec::<String>::new());
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
