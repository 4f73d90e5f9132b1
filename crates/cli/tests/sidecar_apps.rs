//! The sidecar (`sticky web --app URL`, docs/sidecar.md) in front of the
//! example apps, all real processes: the Python/Flask shop
//! (`examples/python`) and the Node/Express one (`examples/node`).
//!
//! For each app: a session survives `kill -9` of its app (the sidecar
//! answers 502 meanwhile and still has it cached) and of its sidecar
//! (another sidecar takes it over), R=1 and R=2; a store kill loses
//! nothing; a forged cookie never reaches a store and a client cannot
//! inject session data; an oversized session is refused with 413 and
//! nothing is stored; concurrent requests of one session lose no change;
//! login gives a new id and logout destroys the session; stores that are
//! down are a 503 from the sidecar, and the app never runs.
//!
//! Skipped loudly when python3/Flask or node/Express is missing, except
//! when `CI` is set.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use serde_json::json;
use sticky_test_support::{
    http_request, random_hex, sess_command_calls, sess_get, sign_cookie, Answer, AppKind,
    AppProcess, Browser, ClusterConfig, Sticky, StoreProcess, WebProcess,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Stores, a cluster file, and one app behind one sidecar per web server.
struct Shop {
    // Dropped in this order: sidecars, apps, stores.
    webs: Vec<WebProcess>,
    apps: Vec<AppProcess>,
    stores: Vec<StoreProcess>,
    config: ClusterConfig,
}

impl Shop {
    /// `stores` stores, web servers `webs` each as a sidecar (sessions
    /// under `/api/`) in front of its own `kind` app; R=`replicas`.
    fn start(
        kind: AppKind,
        stores: usize,
        webs: &[&str],
        replicas: usize,
        configure: impl FnOnce(ClusterConfig) -> ClusterConfig,
    ) -> Shop {
        let stores: Vec<StoreProcess> = (0..stores)
            .map(|_| StoreProcess::start(STICKY, &[]))
            .collect();
        let addrs: Vec<_> = stores.iter().map(StoreProcess::addr).collect();
        // The apps first: listening, their ports cannot be handed to a web
        // server below (a web server's configured port is only reserved
        // once it binds it, and its peers probe it there).
        let apps: Vec<AppProcess> = webs.iter().map(|_| AppProcess::start(kind)).collect();
        let config = configure(
            ClusterConfig::new(&addrs, webs)
                .replicas(replicas)
                .session("store_timeout_ms", "3000"),
        )
        .write();
        let webs = webs
            .iter()
            .zip(&apps)
            .map(|(name, app)| sidecar(&config, name, app))
            .collect();
        Shop {
            webs,
            apps,
            stores,
            config,
        }
    }

    fn web(&self, i: usize) -> std::net::SocketAddr {
        self.webs[i].addr()
    }

    fn store_addrs(&self) -> Vec<std::net::SocketAddr> {
        self.stores.iter().map(StoreProcess::addr).collect()
    }

    /// How many stores hold a live copy of session `id` with counter `n`.
    fn copies_with_counter(&self, id: &str, n: u64) -> usize {
        self.store_addrs()
            .iter()
            .filter_map(|a| sess_get(*a, id))
            .filter(|c| c.live && c.counter() == n)
            .count()
    }
}

fn sidecar(config: &ClusterConfig, name: &str, app: &AppProcess) -> WebProcess {
    WebProcess::start_with(
        STICKY,
        config.path(),
        name,
        &["--app", &app.url(), "--session-prefix", "/api/"],
    )
}

fn b64(json: &serde_json::Value) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json.to_string())
}

/// Increments on ws1; `kill -9` of ws1's app (502, nothing lost, the app
/// back on its port finds the session still cached); `kill -9` of ws1 (ws2
/// takes the session over from the stores).
fn survives_kill9_of_app_and_sidecar(kind: AppKind, replicas: usize) {
    let mut shop = Shop::start(kind, replicas + 1, &["ws1", "ws2"], replicas, |c| c);
    let (ws1, ws2) = (shop.web(0), shop.web(1));
    let mut b = Browser::new();
    let mut last = None;
    for i in 1..=3 {
        let a = b.increment(ws1);
        assert_eq!(
            (a.value, a.server.as_str(), a.source.as_str()),
            (i, "ws1", if i == 1 { "new" } else { "cache" }),
            "{a:?}"
        );
        if let Some(prev) = &last {
            let prev: &Answer = prev;
            assert!(a.stamp > prev.stamp, "{a:?} after {prev:?}");
        }
        last = Some(a);
    }
    let id = b.id();
    assert_eq!(
        shop.copies_with_counter(&id, 3),
        replicas,
        "sync mode: the answer left only once {replicas} stores had it"
    );
    let read = b.counter(ws1);
    assert_eq!(
        (read.value, read.source.as_str(), read.stamp),
        (3, "cache", last.as_ref().unwrap().stamp),
        "a read carries the stamp it found"
    );

    // The app dies: a clear 502, nothing changes.
    let port = shop.apps[0].port();
    shop.apps[0].kill9();
    let r = b.post(ws1, "/api/counter", None);
    assert_eq!(r.status, 502, "{r:?}");
    assert!(r.text().contains("not answering"), "{}", r.text());
    // Back on its port: the session is still in ws1's cache.
    shop.apps[0] = AppProcess::start_on(kind, port);
    let a = b.increment(ws1);
    assert_eq!(
        (a.value, a.server.as_str(), a.source.as_str()),
        (4, "ws1", "cache"),
        "{a:?}"
    );

    // The sidecar dies: ws2 takes the session over.
    shop.webs[0].kill9();
    let a = b.increment(ws2);
    assert_eq!(
        (a.value, a.server.as_str(), a.source.as_str()),
        (5, "ws2", "store"),
        "{a:?}"
    );
    let a = b.increment(ws2);
    assert_eq!((a.value, a.source.as_str()), (6, "cache"), "{a:?}");
    assert_eq!(shop.copies_with_counter(&id, 6), replicas);
    shop.webs[1].assert_no_panic();
}

/// R=2: a store killed under a session loses none of its changes, on its
/// host and after a takeover.
fn a_store_kill_loses_nothing(kind: AppKind) {
    let mut shop = Shop::start(kind, 3, &["ws1", "ws2"], 2, |c| c);
    let (ws1, ws2) = (shop.web(0), shop.web(1));
    let mut b = Browser::new();
    for i in 1..=3 {
        assert_eq!(b.increment(ws1).value, i);
    }
    let r = b.post(ws1, "/api/cart/items", Some(&json!({"item": "apple"})));
    assert_eq!(Answer::from(&r).items(), ["apple"]);
    let id = b.id();
    // Kill a store that holds it.
    let holder = shop
        .stores
        .iter()
        .position(|s| sess_get(s.addr(), &id).is_some())
        .expect("a store holds the session");
    shop.stores[holder].kill9();
    for i in 4..=6 {
        let a = b.increment(ws1);
        assert_eq!((a.value, a.source.as_str()), (i, "cache"), "{a:?}");
    }
    shop.webs[0].kill9();
    let a = b.counter(ws2);
    assert_eq!(
        (a.value, a.server.as_str(), a.source.as_str()),
        (6, "ws2", "store"),
        "{a:?}"
    );
    let cart = Answer::from(&b.get(ws2, "/api/cart"));
    assert_eq!(cart.items(), ["apple"]);
}

/// Forged cookies get a new session and cost no store lookup; the
/// `sticky-session*` headers a client sends never reach the app.
fn a_forged_cookie_never_reaches_a_store(kind: AppKind) {
    let shop = Shop::start(kind, 2, &["ws1"], 2, |c| c);
    let ws1 = shop.web(0);
    let mut real = Browser::new();
    real.increment(ws1);
    let cookie = real.cookie.clone().unwrap();
    let id = real.id();
    let other_secret = format!("another-secret-{}", random_hex(40));
    let forged = [
        sign_cookie(&other_secret, &id),
        format!("{id}.{}", "0".repeat(32)),
        format!("{}.{}", random_hex(32), &cookie[33..]),
        "garbage".to_owned(),
        "x".repeat(2000),
    ];
    let before: Vec<_> = shop
        .store_addrs()
        .iter()
        .map(|a| sess_command_calls(*a))
        .collect();
    for value in &forged {
        let mut b = Browser::with_cookie(value);
        let r = b.get(ws1, "/api/counter");
        let a = Answer::from(&r);
        assert_eq!((a.value, a.source.as_str()), (0, "new"), "{value:?}: {a:?}");
        assert_eq!(r.set_cookie("sticky.sid"), None, "a read stores nothing");
    }
    let after: Vec<_> = shop
        .store_addrs()
        .iter()
        .map(|a| sess_command_calls(*a))
        .collect();
    assert_eq!(before, after, "no forged cookie reached a store");

    // A client's own session headers are dropped: no injected data, no
    // injected stamp or source, no injected changes.
    let injected = b64(&json!({"counter": 1000, "user": "admin"}));
    let cookie_header = format!("sticky.sid={cookie}");
    let headers = [
        ("Cookie", cookie_header.as_str()),
        ("sticky-session", injected.as_str()),
        ("Sticky-Session-Source", "store"),
        ("sticky-session-stamp", "99.99"),
        ("sticky-session-next-stamp", "99.100"),
        ("sticky-session-server", "evil"),
        ("sticky-session-set", injected.as_str()),
        ("sticky-session-action", "destroy"),
    ];
    let r = http_request(ws1, "POST", "/api/counter", &headers, None).unwrap();
    let a = Answer::from(&r);
    assert_eq!(
        (a.value, a.server.as_str(), a.source.as_str()),
        (2, "ws1", "cache"),
        "{a:?}"
    );
    assert!(a.stamp.generation < 99, "{a:?}");
    assert!(
        r.headers
            .iter()
            .all(|(k, _)| !k.to_ascii_lowercase().starts_with("sticky-session")),
        "the client sees none of the app's session headers: {r:?}"
    );
    assert_eq!(real.counter(ws1).value, 2);
}

/// A session over the limit is refused with 413: the stores and the cache
/// keep the previous version, and a new session is not stored at all.
fn an_oversized_session_is_refused_with_413(kind: AppKind) {
    let shop = Shop::start(kind, 2, &["ws1"], 2, |c| c.session("max_size", "\"2KiB\""));
    let ws1 = shop.web(0);
    let big = json!({"text": "x".repeat(3000)});

    // A new session: nothing stored, no cookie.
    let mut fresh = Browser::new();
    let r = fresh.post(ws1, "/api/note", Some(&big));
    assert_eq!(r.status, 413, "{r:?}");
    assert!(r.text().contains("nothing was stored"), "{}", r.text());
    assert_eq!(
        fresh.cookie, None,
        "no session cookie for a refused session"
    );
    let puts: u64 = shop
        .store_addrs()
        .iter()
        .map(|a| sess_command_calls(*a)["sess.put"])
        .sum();
    assert_eq!(puts, 0, "nothing reached a store");

    // An existing session keeps its last version.
    let mut b = Browser::new();
    b.increment(ws1);
    let before = b.increment(ws1);
    let r = b.post(ws1, "/api/note", Some(&big));
    assert_eq!(r.status, 413, "{r:?}");
    let id = b.id();
    assert_eq!(shop.copies_with_counter(&id, 2), 2);
    for a in shop.store_addrs() {
        let copy = sess_get(a, &id).unwrap();
        assert_eq!(copy.stamp, before.stamp, "the stores keep the last version");
        assert!(copy.data().get("note").is_none());
    }
    let a = b.counter(ws1);
    assert_eq!((a.value, a.stamp), (2, before.stamp), "{a:?}");
    // A note that fits is stored.
    let r = b.post(ws1, "/api/note", Some(&json!({"text": "short"})));
    assert_eq!(r.status, 200, "{r:?}");
}

/// Requests of one session at once: each waits for the one before (the
/// sidecar holds the session's lock across the app's call), none is lost.
fn concurrent_requests_lose_no_change(kind: AppKind) {
    let shop = Shop::start(kind, 2, &["ws1"], 2, |c| c);
    let ws1 = shop.web(0);
    let mut b = Browser::new();
    assert_eq!(b.increment(ws1).value, 1);
    let (threads, each) = (4, 10);
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let mut b = b.clone();
            std::thread::spawn(move || {
                (0..each)
                    .map(|_| b.increment(ws1).value)
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut seen: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("a client thread"))
        .collect();
    seen.sort_unstable();
    let want: Vec<u64> = (2..=1 + threads * each).collect();
    assert_eq!(seen, want, "every increment saw the one before");
    let last = 1 + threads * each;
    assert_eq!(b.counter(ws1).value, last);
    assert_eq!(shop.copies_with_counter(&b.id(), last), 2);
}

/// Login gives the session a new id (the old one is destroyed); logout
/// destroys it and removes the cookie; with the stores down, the sidecar
/// answers 503 itself and the app does not run.
fn login_logout_and_stores_down(kind: AppKind) {
    let mut shop = Shop::start(kind, 2, &["ws1", "ws2"], 2, |c| c);
    let ws1 = shop.web(0);
    let mut b = Browser::new();
    b.post(ws1, "/api/cart/items", Some(&json!({"item": "bread"})));
    let old_id = b.id();
    let r = b.post(ws1, "/api/login", Some(&json!({"user": "ann"})));
    let a = Answer::from(&r);
    assert_eq!(a.json["user"], "ann");
    let new_id = b.id();
    assert_ne!(old_id, new_id, "login rotates the id");
    assert_eq!(Answer::from(&b.get(ws1, "/api/cart")).items(), ["bread"]);
    let old = Browser::with_cookie(&sign_cookie(shop.config.secret(), &old_id));
    assert_eq!(old.clone().counter(ws1).source, "new", "the old id is gone");

    let r = b.post(ws1, "/api/logout", None);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(b.cookie, None, "logout removes the cookie");
    let mut gone = Browser::with_cookie(&sign_cookie(shop.config.secret(), &new_id));
    let a = gone.counter(ws1);
    assert_eq!((a.value, a.source.as_str()), (0, "new"), "{a:?}");

    // A session only the stores and ws2 know, and the stores down: ws1
    // cannot load it and answers 503 itself, without calling its app.
    let mut c = Browser::new();
    c.increment(shop.web(1));
    for s in &mut shop.stores {
        s.kill9();
    }
    let r = c.get(ws1, "/api/counter");
    assert_eq!(r.status, 503, "{r:?}");
    assert!(
        r.text().contains("session stores unavailable"),
        "the sidecar's own answer: {}",
        r.text()
    );
    // A new session cannot be stored: 503, no cookie.
    let mut n = Browser::new();
    let r = n.post(ws1, "/api/counter", None);
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(n.cookie, None);
}

/// One `#[test]` per case for the app `$kind`.
macro_rules! app_suite {
    ($kind:expr) => {
        use super::*;

        const KIND: AppKind = $kind;

        #[test]
        fn r1_a_session_survives_kill9_of_its_app_and_its_sidecar() {
            if KIND.available() {
                super::survives_kill9_of_app_and_sidecar(KIND, 1);
            }
        }

        #[test]
        fn r2_a_session_survives_kill9_of_its_app_and_its_sidecar() {
            if KIND.available() {
                super::survives_kill9_of_app_and_sidecar(KIND, 2);
            }
        }

        #[test]
        fn r2_a_store_kill_loses_nothing() {
            if KIND.available() {
                super::a_store_kill_loses_nothing(KIND);
            }
        }

        #[test]
        fn a_forged_cookie_never_reaches_a_store() {
            if KIND.available() {
                super::a_forged_cookie_never_reaches_a_store(KIND);
            }
        }

        #[test]
        fn an_oversized_session_is_refused_with_413_and_nothing_stored() {
            if KIND.available() {
                super::an_oversized_session_is_refused_with_413(KIND);
            }
        }

        #[test]
        fn concurrent_requests_of_one_session_lose_no_change() {
            if KIND.available() {
                super::concurrent_requests_lose_no_change(KIND);
            }
        }

        #[test]
        fn login_rotates_logout_destroys_and_stores_down_is_503() {
            if KIND.available() {
                super::login_logout_and_stores_down(KIND);
            }
        }
    };
}

mod python {
    app_suite!(AppKind::Python);
}

mod node {
    app_suite!(AppKind::Node);
}
