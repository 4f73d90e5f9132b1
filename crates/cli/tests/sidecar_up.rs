//! `sticky up --app python|node`: the whole cluster with the example app
//! behind each sidecar web server, real processes. Its table and `sticky
//! status` list every sidecar and app with its PID; the shop works through
//! the director unchanged (page, carts); a cart survives `kill -9` of the
//! sidecar serving it; Ctrl-C stops the apps too.
//!
//! Skipped loudly when python3/Flask or node/Express is missing, except
//! when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

use sticky_test_support::{
    http_request, pid_alive, signal, wait_until, Answer, AppKind, CookieJar, Sticky, UpProcess,
    DEADLINE, POLL, UP_STOP_DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

fn shop_with_app(kind: AppKind) {
    let mut up = UpProcess::start(
        STICKY,
        &["--app", kind.name(), "--web", "2", "--standby", "1"],
    );
    let table = up.table();
    for web in ["ws1", "ws2", "ws3"] {
        let app = format!("{web}-app");
        let row = |name: &str| {
            table
                .iter()
                .find(|r| r.0 == name)
                .unwrap_or_else(|| panic!("no {name} in the table: {table:?}"))
                .clone()
        };
        let (_, role, _, pid) = row(&app);
        assert_eq!(role, "app");
        assert!(pid_alive(pid), "{app} runs (pid {pid})");
        assert_eq!(up.status_of(&app)["pid"], pid, "sticky status lists {app}");
        let (_, role, _, pid) = row(web);
        assert!(role == "web" || role == "standby", "{web}: {role}");
        assert!(pid_alive(pid));
        // The sidecar serves its own health like any web server.
        assert_eq!(up.status_of(web)["pid"], pid);
    }
    up.wait_all_up();

    // The page, from the app through its sidecar and the director.
    let page = http_request(up.shop(), "GET", "/", &[], None).unwrap();
    assert_eq!(page.status, 200, "{page:?}");
    assert!(page.text().contains("Sticky shop"), "{}", page.text());

    // A cart, then `kill -9` of the sidecar serving it.
    let mut jar = CookieJar::new();
    let mut server = String::new();
    for (k, item) in ["apple", "bread", "cheese"].iter().enumerate() {
        let a = jar.add_item(up.shop(), item);
        assert_eq!(a.items().len(), k + 1, "{:?}", a.json);
        assert_eq!(
            a.source,
            if k == 0 { "new" } else { "cache" },
            "{:?}",
            a.json
        );
        server = a.server;
    }
    let pid = up.pid_of(&server);
    signal(pid, "KILL");
    wait_until(DEADLINE, "sticky status shows the sidecar exited", || {
        up.status_of(&server)["process"] == "exited"
    });
    let start = Instant::now();
    let a = loop {
        match jar.try_request(up.shop(), "GET", "/api/cart", None) {
            Ok(r) if r.status == 200 => break Answer::from(&r),
            Ok(r) => eprintln!("GET /api/cart during the failover: {r:?}"),
            Err(e) => eprintln!("GET /api/cart during the failover: {e}"),
        }
        assert!(start.elapsed() < DEADLINE, "no cart within {DEADLINE:?}");
        std::thread::sleep(POLL);
    };
    assert_eq!(a.items(), ["apple", "bread", "cheese"], "{:?}", a.json);
    assert_ne!(a.server, server);

    // Ctrl-C stops the apps with the rest.
    let apps: Vec<u32> = table.iter().filter(|r| r.1 == "app").map(|r| r.3).collect();
    assert!(up.interrupt().success());
    wait_until(UP_STOP_DEADLINE, "every app exited", || {
        apps.iter().all(|p| !pid_alive(*p))
    });
}

#[test]
fn up_with_the_python_app_behind_each_sidecar() {
    if AppKind::Python.available() {
        shop_with_app(AppKind::Python);
    }
}

#[test]
fn up_with_the_node_app_behind_each_sidecar() {
    if AppKind::Node.available() {
        shop_with_app(AppKind::Node);
    }
}

/// `kill -9` of `sticky up --app`: its apps end too (they watch their
/// parent), as its own children do.
fn a_killed_up_leaves_no_app_behind(kind: AppKind) {
    let up = UpProcess::start(
        STICKY,
        &[
            "--app",
            kind.name(),
            "--web",
            "2",
            "--standby",
            "0",
            "--stores",
            "2",
        ],
    );
    let table = up.table();
    assert_eq!(
        table.iter().filter(|r| r.1 == "app").count(),
        2,
        "{table:?}"
    );
    signal(up.pid(), "KILL");
    wait_until(
        DEADLINE,
        "every process of the killed sticky up exits",
        || table.iter().all(|(_, _, _, pid)| !pid_alive(*pid)),
    );
}

#[test]
fn a_killed_up_leaves_no_python_app_behind() {
    if AppKind::Python.available() {
        a_killed_up_leaves_no_app_behind(AppKind::Python);
    }
}

#[test]
fn a_killed_up_leaves_no_node_app_behind() {
    if AppKind::Node.available() {
        a_killed_up_leaves_no_app_behind(AppKind::Node);
    }
}
