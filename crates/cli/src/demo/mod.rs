//! The bundled demo app: a shopping cart and a counter whose every answer
//! says which web server served it and where the session was found.
//!
//! JSON API (relied on by tests, `sticky chaos` and `sticky bench`):
//! `GET /api/cart`, `POST /api/cart/items` `{"item": "..."}`,
//! `POST /api/cart/remove` `{"item": "..."}`, `POST /api/cart/clear`,
//! `GET /api/counter`, `POST /api/counter`, `GET /api/note` (`{"text":
//! "..."}`, `""` when none), `POST /api/note` `{"text": "..."}` (sets the
//! session's note, at most 4096 characters, else 400; answers `{"chars": N}`
//! — one request gives a new session a payload of a chosen size, as
//! `bench/scale.sh` does), `POST /api/login` `{"user": "..."}` (records the
//! user and gives the session a new id, as a login must: the old id is
//! destroyed), `POST /api/logout` (destroys the session: its copies become
//! tombstones and the cookie is removed). Every answer carries `server`,
//! `stamp` and `source` (`cache`, `store` or `new`).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use sticky_session::{Session, SessionLayer, SessionManager};

/// Most items in one cart.
const MAX_ITEMS: usize = 100;
/// Longest item name, in characters.
const MAX_ITEM_LEN: usize = 64;
/// Longest note, in characters.
const MAX_NOTE_LEN: usize = 4096;

#[derive(Clone)]
struct App {
    server: String,
}

/// The demo app's routes: the JSON API wrapped in the session layer; the
/// page (and any other path, such as a browser's `/favicon.ico`) outside
/// it, so that the first request touching the session after a failover is
/// the page's own `GET /api/cart`, which then shows `source: store`.
pub(crate) fn app(manager: &SessionManager) -> Router {
    let app = App {
        server: manager.config().server_name.clone(),
    };
    let api = Router::new()
        .route("/api/cart", get(cart))
        .route("/api/cart/items", post(add_item))
        .route("/api/cart/remove", post(remove_item))
        .route("/api/cart/clear", post(clear_cart))
        .route("/api/counter", get(counter).post(increment))
        .route("/api/note", get(note).post(set_note))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .with_state(app.clone())
        .layer(SessionLayer::new(manager.clone()));
    Router::new()
        .route("/", get(page))
        .with_state(app)
        .merge(api)
        .layer(DefaultBodyLimit::max(16 * 1024))
}

fn answer(app: &App, session: &Session, mut body: Value) -> Json<Value> {
    if let Some(o) = body.as_object_mut() {
        o.insert("server".into(), json!(app.server));
        o.insert("stamp".into(), json!(session.stamp().to_string()));
        o.insert("source".into(), json!(session.source().as_str()));
    }
    Json(body)
}

fn bad(msg: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({ "error": msg }))).into_response()
}

fn items(session: &Session) -> Vec<String> {
    session
        .get::<Vec<String>>("cart")
        .ok()
        .flatten()
        .unwrap_or_default()
}

async fn cart(State(app): State<App>, session: Session) -> Json<Value> {
    let items = items(&session);
    answer(&app, &session, json!({ "items": items }))
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
    let mut items = items(&session);
    if items.len() >= MAX_ITEMS {
        return bad("the cart is full (100 items)");
    }
    items.push(item);
    if let Err(e) = session.insert("cart", &items) {
        return e.into_response();
    }
    answer(&app, &session, json!({ "items": items })).into_response()
}

async fn remove_item(State(app): State<App>, session: Session, body: Json<ItemBody>) -> Response {
    let mut items = items(&session);
    if let Some(pos) = items.iter().position(|i| *i == body.0.item) {
        items.remove(pos);
        if let Err(e) = session.insert("cart", &items) {
            return e.into_response();
        }
    }
    answer(&app, &session, json!({ "items": items })).into_response()
}

async fn clear_cart(State(app): State<App>, session: Session) -> Json<Value> {
    session.remove_value("cart");
    answer(&app, &session, json!({ "items": [] }))
}

fn value(session: &Session) -> u64 {
    session.get::<u64>("counter").ok().flatten().unwrap_or(0)
}

async fn counter(State(app): State<App>, session: Session) -> Json<Value> {
    let v = value(&session);
    answer(&app, &session, json!({ "value": v }))
}

async fn increment(State(app): State<App>, session: Session) -> Response {
    let v = value(&session) + 1;
    if let Err(e) = session.insert("counter", v) {
        return e.into_response();
    }
    answer(&app, &session, json!({ "value": v })).into_response()
}

#[derive(Deserialize)]
struct NoteBody {
    text: String,
}

async fn note(State(app): State<App>, session: Session) -> Json<Value> {
    let text = session
        .get::<String>("note")
        .ok()
        .flatten()
        .unwrap_or_default();
    answer(&app, &session, json!({ "text": text }))
}

async fn set_note(State(app): State<App>, session: Session, body: Json<NoteBody>) -> Response {
    let text = body.0.text;
    let chars = text.chars().count();
    if chars > MAX_NOTE_LEN {
        return bad("the note must be at most 4096 characters");
    }
    if let Err(e) = session.insert("note", text) {
        return e.into_response();
    }
    answer(&app, &session, json!({ "chars": chars })).into_response()
}

#[derive(Deserialize)]
struct LoginBody {
    user: String,
}

/// Longest user name, in characters.
const MAX_USER_LEN: usize = 64;

async fn login(State(app): State<App>, session: Session, body: Json<LoginBody>) -> Response {
    let user = body.0.user;
    if user.is_empty() || user.chars().count() > MAX_USER_LEN {
        return bad("the user must be 1 to 64 characters");
    }
    if let Err(e) = session.insert("user", user.clone()) {
        return e.into_response();
    }
    // A new id at login: an id an attacker planted before it is worthless.
    session.cycle_id();
    answer(&app, &session, json!({ "user": user })).into_response()
}

async fn logout(State(app): State<App>, session: Session) -> Json<Value> {
    session.destroy();
    answer(&app, &session, json!({ "logged_out": true }))
}

async fn page(State(app): State<App>) -> Html<String> {
    Html(include_str!("shop.html").replace("{{server}}", &app.server))
}
