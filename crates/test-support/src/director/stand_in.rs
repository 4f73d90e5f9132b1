//! A tiny web server standing in for a Sticky web server, run as a real
//! separate process: the test binary re-executes itself with
//! `--exact director_test_backend` and the `STICKY_TEST_BACKEND*` variables,
//! and that one test serves forever. Every test file that starts one
//! ([`BackendProcess`](super::BackendProcess)) must define that test:
//!
//! ```ignore
//! #[test]
//! fn director_test_backend() {
//!     sticky_test_support::director::stand_in::run_if_requested();
//! }
//! ```
//!
//! It implements the control endpoints of `docs/protocol.md` (health with
//! an epoch, fence that takes a new epoch and drops the "cache"), accepting
//! only the admin token, and a few routes for the tests:
//!
//! | route | what |
//! |---|---|
//! | `/` and anything else | its name; sets a `sticky.sid` session cookie if absent |
//! | `/count` | increments the session's counter: cache, else the shared store directory |
//! | `/value` | the session's counter, unchanged |
//! | `/echo` | the request's headers, a blank line, then its body |
//! | `/ws` | `101` on `Upgrade: websocket`, then echoes bytes |
//! | `/_test/stats` | JSON: name, epoch, requests, fences, refused_stale |
//! | `/_test/fence` | fences itself, as on a lease expiry (new epoch, cache dropped) |
//! | `/_test/sick`, `/_test/well` | health answers 503 / 200 from now on |
//! | `/_test/slow?ms=N` | answers after N ms (checking `sticky-epoch` after the wait, like a request queued at a paused server) |
//! | `/_test/stall?ms=N[&first=B]` | `200` with a `Content-Length` body: its first B bytes (default [`STALLED_FIRST`]) at once, the rest ([`STALLED_REST`]) after N ms |
//! | `/_test/abort` | closes the connection without an answer |
//!
//! Every answer but the control ones carries `x-backend` and `x-epoch`.
//! Like a real web server, it refuses a request whose `sticky-epoch` is not
//! its epoch with `503` and `sticky-fenced`, untouched.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body_util::{BodyExt, Either, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::random::random_u64;

/// Environment variable naming the backend; its presence turns the special
/// test into a server.
pub const ENV_NAME: &str = "STICKY_TEST_BACKEND";
/// Port to listen on (0 or absent: any).
pub const ENV_PORT: &str = "STICKY_TEST_BACKEND_PORT";
/// Cluster secret (for the admin token).
pub const ENV_SECRET: &str = "STICKY_TEST_BACKEND_SECRET";
/// Fixed starting epoch (default: random).
pub const ENV_EPOCH: &str = "STICKY_TEST_BACKEND_EPOCH";
/// Directory shared by the backends, standing in for the session stores.
pub const ENV_STORE: &str = "STICKY_TEST_BACKEND_STORE";
/// Line printed once listening.
pub const LISTENING: &str = "STICKY_TEST_BACKEND_LISTENING port=";

struct State {
    name: String,
    token: String,
    epoch: AtomicU64,
    requests: AtomicU64,
    fences: AtomicU64,
    refused_stale: AtomicU64,
    sick: AtomicBool,
    cache: Mutex<HashMap<String, u64>>,
    store: Option<PathBuf>,
}

type Resp = Response<Either<Full<Bytes>, Stalled>>;

/// A body that sends its first part at once and the rest after a pause
/// (`/_test/stall?ms=N`): a web server that stops in the middle of a
/// response, as one whose link is cut does.
pub struct Stalled {
    first: Option<Bytes>,
    pause: Pin<Box<tokio::time::Sleep>>,
    rest: Option<Bytes>,
}

/// The first part of a stalled body unless `first=N` says otherwise:
/// large enough that it alone takes several reads.
pub const STALLED_FIRST: usize = 100 << 10;
/// What follows the pause.
pub const STALLED_REST: &[u8] = b"and the end\n";

impl hyper::body::Body for Stalled {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(first) = this.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        if this.rest.is_none() {
            return Poll::Ready(None);
        }
        match this.pause.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => Poll::Ready(this.rest.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let left =
            self.first.as_ref().map_or(0, Bytes::len) + self.rest.as_ref().map_or(0, Bytes::len);
        SizeHint::with_exact(left as u64)
    }
}

fn stalled(first: usize, pause: Duration) -> Resp {
    Response::new(Either::Right(Stalled {
        first: Some(Bytes::from(vec![b'a'; first])),
        pause: Box::pin(tokio::time::sleep(pause)),
        rest: Some(Bytes::from_static(STALLED_REST)),
    }))
}

/// Serves forever if the backend variables are set; returns at once
/// otherwise (the normal test run).
pub fn run_if_requested() {
    let Ok(name) = std::env::var(ENV_NAME) else {
        return;
    };
    let port: u16 = std::env::var(ENV_PORT)
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let secret = std::env::var(ENV_SECRET).expect("STICKY_TEST_BACKEND_SECRET");
    let epoch = std::env::var(ENV_EPOCH)
        .ok()
        .and_then(|e| e.parse().ok())
        .unwrap_or_else(|| random_u64() >> 1);
    let state = Arc::new(State {
        name,
        token: sticky_proto::control::admin_token(secret.as_bytes()),
        epoch: AtomicU64::new(epoch),
        requests: AtomicU64::new(0),
        fences: AtomicU64::new(0),
        refused_stale: AtomicU64::new(0),
        sick: AtomicBool::new(false),
        cache: Mutex::new(HashMap::new()),
        store: std::env::var_os(ENV_STORE).map(PathBuf::from),
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(serve(state, port));
}

async fn serve(state: Arc<State>, port: u16) {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // A restarted backend reuses its port: retry while the old socket goes.
    let mut tries = 0;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) if tries < 100 => {
                tries += 1;
                eprintln!("bind {addr}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    };
    let port = listener.local_addr().expect("local_addr").port();
    println!("{LISTENING}{port}");
    let _ = std::io::stdout().flush();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(Arc::clone(&state), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .with_upgrades()
                .await;
        });
    }
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Either::Left(Full::new(body.into())));
    *r.status_mut() = status;
    r
}

fn report(state: &State) -> Resp {
    let sessions = state.cache.lock().unwrap().len() as u64;
    let json = serde_json::json!({
        "name": state.name,
        "epoch": state.epoch.load(Ordering::SeqCst),
        "sessions": sessions,
        "ready": true,
        "standby": false,
    });
    let mut r = text(StatusCode::OK, json.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r
}

fn cookie(req: &Request<Incoming>, name: &str) -> Option<String> {
    for v in req.headers().get_all("cookie") {
        for pair in v.to_str().ok()?.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=') {
                if k == name {
                    return Some(val.to_owned());
                }
            }
        }
    }
    None
}

fn load(state: &State, sid: &str) -> (u64, &'static str) {
    if let Some(v) = state.cache.lock().unwrap().get(sid) {
        return (*v, "cache");
    }
    let from_store = state
        .store
        .as_ref()
        .and_then(|dir| std::fs::read_to_string(dir.join(sid)).ok())
        .and_then(|t| t.trim().parse().ok());
    match from_store {
        Some(v) => (v, "store"),
        None => (0, "new"),
    }
}

fn save(state: &State, sid: &str, value: u64) {
    state.cache.lock().unwrap().insert(sid.to_owned(), value);
    if let Some(dir) = &state.store {
        let tmp = dir.join(format!("{sid}.{}.tmp", std::process::id()));
        std::fs::write(&tmp, value.to_string()).expect("write the store file");
        std::fs::rename(&tmp, dir.join(sid)).expect("rename the store file");
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Resp, std::io::Error> {
    let path = req.uri().path().to_owned();
    if let Some(rest) = path.strip_prefix("/.sticky/") {
        let auth = req.headers().get("authorization").map(|v| v.as_bytes());
        if !sticky_proto::control::authorized(auth, &state.token) {
            return Ok(text(StatusCode::UNAUTHORIZED, "unauthorized\n"));
        }
        return Ok(match (req.method().as_str(), rest) {
            ("GET", "health") if state.sick.load(Ordering::SeqCst) => {
                text(StatusCode::SERVICE_UNAVAILABLE, "sick\n")
            }
            ("GET", "health") => report(&state),
            ("POST", "fence") => {
                state.cache.lock().unwrap().clear();
                state.epoch.fetch_add(1, Ordering::SeqCst);
                state.fences.fetch_add(1, Ordering::SeqCst);
                report(&state)
            }
            _ => text(StatusCode::NOT_FOUND, "no such control endpoint\n"),
        });
    }
    match path.as_str() {
        "/_test/stats" => {
            let json = serde_json::json!({
                "name": state.name,
                "epoch": state.epoch.load(Ordering::SeqCst),
                "requests": state.requests.load(Ordering::SeqCst),
                "fences": state.fences.load(Ordering::SeqCst),
                "refused_stale": state.refused_stale.load(Ordering::SeqCst),
            });
            return Ok(text(StatusCode::OK, json.to_string()));
        }
        "/_test/fence" => {
            state.cache.lock().unwrap().clear();
            state.epoch.fetch_add(1, Ordering::SeqCst);
            state.fences.fetch_add(1, Ordering::SeqCst);
            return Ok(text(StatusCode::OK, "fenced\n"));
        }
        "/_test/sick" => {
            state.sick.store(true, Ordering::SeqCst);
            return Ok(text(StatusCode::OK, "sick\n"));
        }
        "/_test/well" => {
            state.sick.store(false, Ordering::SeqCst);
            return Ok(text(StatusCode::OK, "well\n"));
        }
        _ => {}
    }
    let param = |name: &str| {
        req.uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .and_then(|v| v.parse::<u64>().ok())
    };
    let ms = param("ms").unwrap_or(1000);
    let first = param("first").map_or(STALLED_FIRST, |n| n as usize);
    if path == "/_test/slow" {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let epoch = state.epoch.load(Ordering::SeqCst);
    let routed = req
        .headers()
        .get(sticky_proto::control::EPOCH_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if routed.is_some_and(|e| e != epoch) {
        state.refused_stale.fetch_add(1, Ordering::SeqCst);
        let mut r = text(StatusCode::SERVICE_UNAVAILABLE, "fenced\n");
        r.headers_mut().insert(
            sticky_proto::control::FENCED_HEADER,
            epoch.to_string().parse().unwrap(),
        );
        return Ok(r);
    }
    state.requests.fetch_add(1, Ordering::SeqCst);
    let mut new_sid = None;
    let sid = match cookie(&req, "sticky.sid") {
        Some(s) => s,
        None => {
            let s = format!("{:016x}{:016x}", random_u64(), random_u64());
            new_sid = Some(s.clone());
            s
        }
    };
    let mut resp = match path.as_str() {
        // Slept above, before the epoch check.
        "/_test/slow" => text(StatusCode::OK, format!("{}\n", state.name)),
        "/_test/stall" => stalled(first, Duration::from_millis(ms)),
        "/_test/abort" => {
            return Err(std::io::Error::other("aborted on purpose"));
        }
        "/count" | "/value" => {
            let (value, source) = load(&state, &sid);
            let value = if path == "/count" { value + 1 } else { value };
            save(&state, &sid, value);
            text(
                StatusCode::OK,
                format!(
                    "server={} epoch={epoch} count={value} source={source}\n",
                    state.name
                ),
            )
        }
        "/echo" => {
            let (parts, body) = req.into_parts();
            let mut out = String::new();
            for (k, v) in &parts.headers {
                out.push_str(&format!(
                    "{}: {}\n",
                    k,
                    String::from_utf8_lossy(v.as_bytes())
                ));
            }
            out.push('\n');
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let mut bytes = out.into_bytes();
            bytes.extend_from_slice(&body);
            text(StatusCode::OK, bytes)
        }
        "/ws" if req.headers().contains_key("upgrade") => {
            let on_upgrade = hyper::upgrade::on(req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let (mut r, mut w) = tokio::io::split(&mut io);
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                }
            });
            let mut r = text(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
            r.headers_mut()
                .insert("upgrade", "websocket".parse().unwrap());
            r.headers_mut()
                .insert("connection", "upgrade".parse().unwrap());
            r
        }
        _ => text(StatusCode::OK, format!("{}\n", state.name)),
    };
    let h = resp.headers_mut();
    h.insert("x-backend", state.name.parse().unwrap());
    h.insert("x-epoch", epoch.to_string().parse().unwrap());
    if let Some(sid) = new_sid {
        h.append(
            "set-cookie",
            format!("sticky.sid={sid}; Path=/; HttpOnly")
                .parse()
                .unwrap(),
        );
    }
    Ok(resp)
}
