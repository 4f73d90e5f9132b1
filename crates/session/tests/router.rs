//! In-process tests of the session layer, the tower-sessions way: an axum
//! router with [`SessionLayer`], driven request by request with
//! `tower::ServiceExt::oneshot`, against real `sticky_store::Store`s served
//! on port 0 in the same runtime. Store I/O is counted with the stores' own
//! counters ([`Store::snapshot`]).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

mod common;

use axum::body::Body;
use axum::Router;
use common::{app, body, set_cookie, stores, SECRET};
use http::header::{COOKIE, SET_COOKIE};
use http::{Request, StatusCode};
use sticky_proto::control::{EPOCH_HEADER, FENCED_HEADER};
use sticky_session::{Config, SessionManager, StoreSpec};
use sticky_store::{Store, StoreConfig, SESSION_COMMANDS};
use tokio::net::TcpListener;
use tower::ServiceExt;

async fn manager(name: &str, specs: &[StoreSpec], replicas: usize) -> SessionManager {
    let mut config = Config::new(name, SECRET.to_vec(), specs.to_vec());
    config.replicas = replicas;
    // These tests count copies and store calls: a loaded machine's delay
    // must not pass over a store and add a copy (`docs/safety.md` §1).
    config.slow_store = None;
    SessionManager::start(config).await.expect("manager starts")
}

fn request(method: &str, path: &str, cookie: Option<&str>) -> Request<Body> {
    let mut b = Request::builder().method(method).uri(path);
    if let Some(c) = cookie {
        b = b.header(COOKIE, format!("sticky.sid={c}"));
    }
    b.body(Body::empty()).expect("request")
}

/// Session commands each store executed so far.
fn session_calls(stores: &[Store]) -> Vec<[u64; sticky_store::SESSION_COMMANDS.len()]> {
    stores.iter().map(|s| s.snapshot().session_calls).collect()
}

fn calls_of(stores: &[Store], command: &str) -> u64 {
    let i = SESSION_COMMANDS
        .iter()
        .position(|c| *c == command)
        .expect("a session command");
    stores.iter().map(|s| s.snapshot().session_calls[i]).sum()
}

/// A session with `n = 1`, created by `POST /count`; its cookie value.
async fn counted_once(app: &Router) -> String {
    let resp = app
        .clone()
        .oneshot(request("POST", "/count", None))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let cookie = set_cookie(&resp).expect("a new session sets its cookie");
    assert_eq!(body(resp).await, "new:1");
    cookie
}

#[tokio::test]
async fn a_new_session_sets_a_signed_http_only_cookie() {
    let (stores, specs) = stores(2).await;
    let m = manager("ws1", &specs, 2).await;
    let app = app(&m);

    let resp = app
        .clone()
        .oneshot(request("POST", "/count", None))
        .await
        .unwrap();
    let header = resp.headers()[SET_COOKIE].to_str().unwrap().to_owned();
    let value = set_cookie(&resp).unwrap();
    assert_eq!(body(resp).await, "new:1");
    assert_eq!(value.len(), 65, "<32 hex id>.<32 hex MAC>: {value}");
    assert_eq!(
        header,
        format!("sticky.sid={value}; Path=/; HttpOnly; SameSite=Lax")
    );
    assert_eq!(m.sessions(), 1, "the new session is hosted here");

    // A request that does not change a new session stores nothing and
    // sets no cookie.
    let before = session_calls(&stores);
    let resp = app
        .clone()
        .oneshot(request("GET", "/read", None))
        .await
        .unwrap();
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert_eq!(body(resp).await, "new:0");
    assert_eq!(session_calls(&stores), before);
    assert_eq!(m.sessions(), 1);
}

#[tokio::test]
async fn a_cached_read_does_no_store_io() {
    let (stores, specs) = stores(3).await;
    let m = manager("ws1", &specs, 2).await;
    let app = app(&m);
    let cookie = counted_once(&app).await;

    let before = session_calls(&stores);
    let puts_before = calls_of(&stores, "sess.put");
    for _ in 0..5 {
        let resp = app
            .clone()
            .oneshot(request("GET", "/read", Some(&cookie)))
            .await
            .unwrap();
        assert!(resp.headers().get(SET_COOKIE).is_none(), "cookie kept");
        assert_eq!(body(resp).await, "cache:1");
    }
    assert_eq!(
        session_calls(&stores),
        before,
        "reads of a hosted session never reach a store"
    );

    // A write of a cached session goes to the stores, without a new cookie.
    let resp = app
        .clone()
        .oneshot(request("POST", "/count", Some(&cookie)))
        .await
        .unwrap();
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert_eq!(body(resp).await, "cache:2");
    assert_eq!(calls_of(&stores, "sess.put") - puts_before, 2, "R=2");
}

#[tokio::test]
async fn a_write_is_copied_to_exactly_r_stores() {
    for replicas in [1, 2] {
        let (stores, specs) = stores(3).await;
        let m = manager("ws1", &specs, replicas).await;
        let app = app(&m);
        counted_once(&app).await;
        let holding: Vec<u64> = stores.iter().map(|s| s.snapshot().keys).collect();
        assert_eq!(
            holding.iter().filter(|&&k| k == 1).count(),
            replicas,
            "R={replicas}: copies on {holding:?}"
        );
        assert_eq!(holding.iter().sum::<u64>(), replicas as u64);
        assert_eq!(calls_of(&stores, "sess.put"), replicas as u64);
        assert_eq!(
            calls_of(&stores, "sess.get"),
            0,
            "a new session reads nothing"
        );
    }
}

#[tokio::test]
async fn a_second_server_takes_the_session_over_after_the_first_is_gone() {
    let (stores, specs) = stores(3).await;
    let first = manager("ws1", &specs, 2).await;
    let cookie = counted_once(&app(&first)).await;
    // A graceful stop releases its lease: the takeover need not wait.
    first.stop().await;
    drop(first);

    let second = manager("ws2", &specs, 2).await;
    let app = app(&second);
    assert_eq!(second.sessions(), 0);
    // The one store of three that holds no copy (R = 2).
    let bystander = stores
        .iter()
        .position(|s| s.snapshot().keys == 0)
        .expect("R = 2 of 3 stores: one holds no copy");
    // Its session-data commands (its lease renewals go on meanwhile).
    let data_calls = |stores: &[Store]| -> Vec<u64> {
        let calls = session_calls(stores)[bystander];
        ["sess.prepare", "sess.get", "sess.put", "sess.claim"]
            .iter()
            .map(|c| {
                calls[SESSION_COMMANDS
                    .iter()
                    .position(|x| x == c)
                    .expect("a command")]
            })
            .collect()
    };
    let bystander_before = data_calls(&stores);
    let resp = app
        .clone()
        .oneshot(request("POST", "/count", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        resp.headers().get(SET_COOKIE).is_none(),
        "same id, same cookie"
    );
    assert_eq!(body(resp).await, "store:2", "taken over with its data");
    assert_eq!(
        calls_of(&stores, "sess.prepare"),
        2,
        "read and promised at the session's two replicas, a quorum of three"
    );
    assert_eq!(
        data_calls(&stores),
        bystander_before,
        "the store that holds no copy was not asked"
    );
    assert_eq!(
        calls_of(&stores, "sess.get"),
        0,
        "the read is the promise's answer (SESS.PREPARE NEXT): no read of its own"
    );

    // Now hosted by the second server: served from its cache.
    let resp = app
        .clone()
        .oneshot(request("GET", "/read", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(body(resp).await, "cache:2");
}

#[tokio::test]
async fn a_forged_cookie_never_reaches_a_store() {
    let (stores, specs) = stores(3).await;
    let m = manager("ws1", &specs, 2).await;
    let app = app(&m);
    let real = counted_once(&app).await;

    let mut flipped = real.clone().into_bytes();
    let last = flipped.len() - 1;
    flipped[last] = if flipped[last] == b'0' { b'1' } else { b'0' };
    let flipped = String::from_utf8(flipped).unwrap();
    let unknown = format!("{}.{}", "ab".repeat(16), "cd".repeat(16));
    let before = session_calls(&stores);
    for forged in [flipped.as_str(), unknown.as_str(), "garbage", ""] {
        let resp = app
            .clone()
            .oneshot(request("GET", "/read", Some(forged)))
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(body(resp).await, "new:0", "{forged:?} counts as no session");
    }
    assert_eq!(session_calls(&stores), before, "no store was asked");
    assert_eq!(m.sessions(), 1, "only the real session is hosted");
}

#[tokio::test]
async fn a_request_routed_for_an_old_epoch_is_refused_as_fenced() {
    let (_stores, specs) = stores(2).await;
    let m = manager("ws1", &specs, 2).await;
    let app = app(&m);
    let cookie = counted_once(&app).await;
    let old = m.epoch();
    let now = m.fence("test");

    let mut req = request("GET", "/read", Some(&cookie));
    req.headers_mut()
        .insert(EPOCH_HEADER, old.to_string().parse().unwrap());
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        resp.headers()[FENCED_HEADER].to_str().unwrap(),
        now.to_string()
    );
    assert_eq!(m.sessions(), 0, "the fence dropped the cache");

    // Routed for the current epoch: re-loaded from the stores.
    let mut req = request("GET", "/read", Some(&cookie));
    req.headers_mut()
        .insert(EPOCH_HEADER, now.to_string().parse().unwrap());
    let resp = app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(body(resp).await, "store:1");
}

#[tokio::test]
async fn destroying_a_session_removes_its_cookie_and_its_copies() {
    let (stores, specs) = stores(2).await;
    let m = manager("ws1", &specs, 2).await;
    let app = app(&m);
    let cookie = counted_once(&app).await;
    let resp = app
        .clone()
        .oneshot(request("POST", "/logout", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let removal = resp.headers()[SET_COOKIE].to_str().unwrap();
    assert!(removal.starts_with("sticky.sid=; Max-Age=0"), "{removal}");
    assert_eq!(m.sessions(), 0);
    assert_eq!(
        calls_of(&stores, "sess.del"),
        2,
        "a tombstone on each replica"
    );
    let resp = app
        .clone()
        .oneshot(request("GET", "/read", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(body(resp).await, "new:0", "the destroyed session is gone");
}

/// A store that stops (closing its connections and its port) when the
/// returned sender is sent to or dropped.
async fn stoppable_store() -> (tokio::sync::oneshot::Sender<()>, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        Store::new(StoreConfig {
            restarted: false,
            ..StoreConfig::default()
        })
        .serve(listener, async {
            let _ = rx.await;
        })
        .await
    });
    (tx, addr)
}

/// `n` stores named `s1`.., each stopped by sending to (or taking and
/// dropping) its sender.
async fn stoppable_stores(
    n: usize,
) -> (
    Vec<Option<tokio::sync::oneshot::Sender<()>>>,
    Vec<StoreSpec>,
) {
    let mut stops = Vec::new();
    let mut specs = Vec::new();
    for i in 1..=n {
        let (stop, addr) = stoppable_store().await;
        stops.push(Some(stop));
        specs.push(StoreSpec {
            name: format!("s{i}"),
            addr,
        });
    }
    (stops, specs)
}

/// Regression (issue 14, the 53 writes acknowledged with one copy): a web
/// server that reaches only one of three stores must not acknowledge a
/// change with R=2. A takeover reads two stores and could miss it.
#[tokio::test]
async fn a_write_needs_replicas_acknowledgements_whatever_this_server_sees() {
    let (mut stops, specs) = stoppable_stores(3).await;
    let m = manager("ws1", &specs, 2).await;
    let app = app(&m);
    let cookie = counted_once(&app).await;
    // Two of the three stores go away: only one can acknowledge.
    for stop in stops.iter_mut().take(2) {
        let _ = stop.take().expect("running").send(());
    }
    let resp = app
        .clone()
        .oneshot(request("POST", "/count", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a change stored on one store of three (R=2) must not be acknowledged: {}",
        body(resp).await
    );
    // Nor is the unacknowledged version served from the cache afterwards.
    let resp = app
        .clone()
        .oneshot(request("GET", "/read", Some(&cookie)))
        .await
        .unwrap();
    let status = resp.status();
    let text = body(resp).await;
    assert!(
        status == StatusCode::SERVICE_UNAVAILABLE || text.ends_with(":1"),
        "after the refused write: {status} {text}"
    );
}

/// docs/safety.md §2 and §4: while ws1 holds its lease, ws2 asked for
/// ws1's session claims nothing and writes nothing, and answers 421 naming
/// ws1 (it knows no peer address, so it cannot prove ws1 gone). Once ws1
/// stops (releasing its lease), ws2 claims the session, and ws1 serves no
/// session any more.
#[tokio::test]
async fn a_live_owners_session_is_named_not_claimed() {
    let (stores, specs) = stores(3).await;
    let ws1 = manager("ws1", &specs, 2).await;
    let ws2 = manager("ws2", &specs, 2).await;
    let (app1, app2) = (app(&ws1), app(&ws2));
    let cookie = counted_once(&app1).await;
    let puts = calls_of(&stores, "sess.put");

    let resp = app2
        .clone()
        .oneshot(request("POST", "/count", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::MISDIRECTED_REQUEST);
    assert_eq!(
        resp.headers()
            .get(sticky_proto::control::OWNER_HEADER)
            .and_then(|v| v.to_str().ok()),
        Some("ws1")
    );
    assert_eq!(calls_of(&stores, "sess.put"), puts, "nothing written");
    assert_eq!(ws2.sessions(), 0);

    // ws1 still serves it from its cache, unchanged, and writes it: no
    // store promised ws2 anything (a promise would refuse ws1's write).
    let resp = app1
        .clone()
        .oneshot(request("GET", "/read", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(body(resp).await, "cache:1");
    let resp = app1
        .clone()
        .oneshot(request("POST", "/count", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "nothing promised");
    assert_eq!(body(resp).await, "cache:2");

    ws1.stop().await;
    let resp = app2
        .clone()
        .oneshot(request("POST", "/count", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(body(resp).await, "store:3", "claimed once ws1 let go");
    let resp = app1
        .clone()
        .oneshot(request("GET", "/read", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::SERVICE_UNAVAILABLE,
        "a stopped server serves no session"
    );
}

/// A server that reaches fewer stores than its lease needs serves nothing:
/// with 2 of 3 stores gone it cannot hold its lease (it needs 2), so even
/// the session in its cache answers 503 once the lease has run out.
#[tokio::test]
async fn a_server_without_a_lease_quorum_stops_serving_its_cache() {
    let (tx1, a1) = stoppable_store().await;
    let (tx2, a2) = stoppable_store().await;
    let (_tx3, a3) = stoppable_store().await;
    let specs: Vec<StoreSpec> = [a1, a2, a3]
        .into_iter()
        .enumerate()
        .map(|(i, addr)| StoreSpec {
            name: format!("s{}", i + 1),
            addr,
        })
        .collect();
    let mut config = Config::new("ws1", SECRET.to_vec(), specs);
    config.lease = std::time::Duration::from_millis(300);
    config.store_timeout = std::time::Duration::from_millis(200);
    let m = SessionManager::start(config).await.expect("manager starts");
    let app = app(&m);
    let cookie = counted_once(&app).await;
    let epoch = m.epoch();
    drop((tx1, tx2));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let resp = app
            .clone()
            .oneshot(request("GET", "/read", Some(&cookie)))
            .await
            .unwrap();
        if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
            break;
        }
        assert_eq!(body(resp).await, "cache:1");
        assert!(std::time::Instant::now() < deadline, "still serving");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(!m.serving());
    assert_ne!(m.epoch(), epoch, "the lapse fenced it");
    assert_eq!(m.sessions(), 0, "and dropped its cache");
}

/// Two servers claim each of many sessions at the same moment (their
/// users' requests raced there, or a reclaim raced a user's request):
/// never do both get it. Each generation has one claimer at a store, so
/// at most one of them holds a quorum of promises; the other answers 421
/// or 503 and hosts nothing. (When an equal generation could be outbid,
/// both could write `(g, 0)` and both serve the session.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_servers_claiming_one_session_at_once_never_both_host_it() {
    let (_stores, specs) = stores(3).await;
    let first = manager("ws1", &specs, 2).await;
    let app1 = app(&first);
    let mut cookies = Vec::new();
    for _ in 0..40 {
        cookies.push(counted_once(&app1).await);
    }
    first.stop().await;
    drop(first);
    let a = manager("ws2", &specs, 2).await;
    let b = manager("ws3", &specs, 2).await;
    let (app_a, app_b) = (app(&a), app(&b));
    let mut won = 0;
    for c in &cookies {
        let (ra, rb) = tokio::join!(
            app_a.clone().oneshot(request("POST", "/count", Some(c))),
            app_b.clone().oneshot(request("POST", "/count", Some(c)))
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        let (sa, sb) = (ra.status(), rb.status());
        let (ba, bb) = (body(ra).await, body(rb).await);
        assert!(
            !(sa == StatusCode::OK && sb == StatusCode::OK),
            "both servers claimed {c}: ws2 answered {ba:?}, ws3 {bb:?}"
        );
        for (s, b) in [(sa, &ba), (sb, &bb)] {
            assert!(
                s == StatusCode::OK
                    || s == StatusCode::MISDIRECTED_REQUEST
                    || s == StatusCode::SERVICE_UNAVAILABLE,
                "{s}: {b}"
            );
            if s == StatusCode::OK {
                assert_eq!(b, "store:2", "one claim, with the session's data");
                won += 1;
            }
        }
    }
    assert!(won >= cookies.len() / 2, "most races have a winner: {won}");
}

/// Session 22: a re-copy that a takeover's promise refuses (here a promise
/// of generation 100 that another claimer left at the store the session is
/// re-placed to) must not leave the session cached on fewer than R stores
/// with nothing to copy it again: the host claims it back above the
/// promise, as after a failed write, and it is on two live stores again,
/// with its value, without any change by its user.
#[tokio::test]
async fn a_recopy_refused_under_a_promise_claims_the_session_back() {
    use std::time::Duration;
    let (mut stops, specs) = stoppable_stores(3).await;
    let m = manager("ws1", &specs, 2).await;
    let app = app(&m);
    let cookie = counted_once(&app).await;
    let resp = app
        .clone()
        .oneshot(request("POST", "/count", Some(&cookie)))
        .await
        .unwrap();
    assert_eq!(body(resp).await, "cache:2");
    let key = cookie.split('.').next().expect("an id").to_owned();
    let clients: Vec<sticky_client::StoreClient> = specs
        .iter()
        .map(|s| {
            sticky_client::StoreClient::new(&s.addr, sticky_client::ClientOptions::default())
                .expect("client")
        })
        .collect();
    let mut holders = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        if c.get(key.as_bytes()).await.expect("get").is_some() {
            holders.push(i);
        }
    }
    assert_eq!(holders.len(), 2, "on two stores: {holders:?}");
    let other = (0..3)
        .find(|i| !holders.contains(i))
        .expect("a third store");
    // Another claimer's promise at the third store, then one replica goes.
    clients[other]
        .prepare(key.as_bytes(), 100, "ws9@1", Duration::from_secs(1))
        .await
        .expect("promised");
    let _ = stops[holders[0]].take().expect("running").send(());

    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != holders[0]).collect();
    loop {
        let mut copies = Vec::new();
        for &i in &survivors {
            if let Ok(Some(s)) = clients[i].get(key.as_bytes()).await {
                copies.push(s.stamp.generation);
            }
        }
        if copies.len() == 2 && copies.iter().all(|g| *g > 100) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the session is back on both live stores above the promise: {copies:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let resp = app
        .clone()
        .oneshot(request("GET", "/read", Some(&cookie)))
        .await
        .unwrap();
    let text = body(resp).await;
    assert!(text.ends_with(":2"), "its value: {text}");
}
