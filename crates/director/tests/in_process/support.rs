//! What the in-process tests share: small web servers on port 0 that
//! answer health checks and record what they are sent ([`WebServer`]), a
//! director started through the library on port 0 in the test's runtime
//! ([`Running`]), and a one-request HTTP/1.1 client ([`get`]).
//!
//! Conditions are waited for with deadlines ([`wait_until`]), never with
//! fixed sleeps.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use sticky_director::{ClusterStatus, Director, DirectorConfig, ServerSpec, ServerState};
use sticky_proto::control::{
    admin_token, AdoptRequest, HealthReport, ADOPT_PATH, FENCED_HEADER, FENCE_PATH, HEALTH_PATH,
    OWNER_HEADER, RESERVED_PREFIX,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// The cluster secret of every test director.
pub(crate) const SECRET: &str = "in-process-director-tests-secret-0123456789";

/// How long any awaited condition may take on a loaded machine.
pub(crate) const DEADLINE: Duration = Duration::from_secs(20);

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
pub(crate) async fn wait_until<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {DEADLINE:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What a web server saw of one application request.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub(crate) path: String,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// How a [`WebServer`] answers application requests.
#[derive(Debug, Clone, Default)]
pub(crate) enum Behavior {
    /// `200` with its name (and a `sticky-owner` naming itself, which the
    /// director must never pass on).
    #[default]
    Normal,
    /// `421 Misdirected Request` with `sticky-owner: OWNER`.
    Misdirect(String),
    /// Holds the request until the `Notify` fires, then fences itself
    /// (a new epoch) and refuses it untouched with `sticky-fenced`.
    HoldThenFence(Arc<tokio::sync::Notify>),
}

/// A stand-in web server on `127.0.0.1:0`: answers `GET /.sticky/health`,
/// `POST /.sticky/fence` and `GET /.sticky/metrics` (with the admin token;
/// the metrics carry only `sticky_takeovers_total`) like a Sticky web
/// server, and every other request with `200`, its name in `x-backend`
/// and `NAME PATH` as the body, plus a few hop-by-hop response headers
/// the director must remove. Stopping it closes its listener and every
/// connection, so the director then finds it refusing.
pub(crate) struct WebServer {
    pub(crate) name: String,
    pub(crate) addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    adopts: Arc<Mutex<Vec<AdoptRequest>>>,
    behavior: Arc<Mutex<Behavior>>,
    epoch: Arc<AtomicU64>,
    takeovers: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl WebServer {
    pub(crate) async fn start(name: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let adopts = Arc::new(Mutex::new(Vec::new()));
        let behavior = Arc::new(Mutex::new(Behavior::Normal));
        let epoch = Arc::new(AtomicU64::new(1));
        let takeovers = Arc::new(AtomicU64::new(0));
        let token = HeaderValue::from_str(&format!("Bearer {}", admin_token(SECRET.as_bytes())))
            .expect("token");
        let app = App {
            name: name.to_owned(),
            seen: Arc::clone(&seen),
            adopts: Arc::clone(&adopts),
            behavior: Arc::clone(&behavior),
            epoch: Arc::clone(&epoch),
            takeovers: Arc::clone(&takeovers),
            token,
        };
        let task = tokio::spawn(async move {
            // Dropped with the task: every connection closes with it.
            let mut connections = JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let app = app.clone();
                connections.spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let app = app.clone();
                        async move {
                            // The whole body first, as a real application
                            // would: a body that breaks off never answers.
                            let (parts, body) = req.into_parts();
                            let Ok(body) = body.collect().await else {
                                return Err("request body failed");
                            };
                            let req = Request::from_parts(parts, body.to_bytes());
                            Ok::<_, &str>(app.answer(req).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
                while connections.try_join_next().is_some() {}
            }
        });
        Self {
            name: name.to_owned(),
            addr,
            seen,
            adopts,
            behavior,
            epoch,
            takeovers,
            task,
        }
    }

    /// Sets the `sticky_takeovers_total` its metrics report.
    pub(crate) fn set_takeovers(&self, n: u64) {
        self.takeovers.store(n, Ordering::SeqCst);
    }

    /// Application requests received so far (health checks not counted).
    pub(crate) fn seen(&self) -> Vec<Seen> {
        self.seen.lock().expect("seen").clone()
    }

    /// The adopt requests received so far.
    pub(crate) fn adopts(&self) -> Vec<AdoptRequest> {
        self.adopts.lock().expect("adopts").clone()
    }

    /// How application requests are answered from now on.
    pub(crate) fn behave(&self, behavior: Behavior) {
        *self.behavior.lock().expect("behavior") = behavior;
    }

    /// The epoch it reports now.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// Closes the listener and every open connection.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }

    pub(crate) fn spec(&self) -> ServerSpec {
        ServerSpec::new(self.name.clone(), self.addr)
    }
}

#[derive(Clone)]
struct App {
    name: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    adopts: Arc<Mutex<Vec<AdoptRequest>>>,
    behavior: Arc<Mutex<Behavior>>,
    epoch: Arc<AtomicU64>,
    takeovers: Arc<AtomicU64>,
    token: HeaderValue,
}

impl App {
    async fn answer(&self, req: Request<Bytes>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_owned();
        if path.starts_with(RESERVED_PREFIX) {
            if req.headers().get(http::header::AUTHORIZATION) != Some(&self.token) {
                return text(StatusCode::UNAUTHORIZED, "bad token".into());
            }
            if req.method() == Method::POST && path == ADOPT_PATH {
                let Ok(adopt) = serde_json::from_slice::<AdoptRequest>(req.body()) else {
                    return text(StatusCode::BAD_REQUEST, "not an adopt request".into());
                };
                self.adopts.lock().expect("adopts").push(adopt);
                return text(StatusCode::ACCEPTED, String::new());
            }
            if req.method() == Method::GET && path == "/.sticky/metrics" {
                let n = self.takeovers.load(Ordering::SeqCst);
                return text(
                    StatusCode::OK,
                    format!("# TYPE sticky_takeovers_total counter\nsticky_takeovers_total {n}\n"),
                );
            }
            let epoch = match (req.method(), path.as_str()) {
                (&Method::GET, HEALTH_PATH) => self.epoch.load(Ordering::SeqCst),
                (&Method::POST, FENCE_PATH) => self.epoch.fetch_add(1, Ordering::SeqCst) + 1,
                _ => return text(StatusCode::NOT_FOUND, "unknown control path".into()),
            };
            let report = HealthReport {
                name: self.name.clone(),
                epoch,
                sessions: 0,
                ready: true,
                standby: false,
                serving: true,
                stopping: false,
            };
            let mut resp = text(
                StatusCode::OK,
                serde_json::to_string(&report).expect("report"),
            );
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            return resp;
        }
        self.seen.lock().expect("seen").push(Seen {
            path: path.clone(),
            headers: req.headers().clone(),
            body: req.body().clone(),
        });
        let behavior = self.behavior.lock().expect("behavior").clone();
        match behavior {
            Behavior::Normal => {}
            Behavior::Misdirect(owner) => {
                let mut resp = text(StatusCode::MISDIRECTED_REQUEST, "misdirected".into());
                resp.headers_mut()
                    .insert(OWNER_HEADER, HeaderValue::from_str(&owner).expect("owner"));
                return resp;
            }
            Behavior::HoldThenFence(gate) => {
                gate.notified().await;
                let epoch = self.epoch.fetch_add(1, Ordering::SeqCst) + 1;
                let mut resp = text(StatusCode::SERVICE_UNAVAILABLE, "fenced".into());
                resp.headers_mut()
                    .insert(FENCED_HEADER, HeaderValue::from(epoch));
                return resp;
            }
        }
        let mut resp = text(StatusCode::OK, format!("{} {path}", self.name));
        let h = resp.headers_mut();
        h.insert(
            OWNER_HEADER,
            HeaderValue::from_str(&self.name).expect("name"),
        );
        h.insert(
            "x-backend",
            HeaderValue::from_str(&self.name).expect("name"),
        );
        h.insert("x-app", HeaderValue::from_static("kept"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(
            "proxy-authenticate",
            HeaderValue::from_static("Basic realm=\"x\""),
        );
        resp
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

/// A director served by [`Director::serve`] on two `127.0.0.1:0`
/// listeners, in the test's runtime.
pub(crate) struct Running {
    pub(crate) director: Director,
    pub(crate) public: SocketAddr,
    pub(crate) admin: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), sticky_director::DirectorError>>>,
}

/// A configuration for `servers` with quick health checks.
pub(crate) fn config(servers: &[&WebServer], fast_path: bool) -> DirectorConfig {
    let mut config = DirectorConfig::new(SECRET, servers.iter().map(|s| s.spec()).collect());
    config.health.interval = Duration::from_millis(50);
    config.fast_path = fast_path;
    config
}

impl Running {
    /// Starts a director for `config` and waits until every configured
    /// server is up.
    pub(crate) async fn start(config: DirectorConfig) -> Self {
        let public = TcpListener::bind("127.0.0.1:0").await.expect("bind public");
        let admin = TcpListener::bind("127.0.0.1:0").await.expect("bind admin");
        Self::start_on(config, public, admin).await
    }

    /// Like [`start`](Self::start), on listeners bound already (so that
    /// directors can name each other as peers before they start).
    pub(crate) async fn start_on(
        config: DirectorConfig,
        public: TcpListener,
        admin: TcpListener,
    ) -> Self {
        let expected = config.servers.len();
        Self::start_expecting(config, public, admin, expected).await
    }

    /// Like [`start_on`](Self::start_on), waiting until `expected`
    /// servers are routable (some may be evacuated).
    pub(crate) async fn start_expecting(
        config: DirectorConfig,
        public: TcpListener,
        admin: TcpListener,
        expected: usize,
    ) -> Self {
        let director = Director::new(config).expect("director");
        let public_addr = public.local_addr().expect("public addr");
        let admin_addr = admin.local_addr().expect("admin addr");
        let (tx, rx) = oneshot::channel::<()>();
        let serving = director.clone();
        let task = tokio::spawn(async move {
            serving
                .serve(public, admin, async {
                    let _ = rx.await;
                })
                .await
        });
        let running = Self {
            director,
            public: public_addr,
            admin: admin_addr,
            shutdown: Some(tx),
            task: Some(task),
        };
        running
            .until(&format!("{expected} servers up"), |s| {
                s.director.servers_up == expected
            })
            .await;
        running
    }

    pub(crate) fn status(&self) -> ClusterStatus {
        self.director.status()
    }

    /// Waits until the status satisfies `cond`.
    pub(crate) async fn until(&self, what: &str, cond: impl Fn(&ClusterStatus) -> bool) {
        wait_until(what, || {
            let ok = cond(&self.director.status());
            async move { ok }
        })
        .await;
    }

    /// The state of server `name`.
    pub(crate) fn state_of(&self, name: &str) -> ServerState {
        self.status()
            .servers
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.state)
            .expect("server in status")
    }

    /// Shuts the director down and checks that `serve` returns.
    pub(crate) async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(DEADLINE, task)
                .await
                .expect("serve returns after shutdown")
                .expect("serve task");
            result.expect("serve ends without error");
        }
    }
}

/// A response as the client got it.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Answer {
    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `NAME=VALUE` part of the `Set-Cookie` header, if any.
    pub(crate) fn set_cookie(&self) -> Option<String> {
        let v = self.header("set-cookie")?;
        Some(v.split(';').next().unwrap_or_default().to_owned())
    }
}

/// Sends one request on a new connection to `addr`.
pub(crate) async fn request(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Answer {
    request_with_body(addr, method, path, headers, Bytes::new()).await
}

/// Sends one request with `body` (framed by `Content-Length`) on a new
/// connection to `addr`.
pub(crate) async fn request_with_body(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Answer {
    let stream = TcpStream::connect(addr).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().expect("path");
    let h = req.headers_mut();
    h.insert(
        http::header::HOST,
        HeaderValue::from_str(&addr.to_string()).expect("host"),
    );
    for (name, value) in headers {
        h.append(
            http::HeaderName::from_bytes(name.as_bytes()).expect("name"),
            HeaderValue::from_str(value).expect("value"),
        );
    }
    let resp = tokio::time::timeout(DEADLINE, sender.send_request(req))
        .await
        .expect("answer in time")
        .expect("response");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// `GET path` with these headers.
pub(crate) async fn get(addr: SocketAddr, path: &str, headers: &[(&str, &str)]) -> Answer {
    request(addr, Method::GET, path, headers).await
}

/// Writes `bytes` on a new connection to `addr` and reads one response:
/// its status and body (framed by `Content-Length`, or by the end of the
/// connection). `None` if the connection closed without a response.
pub(crate) async fn raw(addr: SocketAddr, bytes: &[u8]) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(bytes).await.expect("write");
    let mut got = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            got.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&got);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head.lines().find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse::<usize>().ok())?
                });
                if length.is_some_and(|n| body.len() >= n) {
                    break;
                }
            }
        }
    };
    tokio::time::timeout(DEADLINE, read)
        .await
        .expect("a response in time");
    let text = String::from_utf8_lossy(&got).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}
