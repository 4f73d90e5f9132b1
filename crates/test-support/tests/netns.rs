//! The network-fault harness ([`Net`]) on the real kernel: hosts in their
//! own network namespaces, TCP echo servers (python3) in two of them,
//! probes run inside the namespaces, and each fault checked by what
//! connections and datagrams do. Needs root (skips loudly without it,
//! except under `CI`) and python3.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sticky_test_support::{
    pid_alive, require_program_from, require_root, wait_until, ChildProcess, Net, NetError,
    DEADLINE,
};

/// The echo servers' TCP and UDP port (each namespace has its own ports).
const PORT: u16 = 7000;
/// How long a probe that should fail waits for its connection: a cut drops
/// every packet, so no answer comes however long it waits.
const CUT_TIMEOUT: &str = "1";
/// How long a probe that should succeed may take (it returns at once when
/// it does).
const OK_TIMEOUT: &str = "10";

/// A TCP echo server on 0.0.0.0:PORT that also records the source of
/// every UDP datagram to that port. `SEEN\n` answers those sources;
/// `SEND n\n` answers n bytes, then closes; anything else is echoed.
const SERVER: &str = r#"
import socket, sys, threading
port = int(sys.argv[1])
seen, lock = [], threading.Lock()
def udp():
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.bind(("0.0.0.0", port))
    while True:
        _, (host, _) = u.recvfrom(2048)
        with lock:
            if host not in seen:
                seen.append(host)
def handle(c):
    with c:
        data = c.recv(65536)
        if data.startswith(b"SEEN\n"):
            with lock:
                c.sendall((" ".join(seen) + "\n").encode())
        elif data.startswith(b"SEND "):
            n = int(data.split()[1])
            chunk = b"x" * 65536
            while n > 0:
                c.sendall(chunk[:min(n, len(chunk))])
                n -= len(chunk)
        else:
            while data:
                c.sendall(data)
                data = c.recv(65536)
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind(("0.0.0.0", port))
t.listen(64)
threading.Thread(target=udp, daemon=True).start()
while True:
    c, _ = t.accept()
    threading.Thread(target=handle, args=(c,), daemon=True).start()
"#;

/// Connects to HOST PORT within TIMEOUT seconds and checks an echo;
/// prints `ok`, `timeout` (connect timed out), `refused`, `stalled` (the
/// echo did not come back) or `error ...`.
const PROBE: &str = r#"
import socket, sys
s = socket.socket()
s.settimeout(float(sys.argv[3]))
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
except socket.timeout:
    print("timeout"); sys.exit()
except ConnectionRefusedError:
    print("refused"); sys.exit()
except OSError as e:
    print("error", e); sys.exit()
try:
    s.sendall(b"ping\n")
    r = b""
    while not r.endswith(b"\n"):
        d = s.recv(64)
        if not d:
            break
        r += d
    print("ok" if r == b"ping\n" else "bad %r" % r)
except socket.timeout:
    print("stalled")
except OSError as e:
    print("error", e)
"#;

/// Sends three datagrams to HOST PORT.
const DATAGRAMS: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for _ in range(3):
    s.sendto(b"x", (sys.argv[1], int(sys.argv[2])))
"#;

/// The real python3 executable (not a pyenv shim: probes start faster).
fn python() -> &'static str {
    static PYTHON: OnceLock<String> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys; print(sys.executable)"])
            .output()
            .expect("run python3");
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    })
}

/// Whether the machine can run these tests; says so loudly if not.
fn can_run() -> bool {
    require_root("this network-namespace test")
        && require_program_from("ip", "iproute2")
        && require_program_from("tc", "iproute2")
        && require_program_from("python3", "python3")
}

/// A command running `program` in endpoint `from` (a host, or the root
/// namespace: this process's).
fn command_in(net: &Net, from: &str, program: &str) -> Command {
    if from == Net::ROOT {
        Command::new(program)
    } else {
        net.host(from).unwrap().command(program)
    }
}

/// What a probe is expected to print.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// `ok`: connected, and the echo came back.
    Open,
    /// `timeout`: the connection was not established in time.
    Cut,
}

use Outcome::{Cut, Open};

/// Runs every probe `(from, to, expected)` at once (from inside `from`'s
/// namespace, to `to`'s echo server) and panics listing every one whose
/// outcome was not the expected one.
fn expect(net: &Net, step: &str, probes: &[(&str, &str, Outcome)]) {
    let children: Vec<_> = probes
        .iter()
        .map(|&(from, to, want)| {
            let timeout = if want == Open {
                OK_TIMEOUT
            } else {
                CUT_TIMEOUT
            };
            command_in(net, from, python())
                .args(["-c", PROBE, &net.addr(to).unwrap().to_string()])
                .args([&PORT.to_string(), timeout])
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn a probe")
        })
        .collect();
    let mut wrong = Vec::new();
    for (child, &(from, to, want)) in children.into_iter().zip(probes) {
        let out = child.wait_with_output().expect("wait for a probe");
        let got = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let want_text = if want == Open { "ok" } else { "timeout" };
        if got != want_text {
            wrong.push(format!("{from} -> {to}: expected {want_text}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{step}:\n  {}", wrong.join("\n  "));
}

/// Sends datagrams from `from` to `to`'s server.
fn send_datagrams(net: &Net, from: &str, to: &str) {
    let status = command_in(net, from, python())
        .args(["-c", DATAGRAMS, &net.addr(to).unwrap().to_string()])
        .arg(PORT.to_string())
        .status()
        .expect("run the datagram sender");
    assert!(status.success(), "datagram sender {from} -> {to}: {status}");
}

/// The addresses host `at`'s server got datagrams from (asked from the
/// root namespace).
fn seen_by(net: &Net, at: &str) -> Vec<Ipv4Addr> {
    let mut s = connect(net.addr(at).unwrap());
    s.write_all(b"SEEN\n").unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    answer
        .split_whitespace()
        .map(|a| a.parse().unwrap())
        .collect()
}

fn connect(addr: Ipv4Addr) -> TcpStream {
    let s = TcpStream::connect_timeout(&SocketAddr::from((addr, PORT)), DEADLINE)
        .unwrap_or_else(|e| panic!("connect to {addr}:{PORT}: {e}"));
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// How long the root namespace takes to fetch `bytes` from `at`'s server.
fn fetch(net: &Net, at: &str, bytes: usize) -> Duration {
    let start = Instant::now();
    let mut s = connect(net.addr(at).unwrap());
    s.write_all(format!("SEND {bytes}\n").as_bytes()).unwrap();
    let mut got = Vec::with_capacity(bytes);
    s.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), bytes, "fetched from {at}");
    start.elapsed()
}

/// Starts the echo server in `host` and waits until the root namespace
/// reaches it.
fn start_server(net: &Net, host: &str) -> ChildProcess {
    let mut cmd = net.host(host).unwrap().command(python());
    cmd.args(["-c", SERVER, &PORT.to_string()]);
    let mut server = ChildProcess::spawn(&mut cmd, &format!("echo server in {host}"));
    let addr = SocketAddr::from((net.addr(host).unwrap(), PORT));
    server
        .wait_for(DEADLINE, Duration::from_millis(20), || {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1))
                .ok()
                .map(drop)
        })
        .unwrap_or_else(|e| panic!("echo server in {host} never answered: {e:?}"));
    server
}

/// The names of every namespace and root-namespace link whose name starts
/// with `tag`.
fn leftovers(tag: &str) -> Vec<String> {
    let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let links = Command::new("ip")
        .args(["-o", "link", "show"])
        .output()
        .unwrap();
    let netns = String::from_utf8_lossy(&netns.stdout).into_owned();
    let links = String::from_utf8_lossy(&links.stdout).into_owned();
    let mut found: Vec<String> = netns
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(tag))
        .map(str::to_owned)
        .collect();
    // `ip -o link` lines: "7: NAME@PEER: <FLAGS> ...".
    found.extend(
        links
            .lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n))
            .filter(|n| n.starts_with(tag))
            .map(str::to_owned),
    );
    found
}

#[test]
fn faults_cut_isolate_and_slow_links_and_heal_and_drop_removes_everything() {
    if !can_run() {
        return;
    }
    let net = Net::with_prefix("stkm", &["a", "b", "c"]).unwrap();
    let tag = net.tag().to_owned();
    let root = Net::ROOT;
    assert_eq!(net.addr(root).unwrap(), net.root_addr());
    assert_eq!(
        leftovers(&tag).len(),
        5,
        "4 namespaces and the root link exist: {:?}",
        leftovers(&tag)
    );
    assert!(matches!(net.cut("a", "a"), Err(NetError::SameEndpoint(_))));
    assert!(matches!(net.cut("a", "zz"), Err(NetError::UnknownHost(_))));

    let server_a = start_server(&net, "a");
    let server_b = start_server(&net, "b");
    let everything_open = [
        (root, "a", Open),
        (root, "b", Open),
        ("a", "b", Open),
        ("b", "a", Open),
        ("c", "a", Open),
        ("c", "b", Open),
    ];
    expect(&net, "at first", &everything_open);

    // A cut drops both directions between a and b, and nothing else.
    net.cut("a", "b").unwrap();
    net.cut("b", "a").unwrap(); // the same fault again: no change
    expect(
        &net,
        "cut(a, b)",
        &[
            ("a", "b", Cut),
            ("b", "a", Cut),
            (root, "a", Open),
            (root, "b", Open),
            ("c", "a", Open),
            ("c", "b", Open),
        ],
    );
    assert!(net.dropped_to("b").unwrap() > 0, "the cut dropped packets");
    net.heal("a", "b").unwrap();
    expect(&net, "heal(a, b)", &everything_open);

    // One way: packets from a to b are dropped, b to a pass. TCP needs
    // both directions, so connections fail either way (a's SYN is
    // dropped; b's SYN reaches a, a's SYN-ACK is dropped). Datagrams show
    // the direction: b's reach a, a's do not reach b.
    net.cut_one_way("a", "b").unwrap();
    assert!(net.blocked("a", "b").unwrap());
    assert!(!net.blocked("b", "a").unwrap());
    expect(
        &net,
        "cut_one_way(a, b)",
        &[
            ("a", "b", Cut),
            ("b", "a", Cut),
            (root, "a", Open),
            (root, "b", Open),
        ],
    );
    send_datagrams(&net, "a", "b");
    let (addr_a, addr_b) = (net.addr("a").unwrap(), net.addr("b").unwrap());
    wait_until(DEADLINE, "a gets b's datagrams", || {
        send_datagrams(&net, "b", "a");
        seen_by(&net, "a").contains(&addr_b)
    });
    // a's datagrams were sent before b's arrived at a, on the same bridge.
    assert!(
        !seen_by(&net, "b").contains(&addr_a),
        "a datagram from a reached b through the one-way cut"
    );
    net.heal_one_way("a", "b").unwrap();
    wait_until(DEADLINE, "b gets a's datagrams once healed", || {
        send_datagrams(&net, "a", "b");
        seen_by(&net, "b").contains(&addr_a)
    });
    expect(&net, "heal_one_way(a, b)", &everything_open);

    // Isolation: a is cut off from every host and from this process.
    net.isolate("a").unwrap();
    expect(
        &net,
        "isolate(a)",
        &[
            (root, "a", Cut),
            ("b", "a", Cut),
            ("c", "a", Cut),
            ("a", "b", Cut),
            (root, "b", Open),
            ("c", "b", Open),
        ],
    );
    net.heal_isolation("a").unwrap();
    expect(&net, "heal_isolation(a)", &everything_open);

    // Faults are healed independently: ending the isolation keeps the cut.
    net.cut("a", "b").unwrap();
    net.isolate("a").unwrap();
    net.heal_isolation("a").unwrap();
    expect(
        &net,
        "cut(a, b), isolate(a), heal_isolation(a)",
        &[
            ("a", "b", Cut),
            ("b", "a", Cut),
            (root, "a", Open),
            ("c", "a", Open),
        ],
    );
    net.heal_all().unwrap();
    expect(&net, "heal_all", &everything_open);

    // A slow link: 2 Mbit/s with a 20-packet queue. 256 KiB take at least
    // 1.05 s through it (2,097,152 bits / 2,000,000 bit/s); unshaped, on a
    // bridge, a few milliseconds.
    let bytes = 256 * 1024;
    let fast = fetch(&net, "a", bytes);
    net.slow(root, "a", 2_000_000, 20).unwrap();
    net.slow(root, "a", 2_000_000, 20).unwrap(); // again: no change
    let slow = fetch(&net, "a", bytes);
    let b_meanwhile = fetch(&net, "b", bytes);
    net.heal(root, "a").unwrap();
    let healed = fetch(&net, "a", bytes);
    eprintln!("256 KiB: {fast:?} fast, {slow:?} at 2 Mbit/s, {healed:?} healed, {b_meanwhile:?} from b meanwhile");
    assert!(
        slow >= Duration::from_millis(900),
        "256 KiB at 2 Mbit/s took only {slow:?}"
    );
    assert!(
        slow > fast * 4 && slow > healed * 4 && slow > b_meanwhile * 4,
        "the slow link is not slower: {slow:?} vs {fast:?} before, {healed:?} after, {b_meanwhile:?} from b"
    );

    // A lossy link: one packet in 4 from a to the root namespace is
    // dropped; TCP retransmits them and the transfer completes.
    let dropped_before = net.dropped_to(root).unwrap();
    net.lossy_one_way("a", root, 4).unwrap();
    let lossy = fetch(&net, "a", bytes);
    expect(&net, "lossy_one_way(a, root, 4)", &[(root, "a", Open)]);
    let lost = net.dropped_to(root).unwrap() - dropped_before;
    net.heal_one_way("a", root).unwrap();
    eprintln!("256 KiB through a link losing 1 in 4: {lossy:?}, {lost} packets lost");
    assert!(lost > 0, "the lossy link lost nothing");
    let before_heal = net.dropped_to(root).unwrap();
    fetch(&net, "a", bytes);
    assert_eq!(
        net.dropped_to(root).unwrap(),
        before_heal,
        "healed: no loss"
    );

    // Dropping the network kills what runs in it and removes every
    // namespace and link.
    let pids = [server_a.pid(), server_b.pid()];
    drop(net);
    assert_eq!(leftovers(&tag), Vec::<String>::new(), "left after drop");
    for pid in pids {
        wait_until(DEADLINE, "the echo servers are killed", || !pid_alive(pid));
    }
}

/// Set for the child process of `leftovers_of_a_dead_run_are_removed_and_a_live_runs_kept`.
const LEAK_ENV: &str = "STICKY_NETNS_LEAK_PREFIX";

/// Not a test of its own: run by the next test in a child process, it
/// creates a network with a process in it and exits without removing
/// them, like a crashed run.
#[test]
#[ignore = "run by leftovers_of_a_dead_run_are_removed_and_a_live_runs_kept"]
fn leak_a_net() {
    let Ok(prefix) = std::env::var(LEAK_ENV) else {
        return;
    };
    let net = Net::with_prefix(&prefix, &["h"]).unwrap();
    let sleeper = net
        .host("h")
        .unwrap()
        .command("sleep")
        .arg("600")
        // Not our stdout: the parent reads it to the end.
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    println!("LEAKED {} {}", net.tag(), sleeper.id());
    // Left running on purpose, like the namespaces.
    std::mem::forget(sleeper);
    std::mem::forget(net);
}

#[test]
fn leftovers_of_a_dead_run_are_removed_and_a_live_runs_kept() {
    if !can_run() {
        return;
    }
    let prefix = "stkl";
    let live = Net::with_prefix(prefix, &["h"]).unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "leak_a_net", "--ignored", "--nocapture"])
        .env(LEAK_ENV, prefix)
        .output()
        .unwrap();
    assert!(out.status.success(), "the leaking child failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("LEAKED "))
        .unwrap_or_else(|| panic!("no LEAKED line in {stdout}"));
    let (tag, pid) = line.split_once(' ').unwrap();
    let sleeper: u32 = pid.parse().unwrap();
    assert!(pid_alive(sleeper), "the leaked process runs");
    assert_eq!(
        leftovers(tag).len(),
        3,
        "two namespaces and the root link leaked: {:?}",
        leftovers(tag)
    );

    // A new run with the prefix removes them (their creator is gone) ...
    let removed = Net::remove_leftovers(prefix).unwrap();
    assert_eq!(removed, 3, "the root link and two namespaces");
    assert_eq!(leftovers(tag), Vec::<String>::new(), "left after cleanup");
    wait_until(DEADLINE, "the leaked process is killed", || {
        !pid_alive(sleeper)
    });

    // ... but not those of a run whose creator lives.
    assert_eq!(leftovers(live.tag()).len(), 3, "the live run was kept");
    let server = start_server(&live, "h");
    expect(&live, "the live run still works", &[(Net::ROOT, "h", Open)]);
    drop(server);
}

#[test]
fn runs_at_once_get_their_own_names_and_subnets() {
    if !can_run() {
        return;
    }
    let nets: Vec<Net> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..3)
            .map(|_| s.spawn(|| Net::with_prefix("stkp", &["x", "y"]).unwrap()))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, a) in nets.iter().enumerate() {
        for b in &nets[i + 1..] {
            assert_ne!(a.tag(), b.tag());
            assert_ne!(a.subnet(), b.subnet());
        }
    }
    // Each run's hosts reach each other and the root namespace.
    for net in &nets {
        let _server = start_server(net, "y");
        expect(net, "a run among others", &[("x", "y", Open)]);
        net.cut("x", "y").unwrap();
        expect(
            net,
            "a cut in a run among others",
            &[("x", "y", Cut), (Net::ROOT, "y", Open)],
        );
    }
}

/// What a probe from `from` to `addr`'s echo server prints.
fn probe_addr(net: &Net, from: &str, addr: Ipv4Addr, want: Outcome) -> String {
    let timeout = if want == Open {
        OK_TIMEOUT
    } else {
        CUT_TIMEOUT
    };
    let out = command_in(net, from, python())
        .args(["-c", PROBE, &addr.to_string(), &PORT.to_string(), timeout])
        .output()
        .expect("run a probe");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn further_addresses_of_a_host_are_cut_like_its_first() {
    if !can_run() {
        return;
    }
    let mut net = Net::with_prefix("stkx", &["a", "b"]).unwrap();
    // A document's addresses, only inside the run's namespaces.
    let (xa, xb) = (Ipv4Addr::new(10, 0, 0, 11), Ipv4Addr::new(10, 0, 0, 12));
    let refused = |r: Result<(), NetError>| matches!(r, Err(NetError::InvalidAddr { .. }));
    assert!(refused(net.add_addr(Net::ROOT, xa, 24)), "never the root");
    net.add_addr("a", xa, 24).unwrap();
    net.add_addr("b", xb, 24).unwrap();
    assert!(refused(net.add_addr("b", xa, 24)), "a has it");
    let _server = start_server(&net, "b");
    // From a's further address (the route to 10.0.0.0/24 picks it) to b's.
    assert_eq!(probe_addr(&net, "a", xb, Open), "ok");

    net.cut("a", "b").unwrap();
    assert_eq!(probe_addr(&net, "a", xb, Cut), "timeout", "cut, further");
    assert_eq!(
        probe_addr(&net, "a", net.addr("b").unwrap(), Cut),
        "timeout",
        "cut, first"
    );
    assert!(net.dropped_to("b").unwrap() > 0);
    assert!(
        refused(net.add_addr("a", Ipv4Addr::new(10, 0, 0, 21), 24)),
        "not once a fault is installed"
    );
    net.heal_all().unwrap();
    assert_eq!(probe_addr(&net, "a", xb, Open), "ok", "healed");

    net.isolate("b").unwrap();
    assert_eq!(probe_addr(&net, "a", xb, Cut), "timeout", "isolated");
    net.heal_isolation("b").unwrap();
    assert_eq!(probe_addr(&net, "a", xb, Open), "ok", "isolation healed");
}
