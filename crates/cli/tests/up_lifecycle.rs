//! `sticky up` starts and stops: it prints its table within 60 s, `sticky
//! status` finds the cluster (by its run dir, or with no argument through
//! the pointer `sticky up` leaves in `~/.sticky`), and SIGINT (Ctrl-C)
//! stops every process it started.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use sticky_test_support::{pid_alive, wait_until, Sticky, UpProcess, DEADLINE, UP_DEADLINE};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

#[test]
fn up_prints_its_table_in_time_and_ctrl_c_stops_every_process() {
    let mut up = UpProcess::start(STICKY, &[]);
    eprintln!("sticky up printed its table after {:?}", up.started_in);
    assert!(
        up.started_in < UP_DEADLINE,
        "table after {:?}",
        up.started_in
    );

    // The table: every process, with the roles of the default cluster.
    let table = up.table();
    let roles: BTreeMap<&str, &str> = table
        .iter()
        .map(|(n, r, _, _)| (n.as_str(), r.as_str()))
        .collect();
    let expected = BTreeMap::from([
        ("director", "director"),
        ("ws1", "web"),
        ("ws2", "web"),
        ("ws3", "web"),
        ("ws4", "standby"),
        ("s1", "store"),
        ("s2", "store"),
        ("s3", "store"),
    ]);
    assert_eq!(roles, expected, "{}", up.stdout_text());
    let director = table.iter().find(|r| r.0 == "director").unwrap();
    assert_eq!(director.2, up.shop());
    let out = up.stdout_text();
    assert!(
        out.contains(&format!("shop:       http://{}/", up.shop())),
        "{out}"
    );
    assert!(
        out.contains(&format!("dashboard:  http://{}/", up.admin())),
        "{out}"
    );
    for (_, _, _, pid) in &table {
        assert!(pid_alive(*pid), "pid {pid} runs");
    }

    // `sticky status --json` agrees with the table, and sees everything up.
    up.wait_all_up();

    // The stores `sticky up` starts have a password (issue 15, item 2): a
    // local process, or a web page through the browser, cannot empty them.
    for (name, _, addr, _) in table.iter().filter(|r| r.1 == "store") {
        use std::io::{Read, Write};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        c.write_all(b"FLUSHALL\r\n").unwrap();
        let mut buf = [0u8; 128];
        let n = c.read(&mut buf).unwrap();
        assert!(
            buf[..n].starts_with(b"-NOAUTH"),
            "{name} without a password: {}",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    wait_until(DEADLINE, "sticky status shows every process up", || {
        let s = up.status_json();
        s["processes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["process"] == "running" && p["state"] != "down" && p["state"] != "unknown")
    });
    let status = up.status_json();
    assert_eq!(status["running"], true);
    assert_eq!(status["up_pid"], up.pid());
    let procs = status["processes"].as_array().unwrap();
    assert_eq!(procs.len(), table.len(), "{status:#}");
    for (name, role, addr, pid) in &table {
        let p = procs.iter().find(|p| p["name"] == name.as_str()).unwrap();
        assert_eq!(p["role"], role.as_str(), "{p}");
        assert_eq!(p["addr"], addr.to_string(), "{p}");
        assert_eq!(p["pid"], *pid, "{p}");
        match role.as_str() {
            "store" => {
                assert_eq!(p["state"], "up", "{p}");
                assert!(p["keys"].is_u64() && p["used_memory"].is_u64(), "{p}");
            }
            "web" | "standby" => {
                assert_eq!(p["state"], "up", "{p}");
                assert!(p["epoch"].is_u64() && p["sessions"].is_u64(), "{p}");
            }
            _ => assert_eq!(p["state"], "up", "{p}"),
        }
    }

    // With no argument, `sticky status` finds the latest `sticky up`
    // through ~/.sticky/last-up, and prints a table.
    let out = up.sticky(&["status"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.starts_with("NAME"), "{text}");
    for (name, role, addr, pid) in &table {
        let row = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no row for {name}:\n{text}"));
        let f: Vec<&str> = row.split_whitespace().collect();
        assert_eq!(
            &f[1..5],
            [role.as_str(), &addr.to_string(), &pid.to_string(), "up"],
            "{row}"
        );
    }
    // The director's admin listener alone gives the same servers.
    let admin = up.admin().to_string();
    let out = up.sticky(&["status", "--admin", &admin]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}");
    for name in ["director", "ws1", "ws4", "s1", "s3"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{name} "))),
            "{name} in:\n{text}"
        );
    }

    // Ctrl-C: sticky up exits cleanly and no process it started is left.
    let status = up.interrupt();
    assert!(status.success(), "sticky up exited with {status}");
    for (name, _, _, pid) in &table {
        assert!(
            !pid_alive(*pid),
            "{name} (pid {pid}) still runs after Ctrl-C"
        );
    }
    let err = up.stderr_text();
    assert!(err.contains("stopped."), "{err}");
    assert!(
        !err.contains("killing it"),
        "every process stopped on SIGTERM: {err}"
    );

    // And `sticky status` says so.
    let status = up.status_json();
    assert_eq!(status["running"], false, "{status:#}");
    for p in status["processes"].as_array().unwrap() {
        assert_eq!(p["state"], "stopped", "{p}");
    }
}

#[test]
fn status_without_a_cluster_explains_what_to_do() {
    let home = sticky_test_support::temp_path("sticky-status-home", "d");
    std::fs::create_dir_all(&home).unwrap();
    let out = STICKY
        .command()
        .env("HOME", &home)
        .env_remove("XDG_RUNTIME_DIR")
        .arg("status")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--dir") && err.contains("--admin"), "{err}");
    let _ = std::fs::remove_dir_all(&home);
}

#[test]
fn a_killed_sticky_up_leaves_no_process_behind() {
    let up = UpProcess::start(STICKY, &["--web", "2", "--standby", "0", "--stores", "2"]);
    let table = up.table();
    assert_eq!(table.len(), 5, "{table:?}");
    sticky_test_support::signal(up.pid(), "KILL");
    // Each child notices within about half a second that its parent is
    // gone and stops as on SIGTERM.
    sticky_test_support::wait_until(
        sticky_test_support::DEADLINE,
        "every child of the killed sticky up exits",
        || table.iter().all(|(_, _, _, pid)| !pid_alive(*pid)),
    );
}
