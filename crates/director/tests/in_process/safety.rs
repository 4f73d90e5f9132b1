//! The director's part of `docs/safety.md` §4-5, on both request paths:
//! a `421 Misdirected Request` naming the session's owner is re-sent there
//! once (never looped, never passed on with its header); a server declared
//! dead has its sessions adopted by its failover candidates; a request
//! whose client gave up is not re-sent after a fenced refusal.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, StatusCode};
use sticky_director::ServerState;
use sticky_proto::control::{
    AdoptRequest, AdoptTarget, EPOCH_HEADER, MOVED_FROM_HEADER, OWNER_HEADER,
};
use tokio::io::AsyncWriteExt;

use crate::support::{
    config, get, raw, request_with_body, wait_until, Behavior, Running, WebServer,
};
use crate::ROUTE;

/// A route cookie for `name`, as the director hands it to a new client
/// that lands there.
async fn cookie_for(director: &Running, name: &str) -> String {
    for _ in 0..32 {
        let a = get(director.public, "/", &[]).await;
        if a.header("x-backend") == Some(name) {
            return a.set_cookie().expect("a new client gets a cookie");
        }
    }
    panic!("no new client landed on {name} within 32 tries");
}

/// The value of one sample of the director's `/metrics`.
async fn metric(director: &Running, sample: &str) -> u64 {
    let m = get(director.admin, "/metrics", &[]).await;
    m.body
        .lines()
        .find_map(|l| l.strip_prefix(sample)?.trim().parse().ok())
        .unwrap_or(0)
}

async fn a_misdirected_request_goes_to_the_owner_once(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let director = Running::start(config(&[&ws1, &ws2], fast_path)).await;
    let cookie = cookie_for(&director, "ws1").await;
    let before = ws2.seen().len();

    ws1.behave(Behavior::Misdirect("ws2".into()));
    let a = get(director.public, "/cart", &[("cookie", &cookie)]).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.header("x-backend"), Some("ws2"), "re-sent to the owner");
    assert_eq!(
        a.header(OWNER_HEADER),
        None,
        "the internal header is stripped"
    );
    let moved = a
        .set_cookie()
        .expect("the route cookie is set to the owner");
    assert!(moved.starts_with(&format!("{ROUTE}=ws2.")), "{moved}");
    assert_eq!(
        ws1.seen().last().map(|s| s.path.clone()).as_deref(),
        Some("/cart")
    );
    let at_owner = ws2.seen();
    assert_eq!(at_owner.len(), before + 1, "sent to the owner once");
    let last = at_owner.last().expect("seen");
    assert_eq!(last.path, "/cart");
    assert_eq!(
        last.headers.get(EPOCH_HEADER).and_then(|v| v.to_str().ok()),
        Some(ws2.epoch().to_string().as_str()),
        "with the owner's epoch"
    );

    // The new cookie goes straight to the owner.
    let direct = get(director.public, "/again", &[("cookie", &moved)]).await;
    assert_eq!(direct.header("x-backend"), Some("ws2"));
    assert_eq!(direct.header(OWNER_HEADER), None);
    assert_eq!(ws1.seen().len(), 2, "ws1 saw only the misdirected request");

    // A body: held whole on the fast path, so re-sent with it; streamed
    // on the hyper path, so spent: 503, the client retries.
    let bytes = format!(
        "POST /counter HTTP/1.1\r\nhost: shop\r\ncookie: {cookie}\r\ncontent-length: 5\r\n\r\nhello"
    );
    let (status, body) = raw(director.public, bytes.as_bytes())
        .await
        .expect("an answer");
    if fast_path {
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, "ws2 /counter");
        let last = ws2.seen().last().cloned().expect("seen");
        assert_eq!(last.body, Bytes::from_static(b"hello"));
    } else {
        assert_eq!(status, 503, "{body}");
        let a = request_with_body(
            director.public,
            Method::POST,
            "/counter",
            &[("cookie", &cookie)],
            Bytes::from_static(b"hello"),
        )
        .await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(a.header("retry-after"), Some("1"));
        // With the owner's route cookie: the retry goes straight there.
        let to_owner = a
            .set_cookie()
            .unwrap_or_else(|| panic!("the owner route cookie: {a:?}"));
        assert_eq!(to_owner, moved);
        let retry = request_with_body(
            director.public,
            Method::POST,
            "/counter",
            &[("cookie", &to_owner)],
            Bytes::from_static(b"hello"),
        )
        .await;
        assert_eq!(retry.status, StatusCode::OK);
        assert_eq!(retry.header("x-backend"), Some("ws2"));
        let last = ws2.seen().last().cloned().expect("seen");
        assert_eq!(last.body, Bytes::from_static(b"hello"));
    }
    assert!(
        metric(
            &director,
            "sticky_director_misdirected_total{outcome=\"resent\"}"
        )
        .await
            >= 1
    );
    director.stop().await;
}

#[tokio::test]
async fn a_misdirected_request_goes_to_the_owner_once_fast_path() {
    a_misdirected_request_goes_to_the_owner_once(true).await;
}

#[tokio::test]
async fn a_misdirected_request_goes_to_the_owner_once_hyper_path() {
    a_misdirected_request_goes_to_the_owner_once(false).await;
}

async fn a_421_that_cannot_be_followed_is_503(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let ws3 = WebServer::start("ws3").await;
    let mut cfg = config(&[&ws1, &ws2, &ws3], fast_path);
    // Only the first check: the request path must find ws3 gone.
    cfg.health.interval = Duration::from_secs(600);
    let director = Running::start(cfg).await;
    let cookie = cookie_for(&director, "ws1").await;
    let unavailable = |a: &crate::support::Answer| {
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{a:?}");
        assert_eq!(a.header("retry-after"), Some("1"));
        assert_eq!(a.header(OWNER_HEADER), None);
    };

    // Each names the other: followed once, then 503, never a loop.
    ws1.behave(Behavior::Misdirect("ws2".into()));
    ws2.behave(Behavior::Misdirect("ws1".into()));
    let (seen1, seen2) = (ws1.seen().len(), ws2.seen().len());
    unavailable(&get(director.public, "/loop", &[("cookie", &cookie)]).await);
    assert_eq!(ws1.seen().len(), seen1 + 1);
    assert_eq!(ws2.seen().len(), seen2 + 1);

    // Naming itself, or a server nobody knows.
    for owner in ["ws1", "nosuch"] {
        ws1.behave(Behavior::Misdirect(owner.into()));
        unavailable(&get(director.public, "/x", &[("cookie", &cookie)]).await);
    }
    assert_eq!(ws2.seen().len(), seen2 + 1, "nothing else re-sent");

    // Naming a server that is gone: the re-send cannot connect.
    ws1.behave(Behavior::Misdirect("ws3".into()));
    ws3.stop().await;
    unavailable(&get(director.public, "/gone", &[("cookie", &cookie)]).await);
    assert_eq!(director.state_of("ws3"), ServerState::Down);
    assert!(
        metric(
            &director,
            "sticky_director_misdirected_total{outcome=\"unavailable\"}"
        )
        .await
            >= 4
    );
    director.stop().await;
}

#[tokio::test]
async fn a_421_that_cannot_be_followed_is_503_fast_path() {
    a_421_that_cannot_be_followed_is_503(true).await;
}

#[tokio::test]
async fn a_421_that_cannot_be_followed_is_503_hyper_path() {
    a_421_that_cannot_be_followed_is_503(false).await;
}

fn target(name: &str) -> AdoptTarget {
    AdoptTarget {
        name: name.into(),
        weight: 1,
    }
}

#[tokio::test]
async fn a_server_found_down_by_its_checks_has_its_sessions_adopted_by_the_standby() {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let sb = WebServer::start("sb").await;
    let mut cfg = config(&[&ws1, &ws2, &sb], true);
    cfg.servers[2].standby = true;
    let director = Running::start(cfg).await;
    let epoch = ws1.epoch();

    ws1.stop().await;
    wait_until("the standby is asked to adopt ws1's sessions", || {
        let n = sb.adopts().len();
        async move { n >= 1 }
    })
    .await;
    assert_eq!(
        sb.adopts(),
        vec![AdoptRequest {
            owner: format!("ws1@{epoch}"),
            among: vec![target("sb")],
        }],
        "the standby, the only failover candidate"
    );
    assert!(
        ws2.adopts().is_empty(),
        "not a candidate while a standby is up"
    );
    assert_eq!(director.state_of("ws1"), ServerState::Down);
    director.stop().await;
}

#[tokio::test]
async fn a_server_found_refusing_has_its_sessions_adopted_by_the_others_once() {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let ws3 = WebServer::start("ws3").await;
    let mut cfg = config(&[&ws1, &ws2, &ws3], true);
    cfg.health.interval = Duration::from_secs(600);
    let director = Running::start(cfg).await;
    let cookie = cookie_for(&director, "ws1").await;
    let epoch = ws1.epoch();

    ws1.stop().await;
    for _ in 0..3 {
        let a = get(director.public, "/", &[("cookie", &cookie)]).await;
        assert_eq!(a.status, StatusCode::OK);
    }
    let expected = AdoptRequest {
        owner: format!("ws1@{epoch}"),
        among: vec![target("ws2"), target("ws3")],
    };
    for ws in [&ws2, &ws3] {
        wait_until("both others are asked to adopt", || {
            let n = ws.adopts().len();
            async move { n >= 1 }
        })
        .await;
    }
    // Asked once per death, however many requests found it down.
    assert_eq!(ws2.adopts(), vec![expected.clone()]);
    assert_eq!(ws3.adopts(), vec![expected]);
    director.stop().await;
}

async fn an_abandoned_request_is_not_resent_after_a_fence(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let mut cfg = config(&[&ws1, &ws2], fast_path);
    // No check may fence or re-epoch anything during the test.
    cfg.health.interval = Duration::from_secs(600);
    let director = Running::start(cfg).await;
    let cookie = cookie_for(&director, "ws1").await;
    let (seen1, seen2) = (ws1.seen().len(), ws2.seen().len());
    let retries = director.status().director.retries;

    let gate = Arc::new(tokio::sync::Notify::new());
    ws1.behave(Behavior::HoldThenFence(Arc::clone(&gate)));
    let mut client = tokio::net::TcpStream::connect(director.public)
        .await
        .expect("connect");
    let bytes = format!("GET /stuck HTTP/1.1\r\nhost: shop\r\ncookie: {cookie}\r\n\r\n");
    client.write_all(bytes.as_bytes()).await.expect("write");
    wait_until("the request is held by ws1", || {
        let n = ws1.seen().len();
        async move { n > seen1 }
    })
    .await;
    // The client gives up; then ws1 fences and refuses it untouched.
    drop(client);
    let old_epoch = ws1.epoch();
    gate.notify_one();
    wait_until("ws1 refused the request as fenced", || {
        let e = ws1.epoch();
        async move { e > old_epoch }
    })
    .await;
    // A later request goes through and is answered by ws1 itself (it
    // fenced on its own, so it stays routable).
    ws1.behave(Behavior::Normal);
    let later = get(director.public, "/later", &[("cookie", &cookie)]).await;
    assert_eq!(later.status, StatusCode::OK);
    assert_eq!(later.header("x-backend"), Some("ws1"));
    let stuck_at = |ws: &WebServer| ws.seen().iter().filter(|s| s.path == "/stuck").count();
    assert_eq!(stuck_at(&ws1), 1, "the abandoned request is not sent again");
    assert_eq!(stuck_at(&ws2), 0, "nor elsewhere");
    assert!(ws2.seen().len() >= seen2);
    assert_eq!(
        director.status().director.retries,
        retries,
        "no re-route was counted"
    );
    director.stop().await;
}

#[tokio::test]
async fn an_abandoned_request_is_not_resent_after_a_fence_fast_path() {
    an_abandoned_request_is_not_resent_after_a_fence(true).await;
}

#[tokio::test]
async fn an_abandoned_request_is_not_resent_after_a_fence_hyper_path() {
    an_abandoned_request_is_not_resent_after_a_fence(false).await;
}

/// A client moved off a server the director found down carries
/// `sticky-moved-from: name@epoch` to the server that takes it, so that
/// server's claim can probe and end that lease in its first round; a
/// client's own header of that name never passes, and a client that was
/// not moved gets none.
async fn a_moved_client_names_the_server_it_left(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let mut cfg = config(&[&ws1, &ws2], fast_path);
    cfg.health.interval = Duration::from_secs(600);
    let director = Running::start(cfg).await;
    let on_ws1 = cookie_for(&director, "ws1").await;
    let on_ws2 = cookie_for(&director, "ws2").await;
    let epoch = ws1.epoch();

    let forged = [("cookie", on_ws2.as_str()), (MOVED_FROM_HEADER, "ws9@1")];
    let a = get(director.public, "/stay", &forged).await;
    assert_eq!(a.header("x-backend"), Some("ws2"));
    let last = ws2.seen().last().cloned().expect("seen");
    assert_eq!(
        last.headers.get(MOVED_FROM_HEADER),
        None,
        "not moved, not passed on"
    );

    ws1.stop().await;
    let a = get(director.public, "/moved", &[("cookie", &on_ws1)]).await;
    assert_eq!(a.status, StatusCode::OK, "{a:?}");
    assert_eq!(a.header("x-backend"), Some("ws2"));
    let last = ws2.seen().last().cloned().expect("seen");
    assert_eq!(last.path, "/moved");
    assert_eq!(
        last.headers
            .get_all(MOVED_FROM_HEADER)
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_owned())
            .collect::<Vec<_>>(),
        vec![format!("ws1@{epoch}")],
        "the server it left, with the epoch last heard"
    );
    director.stop().await;
}

#[tokio::test]
async fn a_moved_client_names_the_server_it_left_fast_path() {
    a_moved_client_names_the_server_it_left(true).await;
}

#[tokio::test]
async fn a_moved_client_names_the_server_it_left_hyper_path() {
    a_moved_client_names_the_server_it_left(false).await;
}
