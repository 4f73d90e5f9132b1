//! The `sticky up` supervisor's control API (what the dashboard's kill,
//! pause, resume and restart buttons call), directly with the admin token
//! and through the director's admin listener, which proxies it with the
//! same token (its own admin token, since the cluster has no
//! `admin_token`); and that the supervisor keeps watching the processes it restarted.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use serde_json::Value;
use sticky_test_support::{
    http_request, pid_alive, signal, wait_until, CookieJar, Response, Sticky, UpProcess, DEADLINE,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

fn call(addr: SocketAddr, method: &str, path: &str, token: Option<&str>) -> Response {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = Vec::new();
    if let Some(a) = &auth {
        headers.push(("Authorization", a.as_str()));
    }
    http_request(addr, method, path, &headers, None)
        .unwrap_or_else(|e| panic!("{method} {path} on {addr}: {e}"))
}

/// `POST /api/processes/NAME/ACTION` on the supervisor, with the admin
/// token.
fn post_action(up: &UpProcess, name: &str, action: &str) -> Response {
    call(
        up.supervisor(),
        "POST",
        &format!("/api/processes/{name}/{action}"),
        Some(&up.token()),
    )
}

/// [`post_action`], which must answer 200: the process's entry.
fn act(up: &UpProcess, name: &str, action: &str) -> Value {
    let r = post_action(up, name, action);
    assert_eq!(r.status, 200, "{action} {name}: {r:?}");
    r.json()
}

/// [`post_action`], which must be refused with `409`: the action does not
/// fit the process's state.
fn refused(up: &UpProcess, name: &str, action: &str) {
    let r = post_action(up, name, action);
    assert_eq!(r.status, 409, "{action} {name}: {r:?}");
}

fn pid(entry: &Value) -> u32 {
    u32::try_from(entry["pid"].as_u64().unwrap()).unwrap()
}

/// The `/proc` state letter of `pid` (`T` when stopped).
fn proc_state(pid: u32) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .unwrap_or("")
        .to_owned()
}

fn server_state(up: &UpProcess, name: &str) -> String {
    up.cluster()["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .map(|s| s["state"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn control_api_kills_pauses_resumes_and_restarts_processes() {
    let up = UpProcess::start(STICKY, &[]);
    up.wait_all_up();
    let token = up.token();

    // The token is required.
    let r = call(up.supervisor(), "GET", "/api/processes", None);
    assert_eq!(r.status, 401, "{r:?}");
    let r = call(up.supervisor(), "GET", "/api/processes", Some("0badc0de"));
    assert_eq!(r.status, 401, "{r:?}");
    let r = call(
        up.supervisor(),
        "POST",
        "/api/processes/ws1/kill",
        Some("0badc0de"),
    );
    assert_eq!(r.status, 401, "{r:?}");
    assert!(pid_alive(up.pid_of("ws1")), "nothing was killed");

    // The list matches the table.
    let list = call(up.supervisor(), "GET", "/api/processes", Some(&token)).json_ok();
    assert_eq!(list["supervisor_pid"], up.pid());
    let procs = list["processes"].as_array().unwrap();
    let table = up.table();
    assert_eq!(procs.len(), table.len());
    for (name, role, addr, pid) in &table {
        let p = procs.iter().find(|p| p["name"] == name.as_str()).unwrap();
        assert_eq!(
            (&p["role"], &p["addr"], &p["pid"], &p["state"]),
            (
                &Value::from(role.as_str()),
                &Value::from(addr.to_string()),
                &Value::from(*pid),
                &Value::from("running")
            )
        );
    }

    // Unknown names and actions.
    let r = call(
        up.supervisor(),
        "POST",
        "/api/processes/ws9/kill",
        Some(&token),
    );
    assert_eq!(r.status, 404, "{r:?}");
    let r = call(
        up.supervisor(),
        "POST",
        "/api/processes/ws1/explode",
        Some(&token),
    );
    assert_eq!(r.status, 404, "{r:?}");

    // Pause: SIGSTOP; the director finds it down.
    let ws1 = up.pid_of("ws1");
    let e = act(&up, "ws1", "pause");
    assert_eq!(e["state"], "paused");
    assert_eq!(pid(&e), ws1);
    wait_until(DEADLINE, "ws1 is stopped", || proc_state(ws1) == "T");
    wait_until(DEADLINE, "the director marks ws1 down", || {
        server_state(&up, "ws1") == "down"
    });
    assert_eq!(up.status_of("ws1")["state"], "paused");
    refused(&up, "ws1", "pause");

    // Resume: SIGCONT; it comes back (fenced, with a new epoch).
    let e = act(&up, "ws1", "resume");
    assert_eq!(e["state"], "running");
    wait_until(DEADLINE, "ws1 runs", || proc_state(ws1) != "T");
    wait_until(DEADLINE, "the director routes to ws1 again", || {
        server_state(&up, "ws1") == "up"
    });
    refused(&up, "ws1", "resume");

    // Kill: SIGKILL; gone when the answer comes.
    let s2 = up.pid_of("s2");
    let e = act(&up, "s2", "kill");
    assert_eq!(e["state"], "exited");
    assert!(e["exit"].as_str().unwrap().contains("9"), "{e}");
    assert!(!pid_alive(s2), "s2 is gone");
    refused(&up, "s2", "kill");

    // Restart an exited store: a new PID, running once it answers PING.
    let e = act(&up, "s2", "restart");
    let s2_new = pid(&e);
    assert_ne!(s2_new, s2);
    assert_eq!(e["restarts"], 1);
    assert!(e["state"] == "starting" || e["state"] == "running", "{e}");
    wait_until(DEADLINE, "s2 runs again", || {
        let s = up.status_of("s2");
        s["process"] == "running" && s["state"] == "up" && s["pid"] == s2_new
    });

    // Restart a running web server: stopped, started again.
    let ws2 = up.pid_of("ws2");
    let e = act(&up, "ws2", "restart");
    let ws2_new = pid(&e);
    assert_ne!(ws2_new, ws2);
    assert!(!pid_alive(ws2), "the old ws2 is gone");
    wait_until(DEADLINE, "the director routes to the new ws2", || {
        up.status_of("ws2")["process"] == "running" && server_state(&up, "ws2") == "up"
    });

    // The supervisor keeps watching what it restarted.
    signal(ws2_new, "KILL");
    wait_until(DEADLINE, "the restarted ws2's death is seen", || {
        up.status_of("ws2")["process"] == "exited"
    });
    assert!(
        up.stderr_text()
            .contains(&format!("ws2 (web, pid {ws2_new}) exited")),
        "{}",
        up.stderr_text()
    );

    // Restart the director: the shop works again.
    let director = up.pid_of("director");
    let e = act(&up, "director", "restart");
    assert_ne!(pid(&e), director);
    wait_until(DEADLINE, "the director is back", || {
        up.status_of("director")["process"] == "running"
    });
    up.wait_all_up_but(&["ws2"]);
    let mut jar = CookieJar::new();
    let a = jar.add_item(up.shop(), "after-restarts");
    assert_eq!(a.items(), ["after-restarts"]);
}

#[test]
fn director_proxies_the_control_api_and_ctrl_c_stops_paused_processes() {
    let mut up = UpProcess::start(STICKY, &[]);
    up.wait_all_up();

    // Through the director's admin listener: reading needs no token,
    // acting does (#15 item 5).
    let list = call(up.admin(), "GET", "/api/processes", None).json_ok();
    assert_eq!(list["processes"].as_array().unwrap().len(), 8, "{list}");
    let ws3 = up.pid_of("ws3");
    let r = call(up.admin(), "POST", "/api/processes/ws3/pause", None);
    assert_eq!(r.status, 401, "{r:?}");
    let token = up.token();
    let r = call(up.admin(), "POST", "/api/processes/ws3/pause", Some(&token));
    assert_eq!(r.json_ok()["state"], "paused", "{r:?}");
    wait_until(DEADLINE, "ws3 is stopped", || proc_state(ws3) == "T");
    // Errors come through as they are.
    let r = call(up.admin(), "POST", "/api/processes/ws3/pause", Some(&token));
    assert_eq!(r.status, 409, "{r:?}");
    let r = call(
        up.admin(),
        "POST",
        "/api/processes/nobody/kill",
        Some(&token),
    );
    assert_eq!(r.status, 404, "{r:?}");
    // A web page elsewhere cannot press the buttons.
    let r = http_request(
        up.admin(),
        "POST",
        "/api/processes/ws1/kill",
        &[("Origin", "http://evil.example")],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    assert!(pid_alive(up.pid_of("ws1")));

    // Ctrl-C stops everything, the paused server included, without
    // resorting to SIGKILL.
    let pids: Vec<u32> = up.table().iter().map(|r| r.3).collect();
    let status = up.interrupt();
    assert!(status.success(), "{status}");
    for pid in pids {
        assert!(!pid_alive(pid), "pid {pid} outlived Ctrl-C");
    }
    let err = up.stderr_text();
    assert!(!err.contains("killing it"), "{err}");
}

/// The state of process `name` in `GET /api/processes`.
fn listed_state(up: &UpProcess, name: &str) -> String {
    let r = call(up.supervisor(), "GET", "/api/processes", Some(&up.token()));
    assert_eq!(r.status, 200, "{r:?}");
    r.json()["processes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .and_then(|p| p["state"].as_str())
        .unwrap_or_default()
        .to_owned()
}

/// A restart waits for the old process off the supervisor's loop (session
/// 24 found the loop held for a whole stop: no other action, watch or
/// Ctrl-C meanwhile). ws1, stopped behind the supervisor's back, cannot act
/// on its SIGTERM, so its restart lasts the 5 s grace and ends in SIGKILL;
/// meanwhile the API lists it as `stopping` and carries out other actions.
#[test]
fn a_restart_waits_for_the_old_process_off_the_supervisors_loop() {
    let up = UpProcess::start(STICKY, &[]);
    up.wait_all_up();
    let ws1 = up.pid_of("ws1");
    signal(ws1, "STOP");
    let (supervisor, token) = (up.supervisor(), up.token());
    let restart = std::thread::spawn(move || {
        call(
            supervisor,
            "POST",
            "/api/processes/ws1/restart",
            Some(&token),
        )
    });
    wait_until(DEADLINE, "ws1 is listed as stopping", || {
        listed_state(&up, "ws1") == "stopping"
    });
    // A second restart of a stopping process.
    refused(&up, "ws1", "restart");
    // Another process's actions, answered while the restart waits (it has
    // most of the 5 s grace left).
    assert_eq!(act(&up, "s3", "pause")["state"], "paused");
    assert_eq!(act(&up, "s3", "resume")["state"], "running");
    assert!(
        !restart.is_finished(),
        "the restart answered before the old ws1 was killed"
    );

    let r = restart.join().unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let e = r.json();
    assert_eq!(e["state"], "starting", "{e}");
    assert_ne!(pid(&e), ws1);
    assert!(!pid_alive(ws1), "the old ws1 is gone");
    assert!(
        up.stderr_text()
            .contains("ws1 did not stop within 5s; killing it"),
        "{}",
        up.stderr_text()
    );
    wait_until(DEADLINE, "the new ws1 runs", || {
        up.status_of("ws1")["process"] == "running"
    });
}
