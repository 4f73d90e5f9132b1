//! The monitoring files in `deploy/` against the real processes: a store,
//! a web server and a director are started from one cluster file, serve a
//! few requests, and are scraped the way Prometheus would (no credentials:
//! the director's admin `/metrics`, the web server's and the store's own
//! metrics listeners); every metric name a query of the Grafana dashboard
//! (`deploy/grafana/sticky.json`) or of the alert rules
//! (`deploy/prometheus/sticky-alerts.yml`) uses must be among the names
//! they export, and every label a query groups by must be on one of its
//! metrics (or be one Prometheus adds). The scrape configuration
//! (`deploy/prometheus/prometheus.yml`) must scrape exactly the processes
//! of the cluster file of `docs/deploy.md` (`deploy/cluster.example.toml`),
//! each with its `process` label.
//!
//! The YAML files are read through Python's PyYAML (`python3-yaml`), so no
//! YAML crate is needed; without it the YAML checks are skipped loudly,
//! except in CI.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use sticky_test_support::{
    free_port, http_request, log_to, temp_dir, wait_until, ChildProcess, Sticky, DEADLINE,
    STARTUP_DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Labels Prometheus itself puts on every series, or that the scrape
/// configuration adds (`process`), or that histograms have (`le`).
const ADDED_LABELS: [&str; 4] = ["instance", "job", "process", "le"];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `path`'s YAML as JSON, through PyYAML; `None` (after a loud skip
/// message, or a panic in CI) when Python or PyYAML is missing.
fn yaml(path: &Path) -> Option<Value> {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)",
        ])
        .arg(path)
        .output();
    match out {
        Ok(out) if out.status.success() => Some(serde_json::from_slice(&out.stdout).unwrap()),
        Ok(out) if String::from_utf8_lossy(&out.stderr).contains("No module named 'yaml'") => {
            skip("SKIPPED: PyYAML is not installed (apt-get install python3-yaml)");
            None
        }
        Ok(out) => panic!(
            "{} is not valid YAML: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            skip(&format!("SKIPPED: cannot run python3 ({e})"));
            None
        }
    }
}

fn skip(msg: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{msg}; CI is set, so this test must run");
    }
    eprintln!("\n{}\n{msg}\n{}\n", "=".repeat(72), "=".repeat(72));
}

/// The metric names (`sticky_...`) and the `by (...)` labels of a PromQL
/// expression.
fn names_and_groupings(expr: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_alphabetic() || c == b'_' {
            let start = i;
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            let word = &expr[start..i];
            if word.starts_with("sticky_") {
                names.insert(word.to_owned());
            }
        } else if c == b'"' {
            // Skip label values: "sess.lease" is not a name.
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                i += 1;
            }
            i += 1;
        } else {
            i += 1;
        }
    }
    let mut labels = BTreeSet::new();
    for part in expr.split("by (").skip(1) {
        let inner = part.split(')').next().unwrap();
        labels.extend(inner.split(',').map(|l| l.trim().to_owned()));
    }
    (names, labels)
}

/// Every query of the dashboard and the alert rules (where each came from,
/// the expression).
fn queries(alerts: Option<&Value>) -> Vec<(String, String)> {
    let path = repo().join("deploy/grafana/sticky.json");
    let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    let panels = dash["panels"].as_array().expect("panels");
    assert!(panels.len() >= 8, "a dashboard of a few panels");
    for panel in panels {
        let title = panel["title"].as_str().unwrap().to_owned();
        let targets = panel["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for t in targets {
            out.push((
                format!("panel {title:?}"),
                t["expr"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let titles: BTreeSet<&str> = panels
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    for wanted in [
        "Requests per second",
        "Response time",
        "Failovers",
        "Takeovers",
        "Re-copies",
        "Store keys",
        "Leases",
        "Fences",
    ] {
        assert!(titles.contains(wanted), "the dashboard shows {wanted}");
    }
    if let Some(alerts) = alerts {
        for group in alerts["groups"].as_array().expect("groups") {
            for rule in group["rules"].as_array().expect("rules") {
                let name = rule["alert"].as_str().expect("alert name").to_owned();
                out.push((
                    format!("alert {name}"),
                    rule["expr"].as_str().unwrap().to_owned(),
                ));
            }
        }
    }
    out
}

/// The sample names of a Prometheus text exposition, and for each the
/// label names seen on it.
fn exposition(text: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let end = line.find(['{', ' ']).unwrap_or(line.len());
        let labels = out.entry(line[..end].to_owned()).or_default();
        if let Some(rest) = line[end..].strip_prefix('{') {
            let inner = rest.split('}').next().unwrap();
            for pair in inner.split(',') {
                if let Some((k, _)) = pair.split_once('=') {
                    labels.insert(k.trim().to_owned());
                }
            }
        }
    }
    out
}

fn scrape(addr: SocketAddr) -> String {
    let resp = http_request(addr, "GET", "/metrics", &[], None)
        .unwrap_or_else(|e| panic!("scrape {addr}: {e}"));
    assert_eq!(
        resp.status,
        200,
        "scrape {addr} without credentials: {}",
        resp.text()
    );
    resp.text()
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

struct Processes {
    _store: ChildProcess,
    _web: ChildProcess,
    _director: ChildProcess,
    web: SocketAddr,
    public: SocketAddr,
    admin: SocketAddr,
    web_metrics: SocketAddr,
    store_metrics: SocketAddr,
}

/// A store, a web server and a director from one cluster file; the web
/// server limits new sessions to one a second per address and trusts no
/// proxy, so that a second new session from loopback is refused (and the
/// refusal's labelled counter exists).
///
/// Ports are picked free and bound by the processes a moment later: a
/// test running alongside may take one first (a process then exits with
/// "address already in use", while the port answers for someone else).
/// So the whole set starts again on new ports, at most three times.
fn start() -> Processes {
    let mut last = String::new();
    for _ in 0..3 {
        match try_start() {
            Ok(p) => return p,
            Err(why) => {
                eprintln!("starting the processes again on new ports: {why}");
                last = why;
            }
        }
    }
    panic!("the store, web server and director did not start: {last}");
}

fn try_start() -> Result<Processes, String> {
    let dir = temp_dir("deploy-metrics");
    let [store, store_metrics, web, web_metrics, public, admin] = [(); 6].map(|()| free_port());
    let file = dir.join("cluster.toml");
    std::fs::write(
        &file,
        format!(
            r#"secret = "{secret}"
replicas = 1

[session]
new_sessions_per_ip = 1
new_sessions_burst = 1
trusted_proxies = []

[director]
listen = "127.0.0.1:{public}"
admin = "127.0.0.1:{admin}"
health_interval_ms = 100

[[web]]
name = "ws1"
listen = "127.0.0.1:{web}"
metrics = "127.0.0.1:{web_metrics}"

[[store]]
name = "s1"
listen = "127.0.0.1:{store}"
metrics = "127.0.0.1:{store_metrics}"
"#,
            secret = "m".repeat(40)
        ),
    )
    .unwrap();
    let config = file.to_str().unwrap();
    let state = dir.join("s1");
    let mut cmd = STICKY.command();
    cmd.args(["store", "--config", config, "--name", "s1", "--state-dir"])
        .arg(&state);
    log_to(&mut cmd, "deploy-metrics-store");
    let mut store_p = ChildProcess::spawn(&mut cmd, "sticky store");
    store_p
        .wait_for(STARTUP_DEADLINE, Duration::from_millis(20), || {
            std::net::TcpStream::connect(addr(store_metrics)).ok()
        })
        .map_err(|e| format!("the store's metrics listener: {e:?}"))?;
    let mut cmd = STICKY.command();
    cmd.args(["web", "--config", config, "--name", "ws1"]);
    log_to(&mut cmd, "deploy-metrics-web");
    let mut web_p = ChildProcess::spawn(&mut cmd, "sticky web");
    web_p
        .wait_for(STARTUP_DEADLINE, Duration::from_millis(20), || {
            std::net::TcpStream::connect(addr(web_metrics)).ok()
        })
        .map_err(|e| format!("the web server's metrics listener: {e:?}"))?;
    let mut cmd = STICKY.command();
    cmd.args(["director", "--config", config]);
    log_to(&mut cmd, "deploy-metrics-director");
    let mut director_p = ChildProcess::spawn(&mut cmd, "sticky director");
    let mut web_gone = false;
    director_p
        .wait_for(STARTUP_DEADLINE, Duration::from_millis(20), || {
            if !store_p.is_running() || !web_p.is_running() {
                web_gone = true;
                return Some(());
            }
            let resp = http_request(addr(admin), "GET", "/metrics", &[], None).ok()?;
            resp.text()
                .contains("sticky_director_server_up{server=\"ws1\"} 1")
                .then_some(())
        })
        .map_err(|e| format!("the director sees ws1 up: {e:?}"))?;
    if web_gone {
        return Err("the store or the web server exited (a port taken meanwhile?)".into());
    }
    Ok(Processes {
        _store: store_p,
        _web: web_p,
        _director: director_p,
        web: addr(web),
        public: addr(public),
        admin: addr(admin),
        web_metrics: addr(web_metrics),
        store_metrics: addr(store_metrics),
    })
}

/// `name=value` of each `Set-Cookie`, joined for a `Cookie` header.
fn cookies(resp: &sticky_test_support::Response) -> String {
    resp.headers_all("set-cookie")
        .filter_map(|c| c.split(';').next())
        .collect::<Vec<_>>()
        .join("; ")
}

#[test]
fn every_metric_the_dashboard_and_alerts_query_is_exported() {
    let alerts = yaml(&repo().join("deploy/prometheus/sticky-alerts.yml"));
    let p = start();

    // A session through the director, used a few times.
    let first = http_request(p.public, "POST", "/api/counter", &[], None).unwrap();
    assert_eq!(first.status, 200, "{}", first.text());
    let jar = cookies(&first);
    assert!(!jar.is_empty(), "a session cookie");
    for _ in 0..5 {
        let r = http_request(p.public, "POST", "/api/counter", &[("cookie", &jar)], None).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // New sessions beyond one a second from this address are refused.
    wait_until(DEADLINE, "a new session refused for the rate", || {
        http_request(p.web, "POST", "/api/counter", &[], None)
            .unwrap()
            .status
            == 429
    });
    // The store publishes its figures every second.
    wait_until(DEADLINE, "the store counts the session's key", || {
        scrape(p.store_metrics)
            .lines()
            .any(|l| l.starts_with("sticky_store_keys ") && !l.ends_with(" 0"))
    });

    let mut exported = BTreeMap::new();
    for (what, at) in [
        ("director", p.admin),
        ("web server", p.web_metrics),
        ("store", p.store_metrics),
    ] {
        let text = scrape(at);
        let found = exposition(&text);
        assert!(
            found.keys().any(|n| n.starts_with("sticky_")),
            "the {what} exports sticky metrics:\n{text}"
        );
        for (name, labels) in found {
            exported
                .entry(name)
                .or_insert_with(BTreeSet::new)
                .extend(labels);
        }
    }
    // What the web server registers before anything happened.
    for name in [
        "sticky_takeovers_total",
        "sticky_fences_total",
        "sticky_recopies_total",
    ] {
        assert!(
            exported.contains_key(name),
            "{name} is exported from the start"
        );
    }

    let mut missing = Vec::new();
    for (place, expr) in queries(alerts.as_ref()) {
        let (names, by) = names_and_groupings(&expr);
        // An alert may ask Prometheus's own `up` only; a panel shows ours.
        assert!(
            !names.is_empty() || !place.starts_with("panel"),
            "{place}: no sticky metric in {expr}"
        );
        let mut labels: BTreeSet<String> = BTreeSet::new();
        for name in &names {
            match exported.get(name) {
                Some(l) => labels.extend(l.iter().cloned()),
                None => missing.push(format!("{place}: {name}")),
            }
        }
        for label in by {
            if !ADDED_LABELS.contains(&label.as_str()) && !labels.contains(&label) {
                missing.push(format!("{place}: label {label} (on none of {names:?})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "queried but not exported:\n{}\nexported: {:?}",
        missing.join("\n"),
        exported.keys().collect::<Vec<_>>()
    );
}

#[test]
fn the_web_metrics_listener_needs_no_token_and_the_web_port_still_does() {
    let p = start();
    let text = scrape(p.web_metrics);
    assert!(text.contains("sticky_cache_hits_total"), "{text}");
    let resp = http_request(p.web, "GET", "/.sticky/metrics", &[], None).unwrap();
    assert_eq!(
        resp.status, 401,
        "the web port's metrics keep the admin token"
    );
    // Nothing but /metrics on the metrics listener.
    let resp = http_request(p.web_metrics, "GET", "/.sticky/health", &[], None).unwrap();
    assert_eq!(resp.status, 404);
}

/// The cluster file of docs/deploy.md (`deploy/cluster.example.toml`,
/// which the guide quotes: `deploy_three_machines.rs` checks that), with a
/// secret and password where `sticky init`'s go.
fn deploy_md_cluster() -> sticky_config::ClusterFile {
    let text = std::fs::read_to_string(repo().join("deploy/cluster.example.toml"))
        .unwrap()
        .replace("\"from sticky init\"", &format!("\"{}\"", "d".repeat(40)));
    sticky_config::ClusterFile::parse(&text, Path::new("deploy/cluster.example.toml")).unwrap()
}

#[test]
fn prometheus_scrapes_every_process_of_the_deployment_guide() {
    let path = repo().join("deploy/prometheus/prometheus.yml");
    let Some(config) = yaml(&path) else {
        return;
    };
    for rules in config["rule_files"].as_array().expect("rule_files") {
        let file = path.parent().unwrap().join(rules.as_str().unwrap());
        assert!(file.exists(), "{} names {}", path.display(), file.display());
    }
    // job -> {(target, process)}
    let mut jobs: BTreeMap<String, BTreeSet<(String, String)>> = BTreeMap::new();
    for job in config["scrape_configs"].as_array().expect("scrape_configs") {
        let name = job["job_name"].as_str().unwrap().to_owned();
        assert_eq!(job["metrics_path"].as_str(), Some("/metrics"), "{name}");
        assert!(
            job.get("authorization").is_none() && job.get("basic_auth").is_none(),
            "{name}: scraping needs no credential"
        );
        for sc in job["static_configs"].as_array().expect("static_configs") {
            let process = sc["labels"]["process"]
                .as_str()
                .unwrap_or_else(|| panic!("{name}: a target without its process label"))
                .to_owned();
            for t in sc["targets"].as_array().unwrap() {
                jobs.entry(name.clone())
                    .or_default()
                    .insert((t.as_str().unwrap().to_owned(), process.clone()));
            }
        }
    }
    let file = deploy_md_cluster();
    let director = file.director.as_ref().expect("[director]");
    let want = |pairs: Vec<(Option<SocketAddr>, &str)>| -> BTreeSet<(String, String)> {
        pairs
            .into_iter()
            .map(|(a, n)| {
                let a = a.unwrap_or_else(|| panic!("docs/deploy.md: {n} has no metrics address"));
                (a.to_string(), n.to_owned())
            })
            .collect()
    };
    assert_eq!(
        jobs["sticky-director"],
        want(vec![(Some(director.admin), "director")])
    );
    assert_eq!(
        jobs["sticky-web"],
        want(
            file.web
                .iter()
                .map(|w| (w.metrics, w.name.as_str()))
                .collect()
        )
    );
    assert_eq!(
        jobs["sticky-store"],
        want(
            file.store
                .iter()
                .map(|s| (s.metrics, s.name.as_str()))
                .collect()
        )
    );
    assert_eq!(jobs.len(), 3, "{jobs:?}");
}

#[test]
fn the_query_parser_finds_names_and_groupings() {
    let (names, by) = names_and_groupings(
        "sum by (process, reason) (rate(sticky_a_total{command=\"sticky_not_a_name\"}[5m])) / sticky_b",
    );
    assert_eq!(
        names,
        BTreeSet::from(["sticky_a_total".to_owned(), "sticky_b".to_owned()])
    );
    assert_eq!(
        by,
        BTreeSet::from(["process".to_owned(), "reason".to_owned()])
    );
}
