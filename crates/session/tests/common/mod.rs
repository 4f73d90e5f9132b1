//! Helpers shared by the session crate's in-process tests: real
//! `sticky_store::Store`s on port 0, one demo router, and response
//! readers.

use axum::body::Body;
use axum::routing::{get, post};
use axum::Router;
use http::header::SET_COOKIE;
use http::Response;
use sticky_session::{Session, SessionLayer, SessionManager, StoreSpec};
use sticky_store::{Store, StoreConfig};
use tokio::net::TcpListener;

pub(crate) const SECRET: [u8; 32] = [42; 32];

/// A store serving on an ephemeral port until the test's runtime ends.
pub(crate) async fn store() -> (Store, String) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("local addr").to_string();
    let store = Store::new(StoreConfig {
        // A fresh store, not a restarted one (no recovery window).
        restarted: false,
        ..StoreConfig::default()
    });
    let serving = store.clone();
    tokio::spawn(async move { serving.serve(listener, std::future::pending()).await });
    (store, addr)
}

pub(crate) async fn stores(n: usize) -> (Vec<Store>, Vec<StoreSpec>) {
    let mut all = Vec::new();
    let mut specs = Vec::new();
    for i in 1..=n {
        let (s, addr) = store().await;
        all.push(s);
        specs.push(StoreSpec {
            name: format!("s{i}"),
            addr,
        });
    }
    (all, specs)
}

/// `POST /count` adds one to `n`; `GET /read` only reads it. Both answer
/// `<source>:<n>`. `POST /note` stores the body as `note` and answers the
/// source. `POST /logout` destroys the session.
pub(crate) fn app(manager: &SessionManager) -> Router {
    async fn count(session: Session) -> String {
        let n = session.get::<u64>("n").expect("a number").unwrap_or(0) + 1;
        session.insert("n", n).expect("serializable");
        format!("{}:{n}", session.source().as_str())
    }
    async fn note(session: Session, body: String) -> String {
        session.insert("note", body).expect("serializable");
        session.source().as_str().to_owned()
    }
    async fn read(session: Session) -> String {
        let n = session.get::<u64>("n").expect("a number").unwrap_or(0);
        format!("{}:{n}", session.source().as_str())
    }
    Router::new()
        .route("/count", post(count))
        .route("/note", post(note))
        .route("/read", get(read))
        .route(
            "/logout",
            post(|session: Session| async move { session.destroy() }),
        )
        .layer(SessionLayer::new(manager.clone()))
}

pub(crate) async fn body(resp: Response<Body>) -> String {
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .expect("body");
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

/// The session cookie's value in a response, if it sets one.
pub(crate) fn set_cookie(resp: &Response<Body>) -> Option<String> {
    let v = resp.headers().get(SET_COOKIE)?.to_str().ok()?;
    let first = v.split(';').next()?;
    first.strip_prefix("sticky.sid=").map(str::to_owned)
}
