//! An axum app on tower-sessions, switched to Sticky with the adapter: the
//! same JSON API as `bench/peers/tower-sessions-app` (`GET`/`POST
//! /api/counter`, `GET /api/cart`, `POST /api/cart/items`), whose handlers
//! are unchanged; only the store differs (see `docs/tower-sessions.md`).
//! Plus `POST /api/logout`, which destroys the session.
//!
//! ```text
//! sticky-tower-demo --listen 127.0.0.1:8091 --name ws1 --secret-file secret \
//!     --store s1=redis://127.0.0.1:6390 --store s2=127.0.0.1:7202 --replicas 2
//! ```
//!
//! It also serves Sticky's control routes (`/.sticky/health`...), so a
//! director can front it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use sticky_session::{Config, SessionManager, StoreSpec};
use sticky_tower_sessions::StickyStore;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// Most items in one cart (as in Sticky's demo app).
const MAX_ITEMS: usize = 100;
/// Longest item name, in characters.
const MAX_ITEM_LEN: usize = 64;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: SocketAddr,
    /// This server's name (reported as `server`, and the owner of its
    /// sessions at the stores).
    #[arg(long, default_value = "ws1")]
    name: String,
    /// File whose first line is the cluster secret (32+ characters).
    #[arg(long, env = "STICKY_SECRET_FILE")]
    secret_file: PathBuf,
    /// A store: NAME=ADDRESS, ADDRESS as the library takes it
    /// (`host:port`, `redis://...`). Repeatable; the same list on every
    /// server.
    #[arg(long = "store", value_name = "NAME=ADDRESS", required = true)]
    stores: Vec<String>,
    /// Stores per session (1 or 2).
    #[arg(long, default_value_t = 2)]
    replicas: usize,
    /// Another server of the cluster: NAME=HOST:PORT (repeatable). A
    /// server proves a crashed peer gone by a refused connection and
    /// claims its sessions at once; without it, after the peer's lease.
    #[arg(long = "peer", value_name = "NAME=HOST:PORT")]
    peers: Vec<String>,
    /// Idle timeout of a session, seconds.
    #[arg(long, default_value_t = 1800)]
    idle_secs: u64,
    /// Milliseconds after which a store that has not answered a write is
    /// passed over (the write goes to the next store); 0 waits for every
    /// replica (`docs/safety.md` §1, "Slow stores").
    #[arg(long, default_value_t = 50)]
    slow_store_ms: u64,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Clone)]
struct App {
    server: String,
}

fn answer(app: &App, mut body: Value) -> Response {
    if let Some(o) = body.as_object_mut() {
        o.insert("server".into(), json!(app.server));
    }
    Json(body).into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("session error: {e}\n"),
    )
        .into_response()
}

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

async fn counter(State(app): State<App>, session: Session) -> Response {
    match session.get::<u64>("counter").await {
        Ok(v) => answer(&app, json!({ "value": v.unwrap_or(0) })),
        Err(e) => failed(e),
    }
}

async fn increment(State(app): State<App>, session: Session) -> Response {
    let v = match session.get::<u64>("counter").await {
        Ok(v) => v.unwrap_or(0) + 1,
        Err(e) => return failed(e),
    };
    match session.insert("counter", v).await {
        Ok(()) => answer(&app, json!({ "value": v })),
        Err(e) => failed(e),
    }
}

async fn items(session: &Session) -> Result<Vec<String>, Response> {
    session
        .get::<Vec<String>>("cart")
        .await
        .map(Option::unwrap_or_default)
        .map_err(failed)
}

async fn cart(State(app): State<App>, session: Session) -> Response {
    match items(&session).await {
        Ok(items) => answer(&app, json!({ "items": items })),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ItemBody {
    item: String,
}

async fn add_item(State(app): State<App>, session: Session, body: Json<ItemBody>) -> Response {
    let item = body.0.item.trim().to_owned();
    if item.is_empty() || item.chars().count() > MAX_ITEM_LEN {
        return bad("item must be 1 to 64 characters");
    }
    let mut items = match items(&session).await {
        Ok(items) => items,
        Err(r) => return r,
    };
    if items.len() >= MAX_ITEMS {
        return bad("the cart is full (100 items)");
    }
    items.push(item);
    match session.insert("cart", &items).await {
        Ok(()) => answer(&app, json!({ "items": items })),
        Err(e) => failed(e),
    }
}

async fn logout(State(app): State<App>, session: Session) -> Response {
    match session.flush().await {
        Ok(()) => answer(&app, json!({ "logged_out": true })),
        Err(e) => failed(e),
    }
}

async fn serve(args: Args) -> anyhow::Result<()> {
    let secret = std::fs::read_to_string(&args.secret_file)
        .with_context(|| format!("cannot read {}", args.secret_file.display()))?;
    let secret = secret.lines().next().unwrap_or_default().to_owned();
    let stores = args
        .stores
        .iter()
        .map(|s| {
            let (name, addr) = s.split_once('=').context("--store wants NAME=ADDRESS")?;
            Ok(StoreSpec {
                name: name.to_owned(),
                addr: addr.to_owned(),
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    // The switch: Sticky's manager behind tower-sessions' store interface.
    let mut config = Config::new(args.name.clone(), secret.into_bytes(), stores);
    config.replicas = args.replicas;
    config.peers = args
        .peers
        .iter()
        .map(|p| {
            let (name, addr) = p.split_once('=').context("--peer wants NAME=HOST:PORT")?;
            Ok(sticky_session::Peer {
                name: name.to_owned(),
                addr: addr.parse().context("--peer wants NAME=HOST:PORT")?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    config.idle_timeout = Duration::from_secs(args.idle_secs.max(1));
    config.slow_store = (args.slow_store_ms > 0).then(|| Duration::from_millis(args.slow_store_ms));
    let manager = SessionManager::start(config).await?;
    let store = StickyStore::new(manager.clone());

    let sessions = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            i64::try_from(args.idle_secs).unwrap_or(i64::MAX),
        )));
    let app = Router::new()
        .route("/api/cart", get(cart))
        .route("/api/cart/items", post(add_item))
        .route("/api/counter", get(counter).post(increment))
        .route("/api/logout", post(logout))
        .with_state(App { server: args.name })
        .layer(sessions)
        .merge(manager.control_routes(None));
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("sticky-tower-demo listening on {}", args.listen);
    let stopping = manager.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = tokio::signal::ctrl_c().await;
            // Release the lease before the listener closes.
            stopping.stop().await;
        })
        .await?;
    Ok(())
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.threads {
        rt.worker_threads(n.max(1));
    }
    let result = rt
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(serve(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sticky-tower-demo: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
