//! The floor of Sticky's web tier for `bench/session.sh`: the demo app's JSON
//! API (`GET`/`POST /api/counter`, `GET /api/cart`, `POST /api/cart/items`)
//! on bare axum handlers, with every session in a plain in-process
//! `HashMap` — no replication, no stores, no cookie signature, no expiry, no
//! metrics. What `sticky web` costs above this app is the price of its
//! session machinery; nothing a session-keeping web server does can cost
//! less.
//!
//! Kept comparable with the demo app (`crates/cli/src/demo/`) and
//! `tower-sessions-app`: the same routes, limits and answers (each answer's
//! JSON carries `server`, `stamp` and `source` like the demo app's), values
//! read and written through `serde_json` as the session library's
//! `Session::get`/`insert` do, a session cookie on the answer that creates a
//! session, the same worker threads (`--threads`). The session id is 128
//! random bits (rand's thread-local CSPRNG) in hex in the cookie `sid`.
//!
//! The map is split into shards by id, each behind a `std::sync::Mutex`
//! held only while the handler reads or changes the session (never across
//! an `.await`). A request of a session holds its shard's lock for the whole
//! read-modify-write, so two requests of one session never lose each
//! other's change. A GET of an unknown session answers from an empty one
//! and keeps nothing; a write creates the session (at most `--max-sessions`,
//! then 503).
//!
//! ```text
//! floor-app --listen 127.0.0.1:8091 --threads 2
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::header::{COOKIE, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

/// Most items in one cart (as in Sticky's demo app).
const MAX_ITEMS: usize = 100;
/// Longest item name, in characters (as in Sticky's demo app).
const MAX_ITEM_LEN: usize = 64;
/// Name of the session cookie.
const COOKIE_NAME: &str = "sid";
/// Shards of the session map (a power of two).
const SHARDS: usize = 64;

/// Command line.
#[derive(Debug, Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8091")]
    listen: SocketAddr,
    /// Worker threads [default: one per core].
    #[arg(long)]
    threads: Option<usize>,
    /// Name reported as `server` in every answer.
    #[arg(long, default_value = "floor")]
    name: String,
    /// Most sessions held; a write that would create one more gets 503.
    #[arg(long, default_value_t = 1_000_000)]
    max_sessions: usize,
}

/// One session: its data and how many times it was changed (the `seq` of
/// the `stamp` in its answers, as `1.seq` in Sticky's demo app).
#[derive(Default)]
struct Stored {
    data: Map<String, Value>,
    seq: u64,
}

struct Sessions {
    shards: Vec<Mutex<HashMap<u128, Stored>>>,
    /// Sessions held, over all shards (approximate under races; a cap).
    count: std::sync::atomic::AtomicUsize,
    max: usize,
}

impl Sessions {
    fn new(max: usize) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            count: std::sync::atomic::AtomicUsize::new(0),
            max,
        }
    }

    fn shard(&self, id: u128) -> MutexGuard<'_, HashMap<u128, Stored>> {
        // Ids are random: their low bits spread them evenly.
        self.shards[(id as usize) & (SHARDS - 1)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

struct App {
    server: String,
    sessions: Sessions,
}

/// A request's view of its session, with the typed accessors of the
/// session library's `Session`.
struct Session<'a> {
    data: &'a mut Map<String, Value>,
    modified: bool,
}

impl Session<'_> {
    fn get<T: DeserializeOwned>(&self, key: &str) -> Option<T> {
        self.data
            .get(key)
            .cloned()
            .and_then(|v| serde_json::from_value(v).ok())
    }

    fn insert<T: Serialize>(&mut self, key: &str, value: T) -> Result<(), Refused> {
        let v = serde_json::to_value(value).map_err(|e| Refused::Data(e.to_string()))?;
        self.data.insert(key.to_owned(), v);
        self.modified = true;
        Ok(())
    }
}

/// Why a handler answers with an error.
enum Refused {
    /// 400 with this message, as the demo app's `bad`.
    Bad(&'static str),
    /// 500: a value did not serialize.
    Data(String),
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        match self {
            Self::Bad(msg) => bad(msg),
            Self::Data(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("session error: {e}\n"),
            )
                .into_response(),
        }
    }
}

/// The session id in the request's cookie, if it has a well-formed one.
fn cookie_id(headers: &HeaderMap) -> Option<u128> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE_NAME)
        .and_then(|(_, v)| {
            let v = v.trim_matches('"');
            (v.len() == 32).then(|| u128::from_str_radix(v, 16).ok())?
        })
}

impl App {
    /// Runs `handler` on the request's session under its shard's lock and
    /// answers with the body it returns plus `server`, `stamp` and
    /// `source`, setting the cookie if the request created the session.
    fn with_session(
        &self,
        headers: &HeaderMap,
        handler: impl FnOnce(&mut Session<'_>) -> Result<Value, Refused>,
    ) -> Response {
        let known = cookie_id(headers);
        // An unknown or missing id: a new session under a fresh id, kept
        // only if the handler changes it.
        let id = known.unwrap_or_else(rand::random::<u128>);
        let (mut body, stamp, source, created) = {
            let mut shard = self.sessions.shard(id);
            match shard.get_mut(&id) {
                Some(stored) => {
                    let mut s = Session {
                        data: &mut stored.data,
                        modified: false,
                    };
                    let body = match handler(&mut s) {
                        Ok(b) => b,
                        Err(r) => return r.into_response(),
                    };
                    if s.modified {
                        stored.seq += 1;
                    }
                    (body, format!("1.{}", stored.seq), "cache", None)
                }
                None => {
                    drop(shard);
                    let mut data = Map::new();
                    let mut s = Session {
                        data: &mut data,
                        modified: false,
                    };
                    let body = match handler(&mut s) {
                        Ok(b) => b,
                        Err(r) => return r.into_response(),
                    };
                    if s.modified {
                        if !self.admit() {
                            return (StatusCode::SERVICE_UNAVAILABLE, "session error: full\n")
                                .into_response();
                        }
                        // A fresh id: never one a client chose.
                        let id = rand::random::<u128>();
                        self.sessions.shard(id).insert(id, Stored { data, seq: 1 });
                        (body, "1.1".to_owned(), "new", Some(id))
                    } else {
                        (body, "0.0".to_owned(), "new", None)
                    }
                }
            }
        };
        if let Some(o) = body.as_object_mut() {
            o.insert("server".into(), json!(self.server));
            o.insert("stamp".into(), json!(stamp));
            o.insert("source".into(), json!(source));
        }
        let mut response = Json(body).into_response();
        if let Some(id) = created {
            let cookie = format!("{COOKIE_NAME}={id:032x}; Path=/; HttpOnly; SameSite=Lax");
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                response.headers_mut().append(SET_COOKIE, v);
            }
        }
        response
    }

    /// Counts one more session if there is room.
    fn admit(&self) -> bool {
        use std::sync::atomic::Ordering;
        self.sessions
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.sessions.max).then_some(n + 1)
            })
            .is_ok()
    }
}

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

fn items(session: &Session<'_>) -> Vec<String> {
    session.get::<Vec<String>>("cart").unwrap_or_default()
}

fn value(session: &Session<'_>) -> u64 {
    session.get::<u64>("counter").unwrap_or(0)
}

async fn counter(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    app.with_session(&headers, |s| Ok(json!({ "value": value(s) })))
}

async fn increment(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    app.with_session(&headers, |s| {
        let v = value(s) + 1;
        s.insert("counter", v)?;
        Ok(json!({ "value": v }))
    })
}

async fn cart(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    app.with_session(&headers, |s| Ok(json!({ "items": items(s) })))
}

#[derive(Deserialize)]
struct ItemBody {
    item: String,
}

async fn add_item(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    body: Json<ItemBody>,
) -> Response {
    let item = body.0.item.trim().to_owned();
    if item.is_empty() || item.chars().count() > MAX_ITEM_LEN {
        return bad("item must be 1 to 64 characters");
    }
    app.with_session(&headers, |s| {
        let mut items = items(s);
        if items.len() >= MAX_ITEMS {
            return Err(Refused::Bad("the cart is full (100 items)"));
        }
        items.push(item);
        s.insert("cart", &items)?;
        Ok(json!({ "items": items }))
    })
}

async fn serve(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let app = Arc::new(App {
        server: args.name,
        sessions: Sessions::new(args.max_sessions),
    });
    let router = Router::new()
        .route("/api/cart", get(cart))
        .route("/api/cart/items", post(add_item))
        .route("/api/counter", get(counter).post(increment))
        .with_state(app)
        .layer(DefaultBodyLimit::max(16 * 1024));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("floor-app listening on {}", args.listen);
    axum::serve(listener, router)
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
            eprintln!("floor-app: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
