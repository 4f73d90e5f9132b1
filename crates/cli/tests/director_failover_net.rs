//! A moved session's request when the director cannot reach the server
//! it would move the session to (issue 19 item 5 under the network fault
//! model): the standby is cut from the director — packets dropped, no
//! connection refused — and the director's health checks have not noticed
//! yet. The request must go to another server after one connect timeout,
//! not end in an error after trying the standby again and again; and the
//! next moved sessions' requests must not try the standby at all until a
//! health check reaches it.
//!
//! Every process in its own network namespace on a bridge of the test's
//! own ([`Net`]): the director, `ws1`, `ws2`, the standby `sb`, and the
//! three stores together in `st`; the test talks to the director from the
//! root namespace. Needs root and `ip` (iproute2): skips loudly without
//! them, except under `CI`, where it fails instead. Everything is removed
//! also on failure: the processes (killed on drop), the namespaces
//! ([`Net`]'s drop, which also kills what still runs in them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::Path;

use sticky_test_support::{
    http_request, log_tail, log_to, require_program_from, require_root, signal, temp_dir,
    wait_until, Answer, CertFiles, ChildProcess, CookieJar, HttpClient, HttpVersion, HttpsClient,
    Net, Paused, Response, TestCa, DEADLINE, STARTUP_DEADLINE,
};

const STICKY: &str = env!("CARGO_BIN_EXE_sticky");
/// The director's route cookie (its default name).
const ROUTE_COOKIE: &str = "sticky.route";
/// Health checks that mark a cut server down within about a second
/// (`fall` × interval + timeout: 0.7 s).
const QUICK_CHECKS: &str =
    "health_interval_ms = 200\nhealth_timeout_ms = 300\nhealth_slow_ms = 0\nfall = 2\nrise = 1";

/// A process of the cluster, in its host's namespace.
struct Proc {
    name: String,
    child: ChildProcess,
    log: std::path::PathBuf,
}

fn start(net: &Net, host: &str, name: &str, args: &[&str], config: &Path) -> Proc {
    let mut cmd = net.host(host).unwrap().command(STICKY);
    cmd.args(args).arg("--config").arg(config);
    cmd.env("STICKY_LOG", "info");
    let log = log_to(&mut cmd, &format!("dfnet-{name}"));
    Proc {
        name: name.to_owned(),
        child: ChildProcess::spawn(&mut cmd, name),
        log,
    }
}

/// Fails with every process's log tail.
fn logs(procs: &[Proc]) -> String {
    procs
        .iter()
        .map(|p| format!("--- {}\n{}", p.name, log_tail(&p.log, 15)))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The cluster of these tests, every process in its own namespace: the
/// director in `d`, `ws1`, `ws2`, the standby `sb`, the three stores in
/// `st`; up and ready. `health` is the `[director]` health settings.
struct Cluster {
    // Dropped before the namespaces they run in.
    procs: Vec<Proc>,
    net: Net,
    public: SocketAddr,
    admin: SocketAddr,
    /// The second director's listeners (in `d2`), if started.
    second: Option<(SocketAddr, SocketAddr)>,
}

impl Cluster {
    /// `None` (and a loud skip) without root or `ip`.
    fn start(prefix: &str, health: &str) -> Option<Self> {
        Self::start_with(prefix, health, 300)
    }

    /// [`Cluster::start`] with the director's `connect_timeout_ms`.
    fn start_with(prefix: &str, health: &str, connect_timeout_ms: u64) -> Option<Self> {
        Self::start_in_mode(prefix, health, connect_timeout_ms, "sync")
    }

    /// [`Cluster::start_with`] in replication mode `mode`.
    fn start_in_mode(
        prefix: &str,
        health: &str,
        connect_timeout_ms: u64,
        mode: &str,
    ) -> Option<Self> {
        Self::start_directors(prefix, health, connect_timeout_ms, mode, false, None)
    }

    /// [`Cluster::start`] with a second director, `director2`, in its own
    /// namespace `d2`.
    fn start_two(prefix: &str, health: &str) -> Option<Self> {
        Self::start_directors(prefix, health, 300, "sync", true, None)
    }

    /// [`Cluster::start_two`] with TLS on the public listeners
    /// (certificate `cert`) and each director's relay listener on its
    /// port 8082.
    fn start_two_tls(prefix: &str, health: &str, cert: &CertFiles) -> Option<Self> {
        Self::start_directors(prefix, health, 300, "sync", true, Some(cert))
    }

    fn start_directors(
        prefix: &str,
        health: &str,
        connect_timeout_ms: u64,
        mode: &str,
        two: bool,
        tls: Option<&CertFiles>,
    ) -> Option<Self> {
        if !require_root("a director cut from the standby (network namespaces)")
            || !require_program_from("ip", "iproute2")
        {
            return None;
        }
        let mut hosts = vec!["d", "ws1", "ws2", "sb", "st"];
        if two {
            hosts.push("d2");
        }
        let net = Net::with_prefix(prefix, &hosts).expect("create the namespaces");
        let at = |host: &str, port: u16| SocketAddr::from((net.addr(host).unwrap(), port));
        let (public, admin) = (at("d", 8080), at("d", 8081));
        let second = two.then(|| (at("d2", 8080), at("d2", 8081)));
        let relay = |host: &str| match tls {
            Some(_) => format!("relay_listen = \"{}\"\n", at(host, 8082)),
            None => String::new(),
        };
        let peers = match second {
            Some((p, a)) => format!(
                "\n[[director.peers]]\nname = \"director2\"\nlisten = \"{p}\"\nadmin = \"{a}\"\n{}",
                relay("d2")
            ),
            None => String::new(),
        };
        let tls_lines = match tls {
            Some(cert) => format!(
                "tls_cert = {:?}\ntls_key = {:?}\n{}",
                cert.cert.display().to_string(),
                cert.key.display().to_string(),
                relay("d")
            ),
            None => String::new(),
        };
        let dir = temp_dir(prefix);
        let config = dir.join("cluster.toml");
        std::fs::write(
            &config,
            format!(
                r#"secret = "a cluster secret of at least thirty-two bytes"
replicas = 2
mode = "{mode}"

[director]
listen = "{public}"
admin = "{admin}"
{health}
connect_timeout_ms = {connect_timeout_ms}
{tls_lines}

[[web]]
name = "ws1"
listen = "{ws1}"

[[web]]
name = "ws2"
listen = "{ws2}"

[[web]]
name = "sb"
listen = "{sb}"
standby = true

[[store]]
name = "s1"
listen = "{s1}"

[[store]]
name = "s2"
listen = "{s2}"

[[store]]
name = "s3"
listen = "{s3}"
{peers}
    "#,
                ws1 = at("ws1", 9091),
                ws2 = at("ws2", 9092),
                sb = at("sb", 9094),
                s1 = at("st", 9121),
                s2 = at("st", 9122),
                s3 = at("st", 9123),
            ),
        )
        .unwrap();

        let mut procs = Vec::new();
        for s in ["s1", "s2", "s3"] {
            let state = dir.join(format!("{s}-state"));
            let state = state.to_str().unwrap();
            procs.push(start(
                &net,
                "st",
                s,
                &["store", "--name", s, "--state-dir", state],
                &config,
            ));
        }
        for (host, name) in [("ws1", "ws1"), ("ws2", "ws2"), ("sb", "sb")] {
            procs.push(start(&net, host, name, &["web", "--name", name], &config));
        }
        procs.push(start(&net, "d", "director", &["director"], &config));
        if two {
            procs.push(start(
                &net,
                "d2",
                "director2",
                &["director", "--name", "director2"],
                &config,
            ));
        }

        // Every web server up (and ready) in every director's view. (The
        // processes' logs are `target/tmp/dfnet-*.log`.)
        for admin in std::iter::once(admin).chain(second.map(|(_, a)| a)) {
            wait_until(STARTUP_DEADLINE, "every web server is up and ready", || {
                http_request(admin, "GET", "/api/cluster", &[], None)
                    .ok()
                    .filter(|r| r.status == 200)
                    .map(|r| r.json())
                    .is_some_and(|c| {
                        c["servers"].as_array().is_some_and(|s| {
                            s.len() == 3
                                && s.iter().all(|s| s["state"] == "up" && s["ready"] == true)
                        })
                    })
            });
        }
        Some(Self {
            procs,
            net,
            public,
            admin,
            second,
        })
    }

    /// The last lines of process `name`'s log.
    fn log_tail(&self, name: &str) -> String {
        log_tail(&self.procs.iter().find(|p| p.name == name).unwrap().log, 40)
    }

    fn proc_mut(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap()
    }

    /// This director's view of server `name`.
    fn server(&self, name: &str) -> serde_json::Value {
        let cluster = http_request(self.admin, "GET", "/api/cluster", &[], None)
            .unwrap()
            .json();
        cluster["servers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {cluster}"))
    }

    /// `GET /api/counter` with `jar` through the first director, which
    /// must answer `status` within `limit`.
    fn counter_within(
        &self,
        jar: &mut CookieJar,
        status: u16,
        limit: std::time::Duration,
    ) -> Response {
        let started = std::time::Instant::now();
        let r = jar.request(self.public, "GET", "/api/counter", None);
        let took = started.elapsed();
        assert_eq!(r.status, status, "{r:?}\n{}", logs(&self.procs));
        assert!(
            took < limit,
            "answered after {took:?}, not within {limit:?}"
        );
        r
    }

    /// `n` new sessions placed on `server`, each with a count of 1.
    fn sessions_on(&self, server: &str, n: usize) -> Vec<CookieJar> {
        let mut placed = Vec::new();
        for _ in 0..20 * n {
            let mut j = CookieJar::new();
            let a = Answer::from(&j.request(self.public, "POST", "/api/counter", None));
            if a.server == server {
                placed.push(j);
                if placed.len() == n {
                    break;
                }
            }
        }
        assert_eq!(placed.len(), n, "{n} new sessions placed on {server}");
        placed
    }
}

#[test]
fn a_moved_session_goes_to_another_server_when_the_standby_cannot_be_reached() {
    // Health checks every second, a server marked down after 30 failed
    // ones, no mark for a slow check: the checks do not notice the cut
    // during the test, as they would not in the first second of a real
    // one. The connect timeout is the director's only way to learn it.
    let Some(mut c) = Cluster::start(
        "stkdfn",
        "health_interval_ms = 1000\nfall = 30\nrise = 1\nhealth_slow_ms = 0",
    ) else {
        return;
    };
    let (public, admin) = (c.public, c.admin);

    // Three sessions on ws1, with counts 2, 1 and 1.
    let mut on_ws1 = c.sessions_on("ws1", 3);
    let mut others = on_ws1.split_off(1);
    let mut jar = on_ws1.pop().unwrap();
    let a = Answer::from(&jar.request(public, "POST", "/api/counter", None));
    assert_eq!((a.server.as_str(), a.value), ("ws1", 2));
    assert_eq!(connect_errors(admin), 0, "no connect failed yet");

    // The standby is cut from the director; ws1 dies.
    c.net.cut("d", "sb").unwrap();
    c.proc_mut("ws1").child.kill9();

    // The session's next request: ws1 refuses it, the standby does not
    // answer the connect, and the request goes to ws2, which takes the
    // session over from the stores.
    let r = jar.request(public, "GET", "/api/counter", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", logs(&c.procs));
    let a = Answer::from(&r);
    assert_eq!(
        (a.server.as_str(), a.value, a.source.as_str()),
        ("ws2", 2, "store"),
        "taken over by ws2 with its count"
    );
    assert!(c.net.dropped_to("sb").unwrap() > 0, "the cut bit");
    // The director still believes the standby up: the request, not the
    // health checks, passed it over.
    let sb = c.server("sb");
    assert_eq!(sb["state"], "up", "{sb}");
    assert_eq!(sb["unreachable"], true, "shown to operators: {sb}");

    // It stays with ws2.
    let a = Answer::from(&jar.request(public, "POST", "/api/counter", None));
    assert_eq!(
        (a.server.as_str(), a.value, a.source.as_str()),
        ("ws2", 3, "cache")
    );

    // That failed connect marked the standby unreachable for every
    // request, until a health check reaches it: the other moved sessions
    // go straight to ws2, without trying the standby (each would have
    // cost a connect timeout, and counted one more connect error).
    // (At most one: a health check that failed in the meantime marks it
    // too, and then no request tries it.)
    let tried = connect_errors(admin);
    assert!(tried <= 1, "{tried} connects to the standby failed");
    for j in &mut others {
        let r = j.request(public, "GET", "/api/counter", None);
        assert_eq!(r.status, 200, "{r:?}\n{}", logs(&c.procs));
        let a = Answer::from(&r);
        assert_eq!(
            (a.server.as_str(), a.value, a.source.as_str()),
            ("ws2", 1, "store")
        );
    }
    assert_eq!(
        connect_errors(admin),
        tried,
        "the other moved sessions did not try the standby"
    );
    let history = http_request(admin, "GET", "/api/history", &[], None)
        .unwrap()
        .json();
    let marked = history["events"].as_array().is_some_and(|events| {
        events
            .iter()
            .any(|e| e["kind"] == "unreachable" && e["subject"] == "sb")
    });
    assert!(marked, "an `unreachable` event for sb: {history}");
    c.net.heal_all().unwrap();
}

/// A standby paused just before a web server dies (the fault model's
/// "pause"): its kernel still accepts connections, so only its health
/// checks can tell. A check unanswered for `health_slow_ms` marks it
/// unreachable, long before the check times out; the dead server's users
/// then go to a web server instead of waiting for the standby to wake.
#[test]
fn a_moved_session_passes_over_a_standby_whose_health_check_is_slow() {
    // Checks every 200 ms that time out only after a minute: without the
    // slow-check mark nothing would tell the director during the test.
    let Some(mut c) = Cluster::start(
        "stkdfp",
        "health_interval_ms = 200\nhealth_timeout_ms = 60000\nhealth_slow_ms = 100\nfall = 30\nrise = 1",
    ) else {
        return;
    };
    let mut jar = c.sessions_on("ws1", 1).pop().unwrap();

    let sb = c.proc_mut("sb").child.pid();
    signal(sb, "STOP");
    wait_until(DEADLINE, "the paused standby is marked unreachable", || {
        c.server("sb")["unreachable"] == true
    });
    let standby = c.server("sb");
    assert_eq!(standby["state"], "up", "not marked down: {standby}");
    c.proc_mut("ws1").child.kill9();

    let r = jar.request(c.public, "GET", "/api/counter", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", logs(&c.procs));
    let a = Answer::from(&r);
    assert_eq!(
        (a.server.as_str(), a.value, a.source.as_str()),
        ("ws2", 1, "store"),
        "taken over by ws2 with its count, not held by the paused standby"
    );
    signal(sb, "CONT");
}

/// The director's count of failed connects to web servers (other than
/// refusals), from its metrics.
fn connect_errors(admin: SocketAddr) -> u64 {
    counter(
        admin,
        "sticky_director_upstream_errors_total{kind=\"connect\"}",
    )
}

/// The value of the director's counter `series` (name and labels).
fn counter(admin: SocketAddr, series: &str) -> u64 {
    let r = http_request(admin, "GET", "/metrics", &[], None).unwrap();
    assert_eq!(r.status, 200);
    let text = String::from_utf8_lossy(&r.body).into_owned();
    text.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .map(|v| v as u64)
        .unwrap_or_else(|| panic!("no {series} in the metrics:\n{text}"))
}

/// A route cookie naming a server the director cannot reach, which does
/// not hold the session (an old cookie, replayed or swapped: the fault
/// model's client faults). Once the director has marked that server
/// unreachable (here: its health check is slow), the request goes out on
/// a new connection, which fails within the connect limit; the request
/// then fails over, and the server that holds the session answers it from
/// its cache. Before, the director wrote it to a connection pooled before
/// the cut (no answer until the response timeout), or tried the named
/// server until the attempts ran out (`504`).
#[test]
fn a_stale_route_cookie_naming_a_server_cut_from_the_director_fails_over() {
    let Some(mut c) = Cluster::start(
        "stkdfs",
        "health_interval_ms = 200\nhealth_timeout_ms = 60000\nhealth_slow_ms = 100\nfall = 30\nrise = 1",
    ) else {
        return;
    };
    let public = c.public;
    // Session A on ws2; session B on ws1, which dies: B moves to the
    // standby, and its route cookie names the standby from then on.
    let mut a = c.sessions_on("ws2", 1).pop().unwrap();
    let mut b = c.sessions_on("ws1", 1).pop().unwrap();
    c.proc_mut("ws1").child.kill9();
    let moved = Answer::from(&b.request(public, "GET", "/api/counter", None));
    assert_eq!(
        (moved.server.as_str(), moved.source.as_str()),
        ("sb", "store")
    );
    let names_sb = b.cookies.get(ROUTE_COOKIE).cloned().unwrap();

    // The standby is cut from the director; A's next request carries the
    // route cookie naming it.
    c.net.cut("d", "sb").unwrap();
    wait_until(DEADLINE, "the cut standby is marked unreachable", || {
        c.server("sb")["unreachable"] == true
    });
    a.cookies.insert(ROUTE_COOKIE.to_owned(), names_sb.clone());
    let r = a.request(public, "GET", "/api/counter", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", logs(&c.procs));
    let ans = Answer::from(&r);
    assert_eq!(
        (ans.server.as_str(), ans.value, ans.source.as_str()),
        ("ws2", 1, "cache"),
        "answered by the server that holds the session"
    );
    assert_ne!(
        a.cookies.get(ROUTE_COOKIE),
        Some(&names_sb),
        "the client got a route cookie naming ws2 again"
    );
    c.net.heal_all().unwrap();
}

/// A `421` naming the session's owner, which the director cannot reach:
/// only the owner may serve the session while its lease lives, so the
/// answer is `503` — but not after the whole connect timeout every time.
/// A connect to the owner that fails marks it unreachable, and once it is
/// marked, a request re-sent to it by a `421` tries it within the quick
/// connect limit (`reroute_connect_timeout_ms`, 50 ms). Before, each such
/// request waited out the connect timeout (1 s by default) until a health
/// check noticed: the slowest first answers after a kill in an
/// every-fault chaos run (session 23).
#[test]
fn a_421_naming_an_owner_cut_from_the_director_fails_fast_once_a_connect_failed() {
    // Checks that cannot notice the cut during the test (no slow mark, a
    // minute to time out): only the requests can. A 3 s connect timeout,
    // so that waiting it out cannot pass for a quick failure.
    let Some(mut c) = Cluster::start_with(
        "stkdfo",
        "health_interval_ms = 200\nhealth_timeout_ms = 60000\nhealth_slow_ms = 0\nfall = 2\nrise = 1",
        3000,
    ) else {
        return;
    };
    let public = c.public;
    // A session of ws1, which dies. The director sees it down through its
    // checks and has the standby adopt its sessions: the standby holds
    // the session's lease, and the director has no connection to it
    // pooled by a request.
    let mut jar = c.sessions_on("ws1", 1).pop().unwrap();
    c.proc_mut("ws1").child.kill9();
    wait_until(DEADLINE, "the standby adopted ws1's session", || {
        c.server("ws1")["state"] == "down" && c.server("sb")["sessions"] == 1
    });

    // The standby is cut from the director; the client drops its route
    // cookie. The director sends the request to ws2 (a new client goes to
    // a web server, not the standby), which finds the standby's live
    // lease and answers 421 naming it; the director cannot connect.
    c.net.cut("d", "sb").unwrap();
    jar.cookies.remove(ROUTE_COOKIE);
    let r = jar.request(public, "GET", "/api/counter", None);
    assert_eq!(r.status, 503, "{r:?}\n{}", logs(&c.procs));
    let sb = c.server("sb");
    assert_eq!(
        sb["unreachable"], true,
        "the failed connect marked it: {sb}"
    );
    assert_eq!(sb["state"], "up", "the checks did not: {sb}");

    // The next such request tries the owner within the quick limit.
    // (Not waiting out the 3 s connect timeout.)
    jar.cookies.remove(ROUTE_COOKIE);
    c.counter_within(&mut jar, 503, std::time::Duration::from_millis(1500));

    // Healed, the owner serves the session again, with its count.
    c.net.heal_all().unwrap();
    wait_until(DEADLINE, "the standby serves its session again", || {
        jar.cookies.remove(ROUTE_COOKIE);
        jar.try_request(public, "GET", "/api/counter", None)
            .is_ok_and(|r| r.status == 200 && Answer::from(&r).server == "sb")
    });
    let a = Answer::from(&jar.request(public, "POST", "/api/counter", None));
    assert_eq!((a.server.as_str(), a.value), ("sb", 2));
}

/// A request the director wrote to ws1 just as the link between them was
/// cut: nothing answers it, and TCP would send it again only after the
/// heal (or never). When the health checks mark ws1 down, the director
/// ends it with `504` (`end_requests_on_down`, on by default), so the
/// client may retry through the server its session moves to, instead of
/// waiting for the response timeout (a minute here). Before, such requests
/// waited 6.8 s for the fifth retransmission after a heal in an
/// every-fault chaos run (session 25), and 30 s (the client's timeout)
/// here.
#[test]
fn a_request_lost_in_a_cut_link_ends_when_its_server_is_marked_down() {
    let Some(c) = Cluster::start(
        "stkdfl",
        &format!("{QUICK_CHECKS}\nresponse_timeout_ms = 60000"),
    ) else {
        return;
    };
    let public = c.public;
    // A session of ws1; its requests left the director a pooled
    // connection to ws1 (one worker thread: one pool), which the next
    // request takes.
    let mut jar = c.sessions_on("ws1", 1).pop().unwrap();
    let a = Answer::from(&jar.request(public, "GET", "/api/counter", None));
    assert_eq!(a.server, "ws1");

    c.net.cut("d", "ws1").unwrap();
    let r = c.counter_within(&mut jar, 504, std::time::Duration::from_secs(10));
    assert!(
        r.text().contains("stopped answering its health checks"),
        "ended by the mark, not a connect failure: {}",
        r.text()
    );
    assert_eq!(c.server("ws1")["state"], "down");
    c.net.heal_all().unwrap();
}

/// A web server cut from the director but not from the stores keeps its
/// lease, so no other server may claim its sessions while their users
/// cannot reach it. Once the director has marked it down (its checks
/// stopped reaching it) and another server probes it to claim one of its
/// sessions, it lets its sessions go (`release_when_unreached`, on by
/// default): the session moves with every write, long before the cut
/// heals; after the heal the cut server is routed to again.
#[test]
fn a_server_cut_from_the_director_lets_its_sessions_go() {
    let Some(c) = Cluster::start("stkdfr", QUICK_CHECKS) else {
        return;
    };
    let public = c.public;
    // Two sessions of ws1: one used during the cut, one idle.
    let mut jars = c.sessions_on("ws1", 2);
    let (mut jar, mut idle) = (jars.remove(0), jars.remove(0));
    let a = Answer::from(&jar.request(public, "POST", "/api/counter", None));
    assert_eq!((a.server.as_str(), a.value), ("ws1", 2));

    c.net.cut("d", "ws1").unwrap();
    // Its lease (3 s, renewed every second) would hold the session at ws1
    // for the whole cut: only the release moves it.
    let mut last = None;
    wait_until(DEADLINE, "the session is served by another server", || {
        let r = jar.request(public, "POST", "/api/counter", None);
        let served = r.status == 200 && Answer::from(&r).server != "ws1";
        last = Some(r);
        served
    });
    let moved = Answer::from(last.as_ref().unwrap());
    assert_eq!(
        (moved.value, moved.source.as_str()),
        (3, "store"),
        "the count carried on from the stores"
    );
    let ws1_log = c.log_tail("ws1");
    assert!(
        ws1_log.contains("letting its sessions go"),
        "ws1 let its sessions go:\n{ws1_log}"
    );

    // Healed: ws1 is routed to again; the session stays where it is, with
    // its count.
    c.net.heal_all().unwrap();
    wait_until(DEADLINE, "ws1 is up again", || {
        c.server("ws1")["state"] == "up"
    });
    let a = Answer::from(&jar.request(public, "POST", "/api/counter", None));
    assert_eq!((a.server.as_str(), a.value), (moved.server.as_str(), 4));
    // The idle session kept its count wherever it went (adopted, or
    // claimed back by ws1 from the copy it kept).
    let r = idle.request(public, "GET", "/api/counter", None);
    assert_eq!(r.status, 200, "{r:?}\n{}", logs(&c.procs));
    assert_eq!(Answer::from(&r).value, 1);
}

/// In `async` mode a server cut from the director keeps its sessions: its
/// cache may hold changes the stores do not have yet, so letting them go
/// could lose them. The session answers `503` through the director until
/// the heal, even once the director has marked the server down for longer
/// than the release would wait and another server probed it.
#[test]
fn in_async_mode_a_server_cut_from_the_director_keeps_its_sessions() {
    let Some(c) = Cluster::start_in_mode("stkdfa", QUICK_CHECKS, 300, "async") else {
        return;
    };
    let public = c.public;
    let mut jar = c.sessions_on("ws1", 1).pop().unwrap();

    c.net.cut("d", "ws1").unwrap();
    // Down in the director's view for longer than the release's wait
    // (2 × 200 + 300 ms): a sync server would let go at the next probe.
    wait_until(DEADLINE, "ws1 has been down for 1.5 s", || {
        let ws1 = c.server("ws1");
        ws1["state"] == "down" && ws1["since_change_ms"].as_u64().is_some_and(|ms| ms > 1500)
    });
    // Each request goes to another server, whose claim probes ws1.
    for _ in 0..3 {
        let r = jar.request(public, "GET", "/api/counter", None);
        assert_eq!(r.status, 503, "{r:?}\n{}", logs(&c.procs));
    }
    let ws1_log = c.log_tail("ws1");
    assert!(
        !ws1_log.contains("letting its sessions go"),
        "ws1 let its sessions go in async mode:\n{ws1_log}"
    );
    // The other servers' claims found ws1's lease live after probing it,
    // and named it with 421.
    let metrics = http_request(c.admin, "GET", "/metrics", &[], None)
        .unwrap()
        .text();
    let misdirected: f64 = ["resent", "unavailable"]
        .iter()
        .map(|o| {
            sticky_test_support::director::metric(
                &metrics,
                &format!("sticky_director_misdirected_total{{outcome=\"{o}\"}}"),
            )
        })
        .sum();
    assert!(misdirected >= 1.0, "no 421 naming ws1:\n{metrics}");

    // Healed, ws1 serves the session from its cache.
    c.net.heal_all().unwrap();
    wait_until(DEADLINE, "ws1 serves its session again", || {
        jar.try_request(public, "GET", "/api/counter", None)
            .is_ok_and(|r| r.status == 200 && Answer::from(&r).server == "ws1")
    });
}

/// A web server cut from one of two directors keeps its sessions: the
/// other director's checks still reach it, so it does not let them go, and
/// its lease keeps every other server from claiming them. The cut director
/// sends such a session's request to a peer director, which reaches the
/// server, instead of answering `503` until the heal (the largest source
/// of failed requests in the every-fault chaos runs of sessions 25–27).
/// A request relayed once is not relayed again; with the peer cut off too
/// the client gets `503`, counted as a failed relay.
#[test]
fn a_server_cut_from_one_director_is_reached_through_the_other() {
    let Some(c) = Cluster::start_two("stkdfy", QUICK_CHECKS) else {
        return;
    };
    let public = c.public;
    let (public2, admin2) = c.second.unwrap();
    let mut jar = c.sessions_on("ws1", 1).pop().unwrap();

    c.net.cut("d", "ws1").unwrap();
    wait_until(DEADLINE, "the first director marks ws1 down", || {
        c.server("ws1")["state"] == "down"
    });
    // `Connection: close` requests (the director's hyper path), then
    // keep-alive ones on one connection (its fast path).
    let mut keep_alive = HttpClient::new(public);
    let fast = counter(c.admin, "sticky_director_fast_path_requests_total");
    const RELAYED_421: &str = "sticky_director_misdirected_total{outcome=\"relayed\"}";
    let relayed_421 = counter(c.admin, RELAYED_421);
    for count in 2..=5 {
        let r = if count < 4 {
            jar.request(public, "POST", "/api/counter", None)
        } else {
            keep_alive.cookies.clone_from(&jar.cookies);
            keep_alive
                .request("POST", "/api/counter", &[], b"")
                .unwrap()
        };
        assert_eq!(r.status, 200, "{r:?}\n{}", logs(&c.procs));
        let a = Answer::from(&r);
        assert_eq!(
            (a.server.as_str(), a.value, a.source.as_str()),
            ("ws1", count, "cache"),
            "served by ws1 from its cache, through the peer"
        );
    }
    assert!(
        counter(
            c.admin,
            "sticky_director_relayed_total{outcome=\"relayed\"}"
        ) >= 4
    );
    assert_eq!(
        counter(c.admin, "sticky_director_fast_path_requests_total"),
        fast + 2,
        "the keep-alive requests took the fast path"
    );
    // The first went to a failover server, whose 421 named ws1; the next
    // ones within a second went to the peer straight away (two 421s at
    // most: a machine slow enough to take a second between requests).
    let first_tried = counter(c.admin, RELAYED_421) - relayed_421;
    assert!(
        (1..=2).contains(&first_tried),
        "{first_tried} of 4 relayed requests first went to a failover server"
    );
    assert_eq!(
        counter(admin2, "sticky_director_relayed_total{outcome=\"relayed\"}"),
        0,
        "the peer relayed nothing"
    );
    // The second director serves it directly.
    let a = Answer::from(&jar.request(public2, "GET", "/api/counter", None));
    assert_eq!((a.server.as_str(), a.value), ("ws1", 5));

    // The peer cut off too: 503 (the relay is the last resort), quickly.
    // (ws1 keeps its sessions meanwhile: the peer still checks it.)
    c.net.cut("d", "d2").unwrap();
    c.counter_within(&mut jar, 503, std::time::Duration::from_secs(5));
    assert!(counter(c.admin, "sticky_director_relayed_total{outcome=\"failed\"}") >= 1);
    c.net.heal("d", "d2").unwrap();
    wait_until(DEADLINE, "relayed through the peer again", || {
        jar.try_request(public, "GET", "/api/counter", None)
            .is_ok_and(|r| r.status == 200 && Answer::from(&r).server == "ws1")
    });

    // A relayed request the peer never answers (paused after its kernel
    // took the connection) ends with 504 once the first director's look
    // at its peers (each second) finds it silent, not after the response
    // timeout (a minute). (With no director reaching ws1 meanwhile, ws1
    // may let its sessions go: the session may move.)
    {
        let d2 = c.procs.iter().find(|p| p.name == "director2").unwrap();
        let _paused = Paused::stop(&[d2.child.pid()]);
        c.counter_within(&mut jar, 504, std::time::Duration::from_secs(10));
    }

    // Healed: the first director reaches the session's server itself
    // again, and nothing is relayed; the count carried on.
    c.net.heal_all().unwrap();
    wait_until(DEADLINE, "ws1 is up again for the first director", || {
        c.server("ws1")["state"] == "up"
    });
    let mut last = None;
    wait_until(DEADLINE, "the session is served again", || {
        let r = jar.try_request(public, "GET", "/api/counter", None);
        let ok = r.as_ref().is_ok_and(|r| r.status == 200);
        last = r.ok();
        ok
    });
    let before = Answer::from(last.as_ref().unwrap());
    assert_eq!(before.value, 5, "the count survived: {before:?}");
    let relayed = counter(
        c.admin,
        "sticky_director_relayed_total{outcome=\"relayed\"}",
    );
    let a = Answer::from(&jar.request(public, "POST", "/api/counter", None));
    assert_eq!(a.value, 6);
    assert_eq!(
        counter(
            c.admin,
            "sticky_director_relayed_total{outcome=\"relayed\"}"
        ),
        relayed,
        "not relayed once the session's server is reachable"
    );
}

/// The same with TLS on the public listeners: the cut director relays to
/// its peer's plain relay listener (`relay_listen`), since it speaks only
/// plain HTTP to what it forwards to.
#[test]
fn with_tls_a_server_cut_from_one_director_is_reached_through_the_others_relay_listener() {
    let ca = TestCa::new("stkdft");
    let cert = ca.issue("director");
    let Some(c) = Cluster::start_two_tls("stkdft", QUICK_CHECKS, &cert) else {
        return;
    };
    let mut client = HttpsClient::connect(c.public, ca.ca_file(), HttpVersion::Http1).unwrap();
    // A new session placed on ws1.
    let mut cookies = String::new();
    for _ in 0..60 {
        let r = client.request("POST", "/api/counter", &[], b"").unwrap();
        let a = Answer::from(&r);
        if a.server == "ws1" {
            cookies = r
                .set_cookies()
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ");
            break;
        }
    }
    assert!(!cookies.is_empty(), "a new session placed on ws1");

    c.net.cut("d", "ws1").unwrap();
    wait_until(DEADLINE, "the first director marks ws1 down", || {
        c.server("ws1")["state"] == "down"
    });
    for count in 2..=3 {
        let r = client
            .request("POST", "/api/counter", &[("cookie", cookies.as_str())], b"")
            .unwrap();
        assert_eq!(r.status, 200, "{r:?}\n{}", logs(&c.procs));
        let a = Answer::from(&r);
        assert_eq!(
            (a.server.as_str(), a.value, a.source.as_str()),
            ("ws1", count, "cache"),
            "served by ws1 from its cache, through the peer's relay listener"
        );
    }
    assert!(
        counter(
            c.admin,
            "sticky_director_relayed_total{outcome=\"relayed\"}"
        ) >= 2
    );
    c.net.heal_all().unwrap();
}
