//! `sticky up --directors 2`: two director processes serve the same shop
//! from the same cluster file; a client can use either (its cookies work
//! on both); the state file, `sticky status` and each director's
//! `/api/cluster` list both; a drain asked on one director shows on both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;

use serde_json::Value;
use sticky_test_support::{http_request, wait_until, CookieJar, Sticky, UpProcess, DEADLINE};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

fn cluster(admin: SocketAddr) -> Value {
    http_request(admin, "GET", "/api/cluster", &[], None)
        .unwrap_or_else(|e| panic!("GET /api/cluster on {admin}: {e}"))
        .json_ok()
}

fn admin_state(admin: SocketAddr, server: &str) -> String {
    cluster(admin)["servers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == server)
        .map(|s| s["admin"].as_str().unwrap_or("").to_owned())
        .unwrap_or_default()
}

#[test]
fn two_directors_serve_the_shop_and_share_admin_state_changes() {
    let mut up = UpProcess::start(
        STICKY,
        &[
            "--directors",
            "2",
            "--web",
            "2",
            "--standby",
            "0",
            "--stores",
            "2",
        ],
    );
    up.wait_all_up();
    let shop1 = up.shop();
    let admin1 = up.admin();
    // Director 2: PORT+3 and PORT+4 (`sticky up --port` documents it).
    let shop2 = SocketAddr::new(shop1.ip(), shop1.port() + 3);
    let admin2 = SocketAddr::new(shop1.ip(), shop1.port() + 4);

    // The table, the state file and `sticky status` list both directors.
    let table = up.table();
    let directors: Vec<(&str, SocketAddr)> = table
        .iter()
        .filter(|r| r.1 == "director")
        .map(|r| (r.0.as_str(), r.2))
        .collect();
    assert_eq!(
        directors,
        [("director", shop1), ("director2", shop2)],
        "{}",
        up.stdout_text()
    );
    let status = up.status_json();
    for name in ["director", "director2"] {
        let row = up.status_of(name);
        assert_eq!(row["role"], "director", "{status:#}");
        assert_eq!(row["state"], "up", "{status:#}");
    }
    assert_eq!(status["directors"][0]["name"], "director2", "{status:#}");
    let listed: Vec<Value> = cluster(admin2)["directors"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 2);
    assert_eq!(listed[0]["name"], "director2");
    assert_eq!(listed[0]["this"], true);
    assert_eq!(listed[1]["admin"], admin1.to_string());

    // Both serve the shop; a session started on one goes on on the other
    // (same cookies, same route).
    wait_until(DEADLINE, "director2 sees every web server up", || {
        cluster(admin2)["director"]["servers_up"] == 2
    });
    let mut jar = CookieJar::new();
    let first = jar.add_item(shop1, "apple");
    let second = jar.add_item(shop2, "pear");
    assert_eq!(
        second.server, first.server,
        "the route cookie from director 1 routes on director 2"
    );
    let cart = jar.cart(shop1);
    let items = cart.json["items"].to_string();
    assert!(
        items.contains("apple") && items.contains("pear"),
        "{:#}",
        cart.json
    );

    // A drain asked on director 2 shows on director 1, and back.
    let token = format!("Bearer {}", up.token());
    let r = http_request(
        admin2,
        "POST",
        "/api/servers/ws1/drain",
        &[("Authorization", &token)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("sticky-peers-failed"), None, "{r:?}");
    assert_eq!(admin_state(admin2, "ws1"), "draining");
    assert_eq!(admin_state(admin1, "ws1"), "draining");
    let r = http_request(
        admin1,
        "POST",
        "/api/servers/ws1/enable",
        &[("Authorization", &token)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(admin_state(admin1, "ws1"), "enabled");
    assert_eq!(admin_state(admin2, "ws1"), "enabled");

    // Director 2 killed: director 1 still applies a drain, says which
    // peer missed it, and shows director 2 down; `sticky status` too.
    let r = http_request(
        up.supervisor(),
        "POST",
        "/api/processes/director2/kill",
        &[("Authorization", &token)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = http_request(
        admin1,
        "POST",
        "/api/servers/ws2/drain",
        &[("Authorization", &token)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.header("sticky-peers-failed"), Some("director2"), "{r:?}");
    assert_eq!(admin_state(admin1, "ws2"), "draining");
    wait_until(DEADLINE, "director 1 sees director 2 down", || {
        cluster(admin1)["directors"][1]["up"] == false
    });
    assert_ne!(up.status_of("director2")["state"], "up");
    assert_eq!(up.status_of("director")["state"], "up");
    // Shoppers keep going through director 1.
    let third = jar.add_item(shop1, "plum");
    assert_eq!(third.server, first.server);

    let exit = up.interrupt();
    assert!(exit.success(), "{exit:?}");
}

/// Issue 14, item 1 (and 4): clients that drop their route cookie, come
/// back with old cookies, send another server's route cookie, and switch
/// between two directors never read back in time. The session decides
/// where a request goes (a non-owner answers 421 naming the owner, and
/// the director re-sends the request there), the route cookie only hints.
#[test]
fn dropped_replayed_and_swapped_route_cookies_never_read_back_in_time() {
    const ROUTE: &str = "sticky.route";
    let up = UpProcess::start(STICKY, &["--directors", "2"]);
    up.wait_all_up();
    let d1 = up.shop();
    let d2 = SocketAddr::new(d1.ip(), d1.port() + 3);
    let counter = |jar: &mut CookieJar, addr: SocketAddr, method: &str| {
        let r = jar.request(addr, method, "/api/counter", None);
        assert_eq!(r.status, 200, "{r:?}");
        sticky_test_support::Answer::from(&r)
    };
    // Another client's route cookie, naming some server.
    let mut other = CookieJar::new();
    counter(&mut other, d1, "POST");
    let foreign_route = other.cookies.get(ROUTE).cloned().expect("a route cookie");

    for client in 0..12 {
        let mut jar = CookieJar::new();
        assert_eq!(counter(&mut jar, d1, "POST").value, 1);
        let old = jar.clone();
        // Two changes without the route cookie, through the other director.
        for want in 2..=3 {
            let mut bare = jar.clone();
            bare.cookies.remove(ROUTE);
            let a = counter(&mut bare, d2, "POST");
            assert_eq!(a.value, want, "client {client}: {:?}", a.json);
            jar = bare;
        }
        // Back with the old cookies, on either director: never 1.
        for d in [d1, d2] {
            let mut replay = old.clone();
            let a = counter(&mut replay, d, "GET");
            assert_eq!(
                a.value, 3,
                "client {client} read back in time: {:?}",
                a.json
            );
        }
        // Another client's route cookie: the session still decides.
        let mut swapped = jar.clone();
        swapped
            .cookies
            .insert(ROUTE.to_owned(), foreign_route.clone());
        assert_eq!(
            counter(&mut swapped, d2, "POST").value,
            4,
            "client {client}"
        );
        let mut replay = old.clone();
        assert_eq!(counter(&mut replay, d1, "GET").value, 4, "client {client}");
    }
}
