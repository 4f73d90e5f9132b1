//! Several directors (`[[director.peers]]`): an admin state change asked
//! on any one of them reaches all of them, and each lists all of them.

use http::{Method, StatusCode};
use sticky_director::{AdminState, ClusterStatus, DirectorPeer};
use sticky_proto::control::admin_token;
use tokio::net::TcpListener;

use crate::support::{config, get, request, Running, WebServer, SECRET};

async fn bind() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.expect("bind")
}

#[tokio::test]
async fn a_drain_asked_on_one_director_reaches_its_peers() {
    let ws1 = WebServer::start("ws1").await;
    let ws2 = WebServer::start("ws2").await;
    let (public_a, admin_a, public_b, admin_b) =
        (bind().await, bind().await, bind().await, bind().await);
    let peer = |name: &str, public: &TcpListener, admin: &TcpListener| DirectorPeer {
        name: name.into(),
        listen: public.local_addr().expect("addr"),
        admin: admin.local_addr().expect("addr"),
        redirect_listen: None,
        relay_listen: None,
    };
    let mut cfg_a = config(&[&ws1, &ws2], true);
    cfg_a.peers = vec![peer("director2", &public_b, &admin_b)];
    let mut cfg_b = config(&[&ws1, &ws2], true);
    cfg_b.name = "director2".into();
    cfg_b.peers = vec![peer("director", &public_a, &admin_a)];
    let a = Running::start_on(cfg_a, public_a, admin_a).await;
    let b = Running::start_on(cfg_b, public_b, admin_b).await;

    let listed = get(b.admin, "/api/cluster", &[]).await;
    let listed: ClusterStatus = serde_json::from_str(&listed.body).expect("status");
    let names: Vec<(&str, bool)> = listed
        .directors
        .iter()
        .map(|d| (d.name.as_str(), d.this))
        .collect();
    assert_eq!(names, [("director2", true), ("director", false)]);
    assert_eq!(listed.directors[1].admin, a.admin);
    a.until("director sees director2 answer", |s| {
        s.directors.get(1).and_then(|d| d.up) == Some(true)
    })
    .await;

    let token = format!("Bearer {}", admin_token(SECRET.as_bytes()));
    let admin_state = |r: &Running, name: &str| {
        r.status()
            .servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.admin)
            .expect("server")
    };
    let drained = request(
        b.admin,
        Method::POST,
        "/api/servers/ws1/drain",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(drained.status, StatusCode::OK, "{drained:?}");
    assert_eq!(drained.header("sticky-peers-failed"), None);
    // Passed on before the answer: both show it now.
    assert_eq!(admin_state(&b, "ws1"), AdminState::Draining);
    assert_eq!(admin_state(&a, "ws1"), AdminState::Draining);

    let enabled = request(
        a.admin,
        Method::POST,
        "/api/servers/ws1/enable",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(enabled.status, StatusCode::OK);
    assert_eq!(admin_state(&a, "ws1"), AdminState::Enabled);
    assert_eq!(admin_state(&b, "ws1"), AdminState::Enabled);

    // A peer that is gone: applied here, and the answer says which peer
    // missed it.
    b.stop().await;
    let evacuated = request(
        a.admin,
        Method::POST,
        "/api/servers/ws2/evacuate",
        &[("authorization", &token)],
    )
    .await;
    assert_eq!(evacuated.status, StatusCode::OK);
    assert_eq!(evacuated.header("sticky-peers-failed"), Some("director2"));
    assert_eq!(admin_state(&a, "ws2"), AdminState::Evacuating);
    a.until("director sees director2 gone", |s| {
        s.directors.get(1).and_then(|d| d.up) == Some(false)
    })
    .await;

    // A director started (or restarted) later copies the evacuation from
    // the peer that has it.
    let (public_c, admin_c) = (bind().await, bind().await);
    let mut cfg_c = config(&[&ws1, &ws2], true);
    cfg_c.name = "director3".into();
    cfg_c.peers = vec![DirectorPeer {
        name: "director".into(),
        listen: a.public,
        admin: a.admin,
        redirect_listen: None,
        relay_listen: None,
    }];
    // ws2 evacuated: one server routable.
    let c = Running::start_expecting(cfg_c, public_c, admin_c, 1).await;
    c.until("director3 copies ws2's evacuation", |s| {
        s.servers
            .iter()
            .any(|s| s.name == "ws2" && s.admin == AdminState::Evacuating)
    })
    .await;
    assert_eq!(admin_state(&c, "ws1"), AdminState::Enabled);
    c.stop().await;
    a.stop().await;
}
