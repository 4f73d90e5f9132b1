//! The peer of Sticky's demo app for `bench/session.sh`: the same JSON API
//! (`GET`/`POST /api/counter`, `GET /api/cart`, `POST /api/cart/items`) on
//! axum + tower-sessions, with sessions in Redis through
//! tower-sessions-redis-store (fred connection pool).
//!
//! Configured the way its documentation shows: an inactivity expiry (30
//! minutes, like Sticky's default idle timeout) and `always_save` off, so a
//! read costs one Redis `GET` and a write a `GET` plus a `SET`, both awaited
//! before the response leaves (the same durability as Sticky's sync mode
//! with one replica).
//!
//! ```text
//! tower-sessions-app --listen 127.0.0.1:8090 --redis redis://127.0.0.1:6379 --threads 2
//! ```

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::Deserialize;
use serde_json::{json, Value};
use tower_sessions::{Expiry, Session, SessionManagerLayer};
use tower_sessions_redis_store::fred::prelude::{ClientLike, Config, Pool};
use tower_sessions_redis_store::RedisStore;

/// Most items in one cart (as in Sticky's demo app).
const MAX_ITEMS: usize = 100;
/// Longest item name, in characters (as in Sticky's demo app).
const MAX_ITEM_LEN: usize = 64;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: SocketAddr,
    /// Redis URL.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    /// Redis connections in the pool.
    #[arg(long, default_value_t = 4)]
    pool: usize,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Name reported as `server` in every answer.
    #[arg(long, default_value = "peer")]
    name: String,
    /// Idle timeout of a session, seconds.
    #[arg(long, default_value_t = 1800)]
    idle_secs: i64,
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
    (StatusCode::INTERNAL_SERVER_ERROR, format!("session error: {e}\n")).into_response()
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

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let pool = Pool::new(Config::from_url(&args.redis)?, None, None, None, args.pool.max(1))?;
    let _driver = pool.init().await?;
    let store = RedisStore::new(pool);
    let sessions = SessionManagerLayer::new(store)
        .with_secure(false)
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(args.idle_secs)));
    let app = Router::new()
        .route("/api/cart", get(cart))
        .route("/api/cart/items", post(add_item))
        .route("/api/counter", get(counter).post(increment))
        .with_state(App { server: args.name })
        .layer(sessions);
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("tower-sessions-app listening on {} (redis {})", args.listen, args.redis);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
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
        .map_err(Into::into)
        .and_then(|rt| rt.block_on(serve(args)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tower-sessions-app: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
