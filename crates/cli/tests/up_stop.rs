//! A web server told to stop (`SIGTERM`) in a `sticky up` cluster, with
//! stores that do not answer (`SIGSTOP`): its clients move at once to the
//! servers that take its sessions over, instead of getting its `503`s
//! until the process is gone, and the process exits on its own, also when
//! writes fail while it stops (session 24: a reclaim loop spun one of its
//! threads for good, and `sticky up` killed it after 5 s).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use sticky_test_support::{signal, wait_until, CookieJar, Paused, Sticky, UpProcess, DEADLINE};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// New clients: enough that every web server gets some.
const SHOPPERS: usize = 9;

struct Shopper {
    jar: CookieJar,
    item: String,
    server: String,
}

/// `SHOPPERS` new clients add an item each; returns them and the server
/// that hosts the first one's session (the victim).
fn go_shopping(up: &UpProcess) -> (Vec<Shopper>, String) {
    let shoppers: Vec<Shopper> = (0..SHOPPERS)
        .map(|i| {
            let mut jar = CookieJar::new();
            let item = format!("item-{i}");
            let a = jar.add_item(up.shop(), &item);
            assert_eq!(a.items(), vec![item.clone()], "shopper {i}");
            Shopper {
                jar,
                item,
                server: a.server,
            }
        })
        .collect();
    let victim = shoppers[0].server.clone();
    (shoppers, victim)
}

/// The stores' names and addresses, in the order `sticky up` lists them.
fn stores(up: &UpProcess) -> Vec<(String, SocketAddr)> {
    let stores: Vec<(String, SocketAddr)> = up
        .table()
        .into_iter()
        .filter(|(_, role, _, _)| role == "store")
        .map(|(name, _, addr, _)| (name, addr))
        .collect();
    assert_eq!(stores.len(), 3, "{stores:?}");
    stores
}

fn log_of(up: &UpProcess, name: &str) -> String {
    std::fs::read_to_string(up.dir.join("logs").join(format!("{name}.log"))).unwrap_or_default()
}

/// With one store paused, a web server's stop waits up to a store timeout
/// for that store to confirm the end of its lease. Meanwhile every request
/// for one of its sessions is answered by another server (its failover
/// server claims the session from the two live stores), not with the
/// stopping server's `503`: the refusal carries `sticky-stopping`, on which
/// the director marks it down and re-sends the request.
#[test]
fn a_stopping_web_server_hands_its_clients_over_at_once() {
    let up = UpProcess::start(STICKY, &[]);
    up.wait_all_up();
    let (mut shoppers, victim) = go_shopping(&up);
    // PIDs first: `sticky status` waits for paused stores.
    let pid = up.pid_of(&victim);
    let paused = up.pid_of(&stores(&up)[0].0);
    let _paused = Paused::stop(&[paused]);

    signal(pid, "TERM");
    wait_until(
        DEADLINE,
        &format!("{victim} logs that it received the signal"),
        || log_of(&up, &victim).contains("shutdown signal received"),
    );
    let mut moved = 0;
    for (i, s) in shoppers.iter_mut().enumerate() {
        if s.server != victim {
            continue;
        }
        let r = s
            .jar
            .try_request(up.shop(), "GET", "/api/cart", None)
            .unwrap_or_else(|e| panic!("shopper {i}: GET /api/cart: {e}"));
        assert_eq!(
            r.status, 200,
            "shopper {i} of the stopping {victim} got an error instead of another server: {r:?}"
        );
        let a = sticky_test_support::Answer::from(&r);
        assert_eq!(a.items(), vec![s.item.clone()], "shopper {i}");
        assert_ne!(a.server, victim, "shopper {i}");
        moved += 1;
    }
    assert!(moved >= 1, "no shopper on {victim}");
    // The requests above must have met the stop under way, or they prove
    // nothing: the stop still waits for the paused store (a store timeout,
    // 1 s) while they run.
    assert!(
        !log_of(&up, &victim).contains("web server stopped"),
        "{victim} finished stopping before its clients asked: the test proved nothing"
    );
    wait_until(DEADLINE, &format!("{victim} exits"), || {
        up.status_of(&victim)["process"] == "exited"
    });
}

/// With two of the three stores paused, a write cannot reach the two
/// stores it needs; a web server told to stop while such writes are under
/// way sees them fail after its stop began. It still exits on its own.
#[test]
fn a_web_server_stopped_while_its_writes_fail_exits_on_its_own() {
    let up = UpProcess::start(STICKY, &[]);
    up.wait_all_up();
    let (shoppers, victim) = go_shopping(&up);
    let stores = stores(&up);
    // PIDs first: `sticky status` waits for paused stores.
    let pid = up.pid_of(&victim);
    let pids: Vec<u32> = stores[1..].iter().map(|(n, _)| up.pid_of(n)).collect();
    let _paused = Paused::stop(&pids);
    let shop = up.shop();
    let writers: Vec<_> = shoppers
        .into_iter()
        .filter(|s| s.server == victim)
        .enumerate()
        .map(|(i, mut s)| {
            std::thread::spawn(move || {
                let body = serde_json::json!({ "item": format!("more-{i}") });
                // Its answer does not matter (a 503: the write cannot be
                // made sure); only that it was under way at the stop.
                let _ = s
                    .jar
                    .try_request(shop, "POST", "/api/cart/items", Some(&body));
            })
        })
        .collect();
    assert!(!writers.is_empty(), "no shopper on {victim}");
    // The director has a request at the victim: a write, which waits for
    // the paused stores up to the store timeout (1 s), so the stop begins
    // while it is under way and it fails after.
    let active = || {
        up.cluster()["servers"]
            .as_array()
            .and_then(|ss| ss.iter().find(|s| s["name"] == victim.as_str()))
            .and_then(|s| s["active"].as_u64())
            .unwrap_or(0)
    };
    wait_until(DEADLINE, "a write under way at the victim", || active() > 0);
    signal(pid, "TERM");
    for w in writers {
        w.join().expect("a writer thread panicked");
    }
    wait_until(DEADLINE, &format!("{victim} exits on its own"), || {
        up.status_of(&victim)["process"] == "exited"
    });
    let log = log_of(&up, &victim);
    assert!(
        log.contains("web server stopped"),
        "{victim} did not finish its shutdown:\n{log}"
    );
    assert!(
        !log.contains("panicked"),
        "{victim} panicked while stopping:\n{log}"
    );
}
