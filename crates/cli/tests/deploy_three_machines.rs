//! The deployment guide (`docs/deploy.md`) followed on three "machines"
//! (issue 18, item 4): three network namespaces with the guide's addresses
//! (`app1` 10.0.0.11, `app2` 10.0.0.12, `app3` 10.0.0.13) and a fourth for
//! the clients (`mon`, 10.0.0.20), on a bridge of the test's own
//! ([`Net`]). The 10.0.0.x addresses exist only inside those namespaces.
//!
//! What it takes from the guide and the repository, as they are:
//!
//! - the cluster file: `deploy/cluster.example.toml`, which the guide
//!   quotes verbatim (the first test checks they agree), with only what
//!   the guide says to fill in: the secret and store password of a file
//!   `sticky init` wrote; `/etc/sticky` is a temporary directory here, and
//!   the director's certificate for `shop.example.com` comes from a test
//!   authority, installed where the file names it. `sticky check` must
//!   answer the guide's `ok (...)` line;
//! - the processes: each started as its systemd unit in `deploy/systemd/`
//!   would: the unit's `ExecStart=` with the instance name for `%i`, its
//!   `Environment=` (and `STATE_DIRECTORY` from `StateDirectory=`), run
//!   with `ip netns exec` in the namespace of the machine whose address the
//!   process listens on, in the guide's order (stores, web servers,
//!   director). systemd itself cannot run here (it is not PID 1 of a test
//!   machine), so the units' sandboxing (`DynamicUser=`, the `Protect*=`
//!   settings) is not exercised; `deploy_systemd.rs` verifies those. The
//!   binary under test stands in for `/usr/local/bin/sticky`. Nor is the
//!   guide's nftables firewall installed;
//! - the checks of the guide's step 8: `sticky status --admin
//!   10.0.0.11:8081` on `app1` exits with 0, and from `mon` the shop
//!   answers over TLS and HTTP/2 (`curl --http2`, asserted with
//!   `%{http_version}`), port 80 redirects to HTTPS, and the director's
//!   `/metrics` answers.
//!
//! Then several sessions (cookie jars, some on `ws1`, some on `ws2`) count
//! and fill carts, and every session must go on with its data (counter
//! and cart; a session that moved was loaded from a store), over TLS and
//! HTTP/2 again, after each of:
//!
//! 1. every process of `app2` (web server `ws2` and store `s2`) killed with
//!    SIGKILL (`sticky status` then exits with 3);
//! 2. both started again, as `Restart=on-failure` would, and the re-copy
//!    to the restarted store waited for as "Upgrades and restarts" says
//!    (`sticky_recopy_pending` 0, `sticky_stores_live` 3 on every web
//!    server), with new sessions on `ws2`;
//! 3. `app2` cut off the network ([`Net::isolate`]: its processes run on
//!    and hear nothing, no connection is refused), then reconnected.
//!
//! Needs root, `ip` (iproute2) and `curl`: skips loudly without them,
//! except under `CI`, where it fails instead. Everything is removed also
//! on failure: the processes (killed on drop), the namespaces ([`Net`]'s
//! drop, which also kills what still runs in them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use serde_json::Value;
use sticky_test_support::{
    log_tail, log_to, read_text, require_program_from, require_root, service_values, temp_dir,
    ChildProcess, Net, TestCa, POLL,
};

/// The binary under test: it stands in for `INSTALLED`.
const STICKY: &str = env!("CARGO_BIN_EXE_sticky");
/// Where the units say the binary is.
const INSTALLED: &str = "/usr/local/bin/sticky";
/// Where the guide puts the cluster file and the certificate.
const ETC: &str = "/etc/sticky";
/// The shop's name in the guide.
const SHOP: &str = "shop.example.com";
/// What the example file has where `sticky init`'s values go.
const PLACEHOLDER: &str = "\"from sticky init\"";
/// The client machine of the guide's layout (Prometheus; here also curl).
const CLIENT: &str = "mon";
/// How long the cluster may take to come up, and a session to answer
/// again after its machine died.
const DEADLINE: Duration = Duration::from_secs(25);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced blocks of `doc` in language `lang`.
fn blocks<'a>(doc: &'a str, lang: &str) -> Vec<&'a str> {
    let fence = format!("```{lang}\n");
    doc.split(fence.as_str())
        .skip(1)
        .map(|b| b.split("```").next().unwrap())
        .collect()
}

#[test]
fn the_guide_quotes_the_example_cluster_file_verbatim() {
    let doc = read("docs/deploy.md");
    let example = read("deploy/cluster.example.toml");
    let quoted: Vec<&str> = blocks(&doc, "toml")
        .into_iter()
        .filter(|b| b.contains("[[web]]"))
        .collect();
    assert_eq!(quoted.len(), 1, "docs/deploy.md quotes one cluster file");
    assert!(
        quoted[0] == example,
        "docs/deploy.md must quote deploy/cluster.example.toml verbatim:\n\
         --- the guide\n{}\n--- the file\n{example}",
        quoted[0]
    );
    assert!(
        doc.contains("install -m 0600 deploy/cluster.example.toml cluster.toml"),
        "the guide starts from the example file"
    );
}

/// The machines of the guide's layout table: name and address.
fn layout(doc: &str) -> BTreeMap<String, String> {
    let section = doc
        .split("## The layout")
        .nth(1)
        .and_then(|s| s.split("\n## ").next())
        .expect("docs/deploy.md has \"## The layout\"");
    let mut out = BTreeMap::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        let name = cells[1].trim_matches('`').to_owned();
        let addr = cells[2]
            .split('`')
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_owned();
        out.insert(name, addr);
    }
    out
}

/// One process of the cluster, started as its unit would start it.
struct Service {
    unit: String,
    machine: String,
    child: ChildProcess,
    log: PathBuf,
}

/// What `%i` of `template` (`sticky-store@.service`) runs on `machine`,
/// started there: the unit's `ExecStart=` with `/etc/sticky` at `etc`,
/// `StateDirectory=` under `state`, its `Environment=`.
fn start_unit(
    net: &Net,
    template: &str,
    instance: &str,
    machine: &str,
    etc: &Path,
    state: &Path,
) -> Service {
    let unit = read(&format!("deploy/systemd/{template}"));
    let exec = service_values(&unit, "ExecStart");
    assert_eq!(exec.len(), 1, "{template}: one ExecStart=");
    let mut env: Vec<(String, String)> = Vec::new();
    for value in service_values(&unit, "Environment") {
        for pair in value.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("Environment=KEY=VALUE");
            env.push((k.to_owned(), v.to_owned()));
        }
    }
    for dir in service_values(&unit, "StateDirectory") {
        let path = state.join(dir.replace("%i", instance));
        std::fs::create_dir_all(&path).unwrap();
        env.push(("STATE_DIRECTORY".into(), path.to_str().unwrap().to_owned()));
    }
    let line = exec[0].replace("%i", instance);
    assert!(
        !line.contains(['"', '\'', '\\']),
        "{template}: ExecStart= without quoting (this test splits on spaces)"
    );
    let mut words = line.split_whitespace().map(|w| {
        let mut w = w.replace(ETC, etc.to_str().unwrap());
        for (k, v) in &env {
            w = w.replace(&format!("${{{k}}}"), v);
        }
        assert!(
            !w.contains('$'),
            "{template}: {w} names a variable this test does not set"
        );
        w
    });
    assert_eq!(words.next().as_deref(), Some(INSTALLED), "{template}");
    let mut cmd = net.host(machine).unwrap().command(STICKY);
    cmd.args(words);
    // systemd starts a service with a clean environment.
    cmd.env_clear().env(
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    );
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let name = template.replace("@.", &format!("@{instance}."));
    let log = log_to(&mut cmd, &format!("deploy3-{instance}"));
    let child = ChildProcess::spawn(&mut cmd, &name);
    Service {
        unit: name,
        machine: machine.to_owned(),
        child,
        log,
    }
}

fn shown(out: &Output) -> String {
    format!(
        "{}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The processes' logs (tails), for a failure message.
fn logs(services: &[Service]) -> String {
    services
        .iter()
        .map(|s| format!("--- {} on {}\n{}", s.unit, s.machine, log_tail(&s.log, 15)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// One answer of curl: status, HTTP version and body.
#[derive(Debug)]
struct Answer {
    status: u16,
    version: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {self:?}"))
    }
}

/// curl run on the client machine, with the test authority and the
/// shop's name resolved to app1 (there is no DNS here).
struct Curl<'a> {
    net: &'a Net,
    ca: PathBuf,
    shop: String,
}

impl Curl<'_> {
    fn command(&self) -> Command {
        let mut c = self.net.host(CLIENT).unwrap().command("curl");
        c.args(["--silent", "--show-error", "--max-time", "10"])
            .arg("--cacert")
            .arg(&self.ca)
            .args(["--resolve", &format!("{SHOP}:443:{}", self.shop)])
            .args(["--resolve", &format!("{SHOP}:80:{}", self.shop)]);
        c
    }

    /// A request to the shop over HTTPS and HTTP/2 with the cookie jar
    /// `jar`, as the guide's step 8 does; `None` if curl could not connect
    /// or timed out.
    fn shop(&self, jar: &Path, method: &str, path: &str, body: Option<&str>) -> Option<Answer> {
        let mut c = self.command();
        c.args(["--http2", "-X", method])
            .arg("-c")
            .arg(jar)
            .arg("-b")
            .arg(jar);
        if let Some(b) = body {
            c.args(["-H", "content-type: application/json", "--data", b]);
        }
        c.args(["--write-out", "\n%{http_version} %{http_code}"])
            .arg(format!("https://{SHOP}{path}"));
        let out = c.output().expect("run curl");
        if !out.status.success() {
            return None;
        }
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, last) = text.rsplit_once('\n').expect("curl's --write-out line");
        let (version, status) = last.split_once(' ').unwrap();
        Some(Answer {
            status: status.parse().unwrap(),
            version: version.to_owned(),
            body: body.to_owned(),
        })
    }
}

/// A client: its cookie jar and what its session must hold.
struct User {
    jar: PathBuf,
    counter: u64,
    cart: Vec<String>,
    server: String,
}

/// Asks until the shop answers 200 (a session whose server died answers
/// once another took it over), at most [`DEADLINE`]; GETs only, so that a
/// retry changes nothing.
fn get_until_ok(curl: &Curl<'_>, jar: &Path, path: &str, services: &[Service]) -> Answer {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < DEADLINE {
        match curl.shop(jar, "GET", path, None) {
            Some(a) if a.status == 200 => return a,
            other => last = Some(other),
        }
        std::thread::sleep(POLL * 10);
    }
    panic!(
        "GET {path} never answered 200 within {DEADLINE:?}; last: {last:?}\n{}",
        logs(services)
    );
}

/// A request that must answer 200 over HTTP/2 at once.
fn must(curl: &Curl<'_>, jar: &Path, method: &str, path: &str, body: Option<&str>) -> Value {
    let a = curl
        .shop(jar, method, path, body)
        .unwrap_or_else(|| panic!("{method} {path}: curl failed"));
    assert_eq!(a.status, 200, "{method} {path}: {a:?}");
    assert_eq!(a.version, "2", "{method} {path} over HTTP/2: {a:?}");
    a.json()
}

#[test]
fn the_three_machine_deployment_keeps_every_session_when_a_machine_dies() {
    if !require_root("the three-machine deployment (network namespaces)")
        || !require_program_from("ip", "iproute2")
        || !require_program_from("curl", "curl")
    {
        return;
    }
    let doc = read("docs/deploy.md");
    let dir = temp_dir("deploy3");
    let etc = dir.join("etc/sticky");
    let state = dir.join("var/lib");
    std::fs::create_dir_all(&etc).unwrap();

    // Step 2: `sticky init`, then the example file with its values.
    let init_file = dir.join("new.toml");
    let out = Command::new(STICKY)
        .arg("init")
        .arg(&init_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "sticky init: {}", shown(&out));
    let init = std::fs::read_to_string(&init_file).unwrap();
    let value_of = |key: &str| -> String {
        let line = init
            .lines()
            .find(|l| l.starts_with(&format!("{key} = \"")))
            .unwrap_or_else(|| panic!("sticky init writes {key}"));
        line.split('"').nth(1).unwrap().to_owned()
    };
    let (secret, password) = (value_of("secret"), value_of("store_password"));
    let mut filled = String::new();
    for line in read("deploy/cluster.example.toml").lines() {
        let value = if line.starts_with("secret ") {
            &secret
        } else {
            &password
        };
        filled.push_str(&line.replace(PLACEHOLDER, &format!("\"{value}\"")));
        filled.push('\n');
    }
    assert!(!filled.contains(PLACEHOLDER));
    assert_eq!(
        filled.matches(&password).count(),
        4,
        "store_password and three requirepass"
    );
    // `/etc/sticky` is a temporary directory here.
    let filled = filled.replace(ETC, etc.to_str().unwrap());
    let cluster_path = etc.join("cluster.toml");
    std::fs::write(&cluster_path, &filled).unwrap();
    let cluster = sticky_config::ClusterFile::parse(&filled, &cluster_path).unwrap();

    // Step 4: the certificate for the shop, where the file says.
    let director = cluster.director.as_ref().expect("a [director]");
    let (cert, key) = (
        director.tls_cert.clone().expect("tls_cert"),
        director.tls_key.clone().expect("tls_key"),
    );
    std::fs::create_dir_all(cert.parent().unwrap()).unwrap();
    let ca = TestCa::new("deploy3-ca");
    ca.issue_for_into(SHOP, &[SHOP], &cert, &key);
    let out = Command::new(STICKY)
        .arg("check")
        .arg(&cluster_path)
        .output()
        .unwrap();
    assert!(out.status.success(), "sticky check: {}", shown(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("ok (3 web servers, 3 stores, 1 director, replicas 2)"),
        "the guide's line: {}",
        shown(&out)
    );

    // The machines, with the guide's addresses.
    let machines = layout(&doc);
    assert_eq!(
        machines.keys().collect::<Vec<_>>(),
        ["app1", "app2", "app3", "mon"],
        "the guide's layout"
    );
    let names: Vec<&str> = machines.keys().map(String::as_str).collect();
    let mut net = Net::with_prefix("stkdep", &names).expect("create the namespaces");
    for (name, addr) in &machines {
        net.add_addr(name, addr.parse().unwrap(), 24)
            .unwrap_or_else(|e| panic!("{name} at {addr}: {e}"));
    }
    let machine_of = |ip: std::net::IpAddr| -> String {
        machines
            .iter()
            .find(|(_, a)| **a == ip.to_string())
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| panic!("{ip} is no machine of the layout"))
    };

    // Steps 5 and 7: each process as its unit runs it, stores first.
    let mut services = Vec::new();
    let store_unit = |s: &sticky_config::StoreEntry| {
        let m = machine_of(s.listen.ip());
        start_unit(&net, "sticky-store@.service", &s.name, &m, &etc, &state)
    };
    let web_unit = |w: &sticky_config::WebEntry| {
        let m = machine_of(w.listen.ip());
        start_unit(&net, "sticky-web@.service", &w.name, &m, &etc, &state)
    };
    // The guide starts each machine's units by hand, one after the
    // other; `Type=exec` units are "started" once the program runs, so
    // wait, as someone watching `journalctl` would, until the stores
    // listen: a web server that finds no quorum of its stores answers 503
    // until they come and its lease is next renewed.
    services.extend(cluster.store.iter().map(store_unit));
    wait_listening(&mut services, "store listening");
    services.extend(cluster.web.iter().map(web_unit));
    let app1 = machine_of(director.admin.ip());
    assert_eq!(app1, "app1", "the director runs on app1");
    services.push(start_unit(
        &net,
        "sticky-director@.service",
        "director",
        &app1,
        &etc,
        &state,
    ));

    // Step 8: `sticky status` on app1 exits with 0 once all are up.
    let admin = director.admin.to_string();
    let status = || {
        net.host(&app1)
            .unwrap()
            .command(STICKY)
            .args(["status", "--admin", &admin])
            .output()
            .unwrap()
    };
    let all_up = |services: &mut [Service], when: &str| {
        let start = Instant::now();
        loop {
            let out = status();
            if out.status.success() {
                eprintln!("{when}: all up after {:?}", start.elapsed());
                return;
            }
            for s in services.iter_mut() {
                assert!(
                    s.child.is_running(),
                    "{} exited\n{}",
                    s.unit,
                    log_tail(&s.log, 30)
                );
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{when}: sticky status never exited with 0: {}\n{}",
                shown(&out),
                logs(services)
            );
            std::thread::sleep(POLL * 10);
        }
    };
    all_up(&mut services, "started");

    let curl = Curl {
        net: &net,
        ca: ca.ca_file().to_owned(),
        shop: machines[&app1].clone(),
    };
    // Port 80 redirects to HTTPS.
    let out = curl
        .command()
        .args(["--head", &format!("http://{SHOP}/")])
        .output()
        .unwrap();
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    assert!(out.status.success(), "{}", shown(&out));
    assert!(head.starts_with("http/1.1 301"), "{head}");
    assert!(
        head.contains(&format!("location: https://{SHOP}/")),
        "{head}"
    );
    // The director's metrics, on its admin address.
    let metrics = |addr: &str| -> String {
        let out = curl
            .command()
            .arg(format!("http://{addr}/metrics"))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(metrics(&admin).contains("sticky_director_requests_total"));

    let jars = dir.join("jars");
    std::fs::create_dir_all(&jars).unwrap();
    let mut users: Vec<User> = Vec::new();
    new_users(&curl, &jars, &mut users, 6);
    let on_app2 = users.iter().filter(|u| u.server == "ws2").count();
    eprintln!("{} sessions, {on_app2} on ws2", users.len());

    // app2 dies: every process in its namespace, with SIGKILL.
    let ns2 = net.host("app2").unwrap().netns().to_owned();
    let pids = Command::new("ip")
        .args(["netns", "pids", &ns2])
        .output()
        .unwrap();
    let pids: Vec<String> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert_eq!(pids.len(), 2, "app2 runs ws2 and s2: {pids:?}");
    let out = Command::new("kill")
        .arg("-KILL")
        .args(&pids)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", shown(&out));
    for s in services.iter_mut().filter(|s| s.machine == "app2") {
        assert!(
            s.child.wait_exit(DEADLINE).is_some(),
            "{} survived SIGKILL",
            s.unit
        );
    }
    every_session_goes_on(&curl, &mut users, &services, "app2 killed");
    // `sticky status` says not every process is up.
    let out = status();
    assert_eq!(out.status.code(), Some(3), "{}", shown(&out));

    // app2 comes back, as `Restart=on-failure` (or `systemctl start`)
    // starts its units again: the store first.
    let mut old_logs: Vec<PathBuf> = services
        .iter()
        .filter(|s| s.machine == "app2")
        .map(|s| s.log.clone())
        .collect();
    services.retain(|s| s.machine != "app2");
    services.extend(
        cluster
            .store
            .iter()
            .filter(|s| machine_of(s.listen.ip()) == "app2")
            .map(store_unit),
    );
    wait_listening(&mut services, "store listening");
    services.extend(
        cluster
            .web
            .iter()
            .filter(|w| machine_of(w.listen.ip()) == "app2")
            .map(web_unit),
    );
    all_up(&mut services, "app2 restarted");
    // "Upgrades and restarts": the web servers have re-copied what the
    // restarted store held once `sticky_recopy_pending` is 0 and
    // `sticky_stores_live` 3 on every web server.
    let start = Instant::now();
    for w in &cluster.web {
        let addr = w.metrics.expect("[[web]] metrics").to_string();
        loop {
            let text = metrics(&addr);
            if gauge(&text, "sticky_recopy_pending") == Some(0.0)
                && gauge(&text, "sticky_stores_live") == Some(3.0)
            {
                break;
            }
            assert!(
                start.elapsed() < DEADLINE,
                "{}: re-copy never done:\n{}\n{}",
                w.name,
                text.lines()
                    .filter(|l| l.starts_with("sticky_recopy") || l.starts_with("sticky_stores"))
                    .collect::<Vec<_>>()
                    .join("\n"),
                logs(&services)
            );
            std::thread::sleep(POLL * 10);
        }
    }

    // New clients go to the servers again, ws2 among them.
    let more = users.len() + 4;
    new_users(&curl, &jars, &mut users, more);
    every_session_goes_on(&curl, &mut users, &services, "app2 back");

    // app2 cut off the network (its processes run on, unreachable: a dead
    // switch port, no connection refused): every session goes on.
    net.isolate("app2").unwrap();
    every_session_goes_on(&curl, &mut users, &services, "app2 cut off");
    assert!(net.dropped_to("app2").unwrap() > 0, "the cut bit");
    // And once it is back, nothing goes back in time.
    net.heal_all().unwrap();
    all_up(&mut services, "app2 reconnected");
    every_session_goes_on(&curl, &mut users, &services, "app2 reconnected");

    old_logs.extend(services.iter().map(|s| s.log.clone()));
    drop(services);
    drop(net);
    for path in old_logs {
        let _ = std::fs::remove_file(path);
    }
    let _ = std::fs::remove_dir_all(ca.dir());
    let _ = std::fs::remove_dir_all(&dir);
}

/// Waits until the log of every store service says `line` (the store
/// listens).
fn wait_listening(services: &mut [Service], line: &str) {
    let start = Instant::now();
    for s in services
        .iter_mut()
        .filter(|s| s.unit.starts_with("sticky-store@"))
    {
        while !read_text(&s.log).contains(line) {
            assert!(
                s.child.is_running(),
                "{} exited\n{}",
                s.unit,
                log_tail(&s.log, 30)
            );
            assert!(
                start.elapsed() < DEADLINE,
                "{}: no {line:?} in its log\n{}",
                s.unit,
                log_tail(&s.log, 30)
            );
            std::thread::sleep(POLL);
        }
    }
}

/// The value of the metric `name` (without labels) in a Prometheus text.
fn gauge(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// New clients until there are at least `at_least` and some have their
/// session on ws1 (app1) and some on ws2 (app2), each counting to 2 and
/// putting an item in its cart, over TLS and HTTP/2.
fn new_users(curl: &Curl<'_>, jars: &Path, users: &mut Vec<User>, at_least: usize) {
    let before = users.len();
    let fresh = |users: &[User], server: &str| users[before..].iter().any(|u| u.server == server);
    while users.len() < at_least || !fresh(users, "ws1") || !fresh(users, "ws2") {
        assert!(
            users.len() < before + 30,
            "the director never spread the new sessions over ws1 and ws2"
        );
        let jar = jars.join(format!("u{}", users.len()));
        let first = must(curl, &jar, "POST", "/api/counter", None);
        assert_eq!(first["value"], 1, "{first}");
        assert_eq!(first["source"], "new", "{first}");
        let second = must(curl, &jar, "POST", "/api/counter", None);
        assert_eq!(second["value"], 2, "{second}");
        assert_eq!(second["source"], "cache", "{second}");
        assert_eq!(second["server"], first["server"], "sticky: {second}");
        let item = format!("item-{}", users.len());
        let cart = must(
            curl,
            &jar,
            "POST",
            "/api/cart/items",
            Some(&format!(r#"{{"item":"{item}"}}"#)),
        );
        assert_eq!(cart["items"], serde_json::json!([item]), "{cart}");
        users.push(User {
            jar,
            counter: 2,
            cart: vec![item],
            server: first["server"].as_str().unwrap().to_owned(),
        });
    }
}

/// Every session answers (at last: its server may have to be found dead
/// and its sessions taken over) with its counter and cart, then counts on
/// and stays where it is, over TLS and HTTP/2. `when` names the step.
fn every_session_goes_on(curl: &Curl<'_>, users: &mut [User], services: &[Service], when: &str) {
    let start = Instant::now();
    for u in users.iter_mut() {
        let a = get_until_ok(curl, &u.jar, "/api/counter", services);
        assert_eq!(a.version, "2", "{when}: {a:?}");
        let v = a.json();
        assert_eq!(
            v["value"], u.counter,
            "{when}: the counter survived (was on {}): {v}",
            u.server
        );
        let server = v["server"].as_str().unwrap().to_owned();
        if server != u.server {
            assert_eq!(v["source"], "store", "{when}: taken over from a store: {v}");
        }
        let next = must(curl, &u.jar, "POST", "/api/counter", None);
        u.counter += 1;
        assert_eq!(next["value"], u.counter, "{when}: counts on: {next}");
        assert_eq!(next["server"], server.as_str(), "{when}: stays: {next}");
        let cart = must(curl, &u.jar, "GET", "/api/cart", None);
        assert_eq!(
            cart["items"],
            serde_json::json!(u.cart),
            "{when}: the cart survived: {cart}"
        );
        u.server = server;
    }
    eprintln!(
        "{when}: {} sessions went on in {:?}",
        users.len(),
        start.elapsed()
    );
}
