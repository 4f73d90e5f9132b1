//! A real browser against `sticky up`: headless Chromium, driven through
//! chromedriver (WebDriver, with fantoccini), opens the shop through the
//! director and adds items by clicking; the test kills the web server the
//! page names with `kill -9`; the browser reloads and shows the same cart,
//! now from another server which found the session in a store. Then it
//! opens the dashboard, checks that it renders the cluster, saves a
//! screenshot as `target/test-artifacts/dashboard.png` (and the shop's as
//! `shop-after-failover.png`), and presses a drain button (which must send
//! the admin token the page embeds). Then the dashboard must tell the
//! story (#18 item 6): the event log shows the killed server down, its
//! clients' failover and the standby's takeover, with times; the charts
//! of the last 15 minutes have points (`dashboard-charts.png`,
//! `dashboard-events.png`); actions that do not apply are disabled; kill
//! asks for a confirmation (dismissed, nothing dies; accepted, the process
//! dies).
//!
//! The same tour runs with the Python shop behind sidecar web servers
//! (`sticky up --app python`).
//!
//! Needs Debian's `chromium` and `chromium-driver` (and python3 with Flask
//! for the second tour): skipped loudly when they are missing, except in
//! CI, where it must run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};
use sticky_test_support::{
    find_program, free_port, log_to, read_text, require_program_from, signal, temp_path,
    wait_until, ChildProcess, NotReady, Sticky, UpProcess, DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// How long the browser may take to show what a step expects.
const BROWSER_DEADLINE: Duration = Duration::from_secs(30);
/// How long chromedriver may take to start.
const DRIVER_DEADLINE: Duration = Duration::from_secs(30);

/// Where test artifacts go: `target/test-artifacts`.
fn artifacts() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let dir = tmp.parent().unwrap_or(tmp).join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// A chromedriver child process on a free port. Killed on drop.
struct Driver {
    proc: ChildProcess,
    port: u16,
    log: PathBuf,
}

impl Driver {
    fn start() -> Driver {
        for _ in 0..5 {
            let port = free_port();
            let mut cmd = Command::new("chromedriver");
            // Its own process group, so that dropping the driver also ends
            // the Chromium it started (which a killed chromedriver would
            // leave running, e.g. after a failed assertion).
            cmd.arg(format!("--port={port}")).process_group(0);
            let log = log_to(&mut cmd, "chromedriver");
            let mut d = Driver {
                proc: ChildProcess::spawn(&mut cmd, "chromedriver"),
                port,
                log,
            };
            let (addr, log) = (d.addr(), d.log.clone());
            // (chromedriver keeps connections open whatever the request
            // says, so its log and its port tell when it is up.)
            let ready = || {
                (read_text(&log).contains("started successfully")
                    && std::net::TcpStream::connect(addr).is_ok())
                .then_some(())
            };
            match d
                .proc
                .wait_for(DRIVER_DEADLINE, Duration::from_millis(50), ready)
            {
                Ok(()) => return d,
                Err(NotReady::Exited(_)) => eprintln!(
                    "chromedriver exited (port {port} taken?):\n{}",
                    d.log_text()
                ),
                Err(NotReady::TimedOut) => panic!(
                    "chromedriver not ready within {DRIVER_DEADLINE:?}:\n{}",
                    d.log_text()
                ),
            }
        }
        panic!("chromedriver could not start");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn log_text(&self) -> String {
        read_text(&self.log)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and every browser process under it.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.proc.pid())])
            .status();
        self.proc.kill_quietly();
        if std::thread::panicking() {
            eprintln!("--- chromedriver log ---\n{}", self.log_text());
        } else {
            let _ = std::fs::remove_file(&self.log);
        }
    }
}

/// A headless Chromium session with a fresh profile.
async fn browser(driver: &Driver, profile: &Path) -> Client {
    let chromium = find_program("chromium").expect("chromium on PATH");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--no-proxy-server",
                "--window-size=1400,1400",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&format!("http://{}", driver.addr()))
        .await
        .unwrap_or_else(|e| panic!("cannot start Chromium through chromedriver: {e}"))
}

/// The text of the element with id `id` ("" if it is not there yet).
async fn text(c: &Client, id: &str) -> String {
    match c.find(Locator::Id(id)).await {
        Ok(e) => e.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// Waits until element `id`'s text satisfies `ok`; its text then.
async fn wait_text(c: &Client, id: &str, what: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    loop {
        let t = text(c, id).await;
        if ok(&t) {
            return t;
        }
        if start.elapsed() > BROWSER_DEADLINE {
            let error = text(c, "error").await;
            panic!(
                "#{id} is {t:?}, not {what}, after {BROWSER_DEADLINE:?} (page error: {error:?})"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The cart's items as the page lists them (each `<li>` is "item remove").
async fn cart_items(c: &Client) -> Vec<String> {
    let mut items = Vec::new();
    for li in c.find_all(Locator::Css("#items li")).await.unwrap() {
        let t = li.text().await.unwrap();
        items.push(t.trim_end_matches("remove").trim().to_owned());
    }
    items
}

async fn screenshot(c: &Client, name: &str) -> PathBuf {
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    let path = artifacts().join(name);
    std::fs::write(&path, png).expect("write the screenshot");
    eprintln!("screenshot: {}", path.display());
    path
}

#[test]
fn browser_keeps_its_cart_when_its_server_is_killed_and_dashboard_renders() {
    if !require_program_from("chromium", "chromium")
        || !require_program_from("chromedriver", "chromium-driver")
    {
        return;
    }
    browser_tour(&[], "", "");
}

/// The same tour with the Python shop behind sidecar web servers
/// (`sticky up --app python`, docs/sidecar.md): the page, the clicks, the
/// failover and the dashboard work unchanged, and the dashboard lists the
/// apps.
#[test]
fn browser_tour_works_the_same_with_the_python_app_behind_sidecars() {
    if !require_program_from("chromium", "chromium")
        || !require_program_from("chromedriver", "chromium-driver")
        || !sticky_test_support::AppKind::Python.available()
    {
        return;
    }
    browser_tour(&["--app", "python"], "ws1-app", "python-");
}

/// Runs `script` in the page; its value.
async fn js(c: &Client, script: &str) -> Value {
    c.execute(script, vec![]).await.unwrap()
}

/// Runs `script` until its value satisfies `ok`; that value.
async fn wait_js(c: &Client, script: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let start = Instant::now();
    loop {
        let v = js(c, script).await;
        if ok(&v) {
            return v;
        }
        assert!(
            start.elapsed() < BROWSER_DEADLINE,
            "the dashboard does not show {what} after {BROWSER_DEADLINE:?}: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The event log's rows: `[kind, about, what happened, time]`.
const EVENTS: &str = "return Array.from(document.querySelectorAll('#events tr'))\
    .map(r => [r.dataset.kind, r.children[2].textContent, r.children[3].textContent,\
    r.children[0].textContent]);";

/// Whether the event log `rows` has an event of `kind` about `subject`.
fn logged(rows: &Value, kind: &str, subject: &str) -> bool {
    rows.as_array()
        .is_some_and(|rows| rows.iter().any(|r| r[0] == kind && r[1] == subject))
}

/// Which of the row `name`'s action buttons are disabled: `{action: bool}`.
async fn disabled(c: &Client, name: &str) -> Value {
    let script = format!(
        "const row = document.querySelector('#members tr[data-name=\"{name}\"]');\
         const out = {{}};\
         if (row) for (const b of row.querySelectorAll('button')) out[b.dataset.action] = b.disabled;\
         return out;"
    );
    js(c, &script).await
}

/// Presses the kill button of `name` (from a timer: the confirmation it
/// opens blocks the page's script) and waits for the confirmation; its
/// text.
async fn press_kill(c: &Client, name: &str) -> String {
    let script = format!(
        "const b = document.querySelector('#members tr[data-name=\"{name}\"] button[data-action=kill]');\
         if (b) setTimeout(() => b.click(), 0);\
         return !!b;"
    );
    assert_eq!(
        js(c, &script).await,
        json!(true),
        "a kill button for {name}"
    );
    let start = Instant::now();
    loop {
        if let Ok(text) = c.get_alert_text().await {
            return text;
        }
        assert!(
            start.elapsed() < BROWSER_DEADLINE,
            "kill {name} asked no confirmation"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The dashboard tells the story of the kill -9 of `killed` (#18 item 6):
/// the event log shows the server down, its clients' failover and the
/// standby's takeover, with times; the charts have points; numbers carry
/// thousands separators and epochs are shortened; actions that do not
/// apply are disabled; kill asks for a confirmation (dismissed: nothing
/// is killed; accepted: the process dies). Screenshots:
/// `dashboard-charts.png` and `dashboard-events.png`.
async fn dashboard_story(c: &Client, up: &UpProcess, killed: &str, prefix: &str) {
    let rows = wait_js(
        c,
        EVENTS,
        &format!("{killed} down, its failover and ws4's takeover in the event log"),
        |rows| {
            logged(rows, "server_down", killed)
                && logged(rows, "failover", killed)
                && logged(rows, "takeover", "ws4")
        },
    )
    .await;
    for row in rows.as_array().unwrap() {
        let time = row[3].as_str().unwrap();
        assert!(
            time.chars().filter(char::is_ascii_digit).count() >= 4,
            "every event has its time: {row}"
        );
    }
    // The charts have points (a sample every 5 s since the director
    // started; requests through the shop and the failover among them).
    let points = wait_js(
        c,
        "return Object.fromEntries(Array.from(document.querySelectorAll('#charts figure'))\
         .map(f => [f.id, Number(f.querySelector('svg').dataset.points)]));",
        "charts with points",
        |v| {
            [
                "chart-requests",
                "chart-latency",
                "chart-failovers",
                "chart-takeovers",
                "chart-keys",
            ]
            .iter()
            .all(|id| v[id].as_u64().is_some_and(|n| n >= 2))
        },
    )
    .await;
    // Lines join runs of consecutive samples: a sample missing a value
    // (no request in those 5 s on a loaded machine) leaves a gap, so they
    // may take another sample or two to appear.
    let lines = wait_js(
        c,
        "return document.querySelectorAll('#charts polyline').length;",
        "lines in the charts",
        |v| v.as_u64().is_some_and(|n| n >= 5),
    )
    .await;
    eprintln!("charts: {lines} lines, points {points}");
    // Thousands separators (in the browser's locale) and the epoch's last
    // six digits, the whole in the tooltip.
    let big = js(c, "return num(1234567);").await;
    let big = big.as_str().unwrap();
    let groups: Vec<&str> = big.split(|ch: char| !ch.is_ascii_digit()).collect();
    assert_eq!(groups, ["1", "234", "567"], "thousands separators: {big:?}");
    let epoch = js(
        c,
        "const td = document.querySelector('#members tr[data-name=\"ws4\"] td.epoch');\
         return td ? [td.textContent, td.title] : null;",
    )
    .await;
    let (short, title) = (epoch[0].as_str().unwrap(), epoch[1].as_str().unwrap());
    let full = title.strip_prefix("epoch ").unwrap();
    assert!(
        full.len() > 6 && full.bytes().all(|b| b.is_ascii_digit()),
        "{title}"
    );
    assert_eq!(short, format!("…{}", &full[full.len() - 6..]), "{epoch}");

    js(c, "window.scrollTo(0, 0); return true;").await;
    screenshot(c, &format!("{prefix}dashboard-charts.png")).await;
    js(
        c,
        "document.getElementById('events-title').scrollIntoView(); return true;",
    )
    .await;
    screenshot(c, &format!("{prefix}dashboard-events.png")).await;

    // Actions that do not apply are disabled.
    let dead = disabled(c, killed).await;
    assert_eq!(dead["kill"], true, "kill on a dead process: {dead}");
    assert_eq!(dead["pause"], true, "{dead}");
    assert_eq!(dead["restart"], false, "{dead}");
    let store = disabled(c, "s1").await;
    assert_eq!(store["drain"], true, "drain on a store: {store}");
    assert_eq!(store["kill"], false, "{store}");
    let victim = ["ws2", "ws3", "ws1"]
        .into_iter()
        .find(|n| *n != killed)
        .unwrap();
    let running = disabled(c, victim).await;
    assert_eq!(
        running["resume"], true,
        "resume on a running process: {running}"
    );
    assert_eq!(
        running["enable"], true,
        "enable on an enabled server: {running}"
    );
    assert_eq!(running["drain"], false, "{running}");
    assert_eq!(running["kill"], false, "{running}");

    // Kill asks first: dismissed, nothing is killed.
    let question = press_kill(c, victim).await;
    assert!(question.contains(victim), "{question}");
    c.dismiss_alert().await.unwrap();
    assert_eq!(up.status_of(victim)["process"], "running");
    // Accepted, the process dies, and the log says so.
    press_kill(c, victim).await;
    c.accept_alert().await.unwrap();
    wait_until(DEADLINE, &format!("{victim} is reported exited"), || {
        up.status_of(victim)["process"] == "exited"
    });
    let rows = wait_js(c, EVENTS, &format!("the kill of {victim}"), |rows| {
        logged(rows, "process", victim)
    })
    .await;
    let kills = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r[0] == "process" && r[1] == victim)
        .count();
    assert_eq!(kills, 1, "the dismissed kill sent nothing: {rows}");
}

/// Opens the shop of `sticky up EXTRA_ARGS` in Chromium, fills a cart,
/// kills its server, checks the cart after a reload, then the dashboard
/// (which must also show `also_listed`, unless empty); screenshots are
/// named with `prefix`.
fn browser_tour(extra_args: &[&str], also_listed: &str, prefix: &str) {
    let up = UpProcess::start(STICKY, extra_args);
    up.wait_all_up();
    let driver = Driver::start();
    let profile = temp_path("chromium-profile", "d");
    std::fs::create_dir_all(&profile).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let c = rt.block_on(browser(&driver, &profile));
    let shop = format!("http://{}/", up.shop());
    let admin = format!("http://{}/", up.admin());

    // Open the shop and add three items by clicking.
    let server = rt.block_on(async {
        c.goto(&shop).await.unwrap();
        wait_text(&c, "source", "new (an empty cart)", |t| {
            t == "new" || t == "cache"
        })
        .await;
        for (n, product) in ["apple", "bread", "cheese"].iter().enumerate() {
            c.find(Locator::Id(&format!("add-{product}")))
                .await
                .unwrap()
                .click()
                .await
                .unwrap();
            let want = (n + 1).to_string();
            wait_text(&c, "count", &want, |t| t == want).await;
        }
        assert_eq!(cart_items(&c).await, ["apple", "bread", "cheese"]);
        assert_eq!(text(&c, "source").await, "cache");
        text(&c, "server").await
    });
    assert!(
        server.starts_with("ws"),
        "the page names its server: {server:?}"
    );

    // Kill that server.
    let pid = up.pid_of(&server);
    signal(pid, "KILL");
    wait_until(DEADLINE, &format!("{server} is reported exited"), || {
        up.status_of(&server)["process"] == "exited"
    });

    // Reload: the same cart, from another server, which found it in a store.
    rt.block_on(async {
        c.refresh().await.unwrap();
        let source = wait_text(&c, "source", "store", |t| t != "…" && !t.is_empty()).await;
        let now = text(&c, "server").await;
        assert_ne!(now, server, "another server serves the page");
        assert_eq!(now, "ws4", "the standby takes the killed server's clients");
        assert_eq!(source, "store", "the session came from a store");
        assert_eq!(text(&c, "count").await, "3");
        assert_eq!(cart_items(&c).await, ["apple", "bread", "cheese"]);
        screenshot(&c, &format!("{prefix}shop-after-failover.png")).await;
        // The next change is served from the new server's cache.
        c.find(Locator::Id("add-dates"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        wait_text(&c, "count", "4", |t| t == "4").await;
        assert_eq!(text(&c, "source").await, "cache");
    });

    // The dashboard renders the cluster: every web server and store, the
    // killed server down, and the processes sticky up runs.
    rt.block_on(async {
        c.goto(&admin).await.unwrap();
        let start = Instant::now();
        loop {
            let page = c
                .find(Locator::Css("main"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            let rendered = ["ws1", "ws2", "ws3", "ws4", "s1", "s2", "s3", "director"]
                .iter()
                .all(|n| page.contains(n))
                && page.contains(also_listed)
                && page.contains("down")
                && page.contains("restart");
            // The stores' keys column shows the cart's copies (the stores
            // are looked at every second). Read in one script: the page
            // rebuilds the table every second, so cells found one call
            // earlier may be gone (a stale element) by the next.
            let cells = c
                .execute(
                    "return Array.from(document.querySelectorAll('#members tr.store td.keys'))\
                     .map(td => td.dataset.keys);",
                    vec![],
                )
                .await
                .unwrap();
            let keys: u64 = cells
                .as_array()
                .map(|cells| {
                    cells
                        .iter()
                        .filter_map(|v| v.as_str()?.trim().parse::<u64>().ok())
                        .sum()
                })
                .unwrap_or(0);
            // The p99 tile shows the last second's response times: one
            // request through the director each round keeps it filled.
            let _ = sticky_test_support::http_request(up.shop(), "GET", "/", &[], None);
            let p99 = c
                .execute(
                    "const t = Array.from(document.querySelectorAll('#totals .tile'))\
                     .find(t => t.querySelector('.k').textContent === 'p99 response');\
                     return t ? t.querySelector('.v').textContent : '';",
                    vec![],
                )
                .await
                .unwrap();
            let p99 = p99.as_str().unwrap_or_default().to_owned();
            let timed = ["µs", "ms", " s"].iter().any(|unit| {
                p99.strip_suffix(unit)
                    .is_some_and(|n| n.trim().parse::<f64>().is_ok_and(|n| n > 0.0))
            });
            if rendered && keys > 0 && timed {
                break;
            }
            assert!(
                start.elapsed() < BROWSER_DEADLINE,
                "the dashboard does not show the cluster (p99 tile {p99:?}):\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let png = screenshot(&c, &format!("{prefix}dashboard.png")).await;
        assert!(
            std::fs::metadata(png).unwrap().len() > 10_000,
            "a real picture"
        );
        // Its buttons still work: they send the admin token the page
        // embeds (state changes need it, #15 item 5).
        let clicked = c
            .execute(
                "const row = Array.from(document.querySelectorAll('tr'))\
                 .find(r => r.firstChild && r.firstChild.textContent.startsWith('ws4'));\
                 const b = row && Array.from(row.querySelectorAll('button'))\
                 .find(b => b.textContent === 'drain');\
                 if (b) b.click();\
                 return !!b;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(clicked, json!(true), "a drain button for ws4");
        let start = Instant::now();
        loop {
            let cluster =
                sticky_test_support::http_request(up.admin(), "GET", "/api/cluster", &[], None)
                    .unwrap()
                    .json_ok();
            let ws4 = cluster["servers"]
                .as_array()
                .and_then(|s| s.iter().find(|s| s["name"] == "ws4"))
                .cloned()
                .unwrap_or_default();
            if ws4["admin"] == "draining" {
                break;
            }
            assert!(
                start.elapsed() < BROWSER_DEADLINE,
                "the dashboard's drain button did not drain ws4: {ws4}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        dashboard_story(&c, &up, &server, prefix).await;
        c.close().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&profile);
}
