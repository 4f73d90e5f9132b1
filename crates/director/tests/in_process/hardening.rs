//! Issue 15's director findings: Host handling (RFC 9112 section 3.2), a
//! client's malformed chunked body, trusted proxies' `X-Forwarded-*`, the
//! admin listener's Host check, token and connection slots. Each request
//! test runs on both request paths.

use http::StatusCode;

use crate::support::{config, get, raw, Running, WebServer};

async fn host_rules_of_rfc_9112(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(config(&[&ws1], fast_path)).await;
    let bad: [&[u8]; 4] = [
        b"GET /no-host HTTP/1.1\r\n\r\n",
        b"GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        b"GET http://other.example/absolute HTTP/1.1\r\nHost: shop.example\r\n\r\n",
        b"GET http://shop.example/absolute-no-host HTTP/1.1\r\n\r\n",
    ];
    for request in bad {
        let answer = raw(director.public, request).await;
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Some(400),
            "{}: {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    assert!(
        ws1.seen().is_empty(),
        "none reached the web server: {:?}",
        ws1.seen()
    );
    // What the RFC allows still goes through.
    let good: [&[u8]; 3] = [
        b"GET /one-host HTTP/1.1\r\nHost: shop.example\r\n\r\n",
        b"GET http://Shop.Example/absolute HTTP/1.1\r\nHost: shop.example\r\n\r\n",
        b"GET /http10 HTTP/1.0\r\n\r\n",
    ];
    for request in good {
        let answer = raw(director.public, request).await;
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Some(200),
            "{}: {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    let paths: Vec<String> = ws1.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/one-host", "/absolute", "/http10"]);
    director.stop().await;
}

#[tokio::test]
async fn host_rules_of_rfc_9112_fast_path() {
    host_rules_of_rfc_9112(true).await;
}

#[tokio::test]
async fn host_rules_of_rfc_9112_hyper_path() {
    host_rules_of_rfc_9112(false).await;
}

async fn a_malformed_chunked_body_is_the_clients_fault(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(config(&[&ws1], fast_path)).await;
    // A pooled connection to ws1 that must survive.
    assert_eq!(
        get(director.public, "/warm", &[]).await.status,
        StatusCode::OK
    );
    let requests: [&[u8]; 2] = [
        b"POST /bad-chunk HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\nxx\r\n0\r\n\r\n",
        b"POST /bad-size HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcdef\r\n0\r\n\r\n",
    ];
    for request in requests {
        let answer = raw(director.public, request).await;
        assert_eq!(
            answer.as_ref().map(|a| a.0),
            Some(400),
            "{}: {answer:?}",
            String::from_utf8_lossy(request)
        );
    }
    let status = director.status();
    let server = &status.servers[0];
    assert_eq!(server.errors, 0, "not counted against ws1: {server:?}");
    assert_eq!(status.director.gateway_errors, 0, "{:?}", status.director);
    assert_eq!(
        director.state_of("ws1"),
        sticky_director::ServerState::Up,
        "ws1 stays up"
    );
    // A good chunked body still gets through afterwards.
    let good = raw(
        director.public,
        b"POST /good-chunk HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(good.map(|a| a.0), Some(200));
    director.stop().await;
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault_fast_path() {
    a_malformed_chunked_body_is_the_clients_fault(true).await;
}

#[tokio::test]
async fn a_malformed_chunked_body_is_the_clients_fault_hyper_path() {
    a_malformed_chunked_body_is_the_clients_fault(false).await;
}

async fn trusted_proxies_keep_forwarded_headers(fast_path: bool) {
    let ws1 = WebServer::start("ws1").await;
    let forwarded = [
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "shop.example"),
    ];
    // Untrusted (the default): replaced.
    let director = Running::start(config(&[&ws1], fast_path)).await;
    assert_eq!(
        get(director.public, "/untrusted", &forwarded).await.status,
        StatusCode::OK
    );
    let public = director.public.to_string();
    director.stop().await;
    // Trusted: kept, the peer appended to X-Forwarded-For.
    let mut cfg = config(&[&ws1], fast_path);
    cfg.trusted_proxies = vec!["127.0.0.0/8".parse().expect("cidr")];
    let director = Running::start(cfg).await;
    assert_eq!(
        get(director.public, "/trusted", &forwarded).await.status,
        StatusCode::OK
    );
    // A trusted proxy that sent none: the director's own.
    assert_eq!(
        get(director.public, "/trusted-bare", &[]).await.status,
        StatusCode::OK
    );
    director.stop().await;

    let seen = ws1.seen();
    let header = |path: &str, name: &str| -> Vec<String> {
        let s = seen.iter().find(|s| s.path == path).expect("seen");
        s.headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect()
    };
    assert_eq!(header("/untrusted", "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header("/untrusted", "x-forwarded-proto"), ["http"]);
    assert_eq!(header("/untrusted", "x-forwarded-host"), [public]);
    assert_eq!(
        header("/trusted", "x-forwarded-for"),
        ["203.0.113.7, 127.0.0.1"]
    );
    assert_eq!(header("/trusted", "x-forwarded-proto"), ["https"]);
    assert_eq!(header("/trusted", "x-forwarded-host"), ["shop.example"]);
    assert_eq!(header("/trusted-bare", "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(header("/trusted-bare", "x-forwarded-proto"), ["http"]);
    assert_eq!(header("/trusted-bare", "x-forwarded-host").len(), 1);
}

#[tokio::test]
async fn trusted_proxies_keep_forwarded_headers_fast_path() {
    trusted_proxies_keep_forwarded_headers(true).await;
}

#[tokio::test]
async fn trusted_proxies_keep_forwarded_headers_hyper_path() {
    trusted_proxies_keep_forwarded_headers(false).await;
}

#[tokio::test]
async fn idle_connections_do_not_block_the_admin_listener() {
    let ws1 = WebServer::start("ws1").await;
    let director = Running::start(config(&[&ws1], true)).await;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(
            tokio::net::TcpStream::connect(director.admin)
                .await
                .expect("connect"),
        );
    }
    // Each of these is a new connection while 100 idle ones are open.
    for _ in 0..5 {
        let health = get(director.admin, "/healthz", &[]).await;
        assert_eq!(health.status, StatusCode::OK, "{health:?}");
        assert_eq!(health.body, "ok\n");
    }
    // An idle connection opened after the others still gets answered.
    let late = raw(director.admin, &healthz(director.admin)).await;
    assert_eq!(late.map(|a| a.0), Some(200));
    drop(idle);
    director.stop().await;
}

fn healthz(admin: std::net::SocketAddr) -> Vec<u8> {
    format!("GET /healthz HTTP/1.1\r\nHost: {admin}\r\n\r\n").into_bytes()
}

/// `METHOD path` on the admin listener with this `Host` and these headers.
async fn admin(
    director: &Running,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, String) {
    let mut text = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        text.push_str("Content-Length: 0\r\n");
    }
    text.push_str("\r\n");
    raw(director.admin, text.as_bytes())
        .await
        .expect("an answer")
}

#[tokio::test]
async fn the_admin_listener_checks_host_and_token() {
    let ws1 = WebServer::start("ws1").await;
    let mut cfg = config(&[&ws1], true);
    cfg.admin_hosts = vec!["Director.Internal".into()];
    let director = Running::start(cfg).await;
    let own = director.admin.to_string();
    let port = director.admin.port();
    let token = sticky_proto::control::admin_token(crate::support::SECRET.as_bytes());
    let bearer = format!("Bearer {token}");

    // DNS rebinding: the page's own name in Host.
    let rebound = format!("rebind.attacker.example:{port}");
    let (status, _) = admin(&director, "GET", "/api/cluster", &rebound, &[]).await;
    assert_eq!(status, 403);
    let (status, _) = admin(
        &director,
        "POST",
        "/api/servers/ws1/drain",
        &rebound,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 403);
    // The listener's own names and the configured ones.
    for host in [
        own.clone(),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
        format!("[::1]:{port}"),
        "director.internal".into(),
    ] {
        let (status, body) = admin(&director, "GET", "/healthz", &host, &[]).await;
        assert_eq!((status, body.as_str()), (200, "ok\n"), "{host}");
    }

    // State changes need the token.
    for headers in [
        vec![],
        vec![("Authorization", "Bearer 00")],
        vec![("Authorization", token.as_str())],
        vec![("X-Requested-With", "XMLHttpRequest")],
    ] {
        let (status, body) =
            admin(&director, "POST", "/api/servers/ws1/drain", &own, &headers).await;
        assert_eq!(status, 401, "{headers:?}: {body}");
    }
    // The supervisor's API too (forwarded with the director's token).
    let (status, _) = admin(&director, "POST", "/api/processes/ws3/pause", &own, &[]).await;
    assert_eq!(status, 401);
    for method in ["PUT", "DELETE"] {
        let (status, _) = admin(&director, method, "/api/reload", &own, &[]).await;
        assert_eq!(status, 401, "{method}");
    }
    assert_eq!(
        director.status().servers[0].admin,
        sticky_director::AdminState::Enabled
    );
    let (status, body) = admin(
        &director,
        "POST",
        "/api/servers/ws1/drain",
        &own,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        director.status().servers[0].admin,
        sticky_director::AdminState::Draining
    );
    // The dashboard carries the token for its buttons.
    let (status, page) = admin(&director, "GET", "/", &own, &[]).await;
    assert_eq!(status, 200);
    assert!(page.contains(&format!("\"{token}\"")), "token embedded");
    director.stop().await;

    // A configured admin_token replaces the derived one and is not embedded.
    let mut cfg = config(&[&ws1], true);
    cfg.admin_token = Some("an-operator-chosen-admin-token".into());
    let director = Running::start(cfg).await;
    let own = director.admin.to_string();
    let (status, _) = admin(
        &director,
        "POST",
        "/api/servers/ws1/drain",
        &own,
        &[("Authorization", &bearer)],
    )
    .await;
    assert_eq!(status, 401);
    let (status, _) = admin(
        &director,
        "POST",
        "/api/servers/ws1/drain",
        &own,
        &[("Authorization", "Bearer an-operator-chosen-admin-token")],
    )
    .await;
    assert_eq!(status, 200);
    let (_, page) = admin(&director, "GET", "/", &own, &[]).await;
    assert!(!page.contains("an-operator-chosen-admin-token"));
    assert!(!page.contains(&token));
    director.stop().await;
}
