//! The sidecar (`sticky web --app URL`) against a scripted app written
//! here on a raw socket, so each case controls exactly what the app sends
//! and when: a streamed answer's session change is stored before its body
//! is finished; an app that does not answer in time is a 504 and leaves
//! the session unlocked; a client's `sticky-session*` headers never reach
//! the app, on paths with and without a session; the app's session headers
//! never reach the client. No Python or Node needed: always runs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use sticky_test_support::{
    http_request, sess_command_calls, sess_get, ClusterConfig, HttpClient, Sticky, StoreProcess,
    WebProcess, IO_TIMEOUT,
};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

fn b64(text: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text)
}

/// What the scripted app saw: each request's path and header lines.
type Seen = Arc<Mutex<Vec<(String, Vec<(String, String)>)>>>;

/// A scripted app: answers `/stream` with a session change in its headers
/// and a body whose second half waits for `gate`; `/hang` never; anything
/// else `200 ok`.
struct ScriptedApp {
    addr: SocketAddr,
    seen: Seen,
    gate: mpsc::Sender<()>,
}

fn read_head(stream: &mut BufReader<TcpStream>) -> Option<(String, Vec<(String, String)>)> {
    let mut line = String::new();
    stream.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        stream.read_line(&mut h).ok()?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    Some((path, headers))
}

impl ScriptedApp {
    fn start() -> ScriptedApp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Seen = Arc::default();
        let (gate, gate_rx) = mpsc::channel::<()>();
        let gate_rx = Arc::new(Mutex::new(gate_rx));
        let seen2 = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let seen = seen2.clone();
                let gate_rx = gate_rx.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut out = conn;
                    // One request per connection (answers close it).
                    let Some((path, headers)) = read_head(&mut reader) else {
                        return;
                    };
                    seen.lock().unwrap().push((path.clone(), headers));
                    match path.as_str() {
                        "/api/stream" => {
                            let set = b64(r#"{"counter":7}"#);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\
                                 transfer-encoding: chunked\r\nconnection: close\r\n\
                                 sticky-session-set: {set}\r\n\r\n5\r\nfirst\r\n"
                            );
                            out.write_all(head.as_bytes()).unwrap();
                            out.flush().unwrap();
                            let _ = gate_rx.lock().unwrap().recv_timeout(IO_TIMEOUT);
                            let _ = out.write_all(b"6\r\nsecond\r\n0\r\n\r\n");
                        }
                        "/api/hang" => std::thread::sleep(Duration::from_secs(15)),
                        "/api/broken" => {
                            // A session change, then a body that breaks
                            // off: 3 of the 10 bytes promised.
                            let set = b64(r#"{"counter":99}"#);
                            let head = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\
                                 sticky-session-set: {set}\r\n\r\nabc"
                            );
                            let _ = out.write_all(head.as_bytes());
                        }
                        "/api/split" => {
                            // Head and body in two writes, as Python's
                            // servers send them.
                            let _ = out.write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\n",
                            );
                            let _ = out.flush();
                            std::thread::sleep(Duration::from_millis(3));
                            let _ = out.write_all(b"body");
                        }
                        _ => {
                            let _ = out.write_all(
                                b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\
                                  sticky-session-server: leak\r\n\r\nok",
                            );
                        }
                    }
                });
            }
        });
        ScriptedApp { addr, seen, gate }
    }

    fn last(&self, path: &str) -> Vec<(String, String)> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find(|(p, _)| p == path)
            .map(|(_, h)| h.clone())
            .unwrap_or_else(|| panic!("the app saw no {path}"))
    }
}

struct Setup {
    web: WebProcess,
    app: ScriptedApp,
    stores: Vec<StoreProcess>,
    _config: ClusterConfig,
}

fn setup() -> Setup {
    let stores: Vec<StoreProcess> = (0..2).map(|_| StoreProcess::start(STICKY, &[])).collect();
    let addrs: Vec<_> = stores.iter().map(StoreProcess::addr).collect();
    let config = ClusterConfig::new(&addrs, &["ws1"])
        .replicas(2)
        .session("store_timeout_ms", "3000")
        .write();
    let app = ScriptedApp::start();
    let url = format!("http://{}", app.addr);
    let web = WebProcess::start_with(
        STICKY,
        config.path(),
        "ws1",
        &[
            "--app",
            &url,
            "--session-prefix",
            "/api/",
            "--app-timeout-ms",
            "1500",
        ],
    );
    Setup {
        web,
        app,
        stores,
        _config: config,
    }
}

impl Setup {
    /// A new session holding `{"counter":7}` (the streamed answer, its
    /// body not held back): its id and its `Cookie` header.
    fn new_session(&self) -> (String, String) {
        self.app.gate.send(()).unwrap();
        let r = http_request(self.web.addr(), "GET", "/api/stream", &[], None).unwrap();
        let value = r
            .set_cookie("sticky.sid")
            .flatten()
            .expect("a session cookie");
        let id = value.split('.').next().unwrap().to_owned();
        (id, format!("sticky.sid={value}"))
    }

    /// `GET /api/other` with `cookie` (answered 200): the session headers
    /// the app saw with it.
    fn app_sees(&self, cookie: &str) -> Vec<(String, String)> {
        let r = http_request(
            self.web.addr(),
            "GET",
            "/api/other",
            &[("Cookie", cookie)],
            None,
        )
        .unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        self.app.last("/api/other")
    }
}

#[test]
fn a_streamed_answers_session_change_is_stored_before_its_body_ends() {
    let s = setup();
    let mut conn = TcpStream::connect(s.web.addr()).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.write_all(b"GET /api/stream HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut reader = BufReader::new(conn);
    let (status, headers) = read_head(&mut reader).expect("the answer's head");
    assert_eq!(status, "200", "{headers:?}");
    assert!(
        headers
            .iter()
            .all(|(k, _)| !k.starts_with("sticky-session")),
        "the app's session headers stay with the sidecar: {headers:?}"
    );
    let cookie = headers
        .iter()
        .find(|(k, v)| k == "set-cookie" && v.starts_with("sticky.sid="))
        .map(|(_, v)| v.clone())
        .expect("a session cookie with the headers");
    let id = cookie["sticky.sid=".len()..]
        .split('.')
        .next()
        .unwrap()
        .to_owned();
    // The body's first half is here, its second held back by the app:
    // both stores already hold the change.
    let mut first = String::new();
    while !first.contains("first") {
        let mut line = String::new();
        assert!(reader.read_line(&mut line).unwrap() > 0, "body ended early");
        first.push_str(&line);
    }
    for store in &s.stores {
        let copy = sess_get(store.addr(), &id).expect("stored before the body ended");
        assert_eq!(copy.counter(), 7);
    }
    s.app.gate.send(()).unwrap();
    let mut rest = String::new();
    reader.read_to_string(&mut rest).unwrap();
    assert!(rest.contains("second"), "the rest of the body: {rest:?}");
}

#[test]
fn an_app_that_does_not_answer_in_time_is_a_504_and_leaves_the_session_unlocked() {
    let s = setup();
    let (_, cookie) = s.new_session();
    let started = Instant::now();
    let r = http_request(
        s.web.addr(),
        "GET",
        "/api/hang",
        &[("Cookie", &cookie)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 504, "{r:?}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // The session is not left locked: the next request of it is served.
    let seen = s.app_sees(&cookie);
    let source = seen.iter().find(|(k, _)| k == "sticky-session-source");
    assert_eq!(source.map(|(_, v)| v.as_str()), Some("cache"), "{seen:?}");
    let data = seen.iter().find(|(k, _)| k == "sticky-session").unwrap();
    assert_eq!(data.1, b64(r#"{"counter":7}"#));
}

/// A small answer is read whole before its session change is applied: one
/// that breaks off is a 502 and changes nothing.
#[test]
fn a_small_answer_that_breaks_off_changes_no_session() {
    let s = setup();
    let (id, cookie) = s.new_session();
    let r = http_request(
        s.web.addr(),
        "GET",
        "/api/broken",
        &[("Cookie", &cookie)],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 502, "{r:?}");
    for store in &s.stores {
        let copy = sess_get(store.addr(), &id).expect("the session's copy");
        assert_eq!(copy.counter(), 7, "the broken answer's change was stored");
    }
    let seen = s.app_sees(&cookie);
    let data = seen.iter().find(|(k, _)| k == "sticky-session").unwrap();
    assert_eq!(
        data.1,
        b64(r#"{"counter":7}"#),
        "the cached session changed"
    );
}

#[test]
fn a_clients_session_headers_never_reach_the_app() {
    let s = setup();
    let injected = b64(r#"{"user":"admin"}"#);
    let evil = [
        ("sticky-session", injected.as_str()),
        ("Sticky-Session-Source", "store"),
        ("sticky-session-stamp", "9.9"),
        ("sticky-session-server", "evil"),
        ("sticky-session-set", injected.as_str()),
        ("sticky-session-action", "rotate"),
        ("sticky-sessionx", "1"),
    ];
    for path in ["/api/echo", "/page"] {
        let r = http_request(s.web.addr(), "GET", path, &evil, None).unwrap();
        assert_eq!(r.status, 200, "{r:?}");
        assert!(
            r.headers
                .iter()
                .all(|(k, _)| !k.starts_with("sticky-session")),
            "{r:?}"
        );
        let seen = s.app.last(path);
        let session: Vec<_> = seen
            .iter()
            .filter(|(k, _)| k.starts_with("sticky-session"))
            .collect();
        let server = ("sticky-session-server".to_owned(), "ws1".to_owned());
        if path == "/page" {
            // Outside the session prefix: the server's name, nothing else.
            assert_eq!(session, [&server], "{path}: {seen:?}");
        } else {
            let get = |k: &str| seen.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            assert_eq!(get("sticky-session"), Some(b64("{}").as_str()), "{seen:?}");
            assert_eq!(get("sticky-session-source"), Some("new"));
            assert_eq!(get("sticky-session-stamp"), Some("0.0"));
            assert_eq!(get("sticky-session-next-stamp"), Some("1.1"));
            assert_eq!(get("sticky-session-server"), Some("ws1"));
            assert_eq!(get("sticky-session-set"), None);
            assert_eq!(get("sticky-session-action"), None);
            assert_eq!(get("sticky-sessionx"), None);
        }
    }
    // Nothing was stored: no session was changed.
    for st in &s.stores {
        assert_eq!(sess_command_calls(st.addr())["sess.put"], 0);
    }
}

/// An app that writes an answer's head and body apart (as Python's servers
/// do) costs no delayed-ACK stall: the sidecar streams the answer, so its
/// head leaves first, and without `TCP_NODELAY` the body waited for the
/// client's delayed ACK (40 ms on Linux) on every request.
#[test]
fn an_answer_written_in_two_parts_is_not_held_back_by_nagle() {
    let s = setup();
    let mut client = HttpClient::new(s.web.addr());
    let mut took: Vec<Duration> = (0..15)
        .map(|_| {
            let started = Instant::now();
            let r = client.get("/api/split").unwrap();
            assert_eq!((r.status, r.text().as_str()), (200, "body"), "{r:?}");
            started.elapsed()
        })
        .collect();
    took.sort_unstable();
    // 3 ms of the app's own, and room for a loaded machine; a stall is 40.
    assert!(
        took[took.len() / 2] < Duration::from_millis(25),
        "median {:?} of {took:?}",
        took[took.len() / 2]
    );
}

/// `--app unix:PATH`: the sidecar reaches an app listening on a Unix
/// socket, passes it the session and stores its change.
#[test]
fn an_app_on_a_unix_socket_gets_its_session_and_changes_it() {
    use std::os::unix::net::UnixListener;
    let dir = sticky_test_support::temp_dir("sidecar-unix");
    let path = dir.join("app.sock");
    let listener = UnixListener::bind(&path).unwrap();
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let seen2 = seen.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { return };
            let seen = seen2.clone();
            std::thread::spawn(move || {
                conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let session = head
                    .lines()
                    .find_map(|l| l.strip_prefix("sticky-session: "))
                    .unwrap_or_default()
                    .to_owned();
                seen.lock().unwrap().push(session);
                let set = b64(r#"{"counter":5}"#);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\
                     sticky-session-set: {set}\r\n\r\nok"
                );
                let _ = conn.write_all(answer.as_bytes());
            });
        }
    });
    let stores: Vec<StoreProcess> = (0..2).map(|_| StoreProcess::start(STICKY, &[])).collect();
    let addrs: Vec<_> = stores.iter().map(StoreProcess::addr).collect();
    let config = ClusterConfig::new(&addrs, &["ws1"]).replicas(2).write();
    let app = format!("unix:{}", path.display());
    let web = WebProcess::start_with(STICKY, config.path(), "ws1", &["--app", &app]);

    let r = http_request(web.addr(), "GET", "/x", &[], None).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "ok"), "{r:?}");
    let value = r
        .set_cookie("sticky.sid")
        .flatten()
        .expect("a session cookie");
    let id = value.split('.').next().unwrap().to_owned();
    for store in &stores {
        let copy = sess_get(store.addr(), &id).expect("the app's change, stored");
        assert_eq!(copy.counter(), 5);
    }
    let cookie = format!("sticky.sid={value}");
    let r = http_request(web.addr(), "GET", "/y", &[("Cookie", &cookie)], None).unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[1], b64(r#"{"counter":5}"#).to_ascii_lowercase());
}

/// A scripted app that keeps its connections open (HTTP/1.1 keep-alive)
/// and counts them: `/api/ka` answers `ok`; `/api/then-close` answers and
/// then closes the connection without saying so; `/api/drop-next` answers,
/// then reads the next request on that connection and closes it unanswered;
/// `/api/chunked` answers `abcdefg` in chunks with an extension and a
/// trailer; `/api/cut` sends one chunk and closes; `/api/echo` answers with
/// the request's body (sent with a length or chunked).
///
/// Only connections that carry a request of the sidecar count: the app
/// listens on a port the kernel picked, which another test running in
/// parallel may have chosen as "free" a moment before and then probe.
struct KeepAliveApp {
    addr: SocketAddr,
    conns: Arc<std::sync::atomic::AtomicUsize>,
}

/// Reads a request body framed by `headers` (a length or chunks).
fn read_body(reader: &mut BufReader<TcpStream>, headers: &[(String, String)]) -> Option<Vec<u8>> {
    let get = |k: &str| headers.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        let mut body = Vec::new();
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 {
                let mut end = String::new();
                reader.read_line(&mut end).ok()?;
                return Some(body);
            }
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let n: usize = get("content-length").map_or(Some(0), |v| v.parse().ok())?;
    let mut body = vec![0; n];
    reader.read_exact(&mut body).ok()?;
    Some(body)
}

impl KeepAliveApp {
    fn start() -> KeepAliveApp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = conns.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(conn.try_clone().unwrap());
                    let mut out = conn;
                    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    let mut from_sidecar = false;
                    loop {
                        let Some((path, headers)) = read_head(&mut reader) else {
                            return;
                        };
                        if !from_sidecar
                            && headers.iter().any(|(k, _)| k == "sticky-session-server")
                        {
                            from_sidecar = true;
                            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                        let Some(body) = read_body(&mut reader, &headers) else {
                            return;
                        };
                        match path.as_str() {
                            "/api/then-close" => {
                                let _ = out.write_all(ok);
                                return;
                            }
                            "/api/drop-next" => {
                                let _ = out.write_all(ok);
                                let _ = read_head(&mut reader);
                                return;
                            }
                            "/api/chunked" => {
                                let _ = out.write_all(
                                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                                      3;ext=1\r\nabc\r\n4\r\ndefg\r\n0\r\nx-trailer: 1\r\n\r\n",
                                );
                            }
                            "/api/cut" => {
                                let _ = out.write_all(
                                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nfirst\r\n",
                                );
                                return;
                            }
                            "/api/echo" => {
                                let head = format!(
                                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n",
                                    body.len()
                                );
                                let _ = out.write_all(head.as_bytes());
                                let _ = out.write_all(&body);
                            }
                            _ => {
                                let _ = out.write_all(ok);
                            }
                        }
                    }
                });
            }
        });
        KeepAliveApp { addr, conns }
    }

    fn conns(&self) -> usize {
        self.conns.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Stores, and a sidecar in front of a [`KeepAliveApp`].
fn keep_alive_setup() -> (WebProcess, KeepAliveApp, Vec<StoreProcess>, ClusterConfig) {
    let stores: Vec<StoreProcess> = (0..2).map(|_| StoreProcess::start(STICKY, &[])).collect();
    let addrs: Vec<_> = stores.iter().map(StoreProcess::addr).collect();
    let config = ClusterConfig::new(&addrs, &["ws1"]).replicas(2).write();
    let app = KeepAliveApp::start();
    let url = format!("http://{}", app.addr);
    let web = WebProcess::start_with(
        STICKY,
        config.path(),
        "ws1",
        &["--app", &url, "--session-prefix", "/api/"],
    );
    (web, app, stores, config)
}

fn get_ok(web: &WebProcess, path: &str) -> String {
    let r = http_request(web.addr(), "GET", path, &[], None).unwrap();
    assert_eq!(r.status, 200, "{path}: {r:?}");
    r.text()
}

/// One keep-alive connection to the app serves request after request,
/// also after a chunked answer (read to its end, trailer included).
#[test]
fn a_keep_alive_connection_to_the_app_is_reused() {
    let (web, app, _stores, _config) = keep_alive_setup();
    for _ in 0..5 {
        assert_eq!(get_ok(&web, "/api/ka"), "ok");
    }
    for _ in 0..2 {
        assert_eq!(get_ok(&web, "/api/chunked"), "abcdefg");
    }
    assert_eq!(get_ok(&web, "/api/ka"), "ok");
    assert_eq!(app.conns(), 1, "every request on the first connection");
}

/// A pooled connection the app closed between requests is not used; one
/// it closes as the next request arrives costs that request nothing: it
/// is sent again on a new connection.
#[test]
fn an_app_closing_a_pooled_connection_costs_no_request() {
    let (web, app, _stores, _config) = keep_alive_setup();
    assert_eq!(get_ok(&web, "/api/then-close"), "ok");
    // The app's close reaches the sidecar's socket at once on loopback;
    // allow a loaded machine a moment all the same.
    let deadline = Instant::now() + IO_TIMEOUT;
    loop {
        assert_eq!(get_ok(&web, "/api/ka"), "ok");
        if app.conns() == 2 || Instant::now() > deadline {
            break;
        }
    }
    assert_eq!(app.conns(), 2);
    assert_eq!(get_ok(&web, "/api/drop-next"), "ok");
    // Sent on the connection the app drops unanswered, then on a new one.
    assert_eq!(get_ok(&web, "/api/ka"), "ok");
    assert_eq!(app.conns(), 3);
}

/// An answer that breaks off while it streams is never passed on as
/// complete, and the next request gets a new connection.
#[test]
fn an_answer_cut_off_mid_stream_is_not_passed_on_as_complete() {
    let (web, app, _stores, _config) = keep_alive_setup();
    let mut conn = TcpStream::connect(web.addr()).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.write_all(b"GET /api/cut HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    // The sidecar ends the connection early (a reset counts too).
    let _ = conn.read_to_end(&mut got);
    let got = String::from_utf8_lossy(&got);
    // Whatever left before the break (hyper may still hold the head and
    // first chunk when it gives up), never the last chunk.
    assert!(got.is_empty() || got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(
        !got.ends_with("0\r\n\r\n"),
        "passed on as complete: {got:?}"
    );
    assert_eq!(get_ok(&web, "/api/ka"), "ok");
    assert_eq!(app.conns(), 2);
}

/// Request bodies reach the app whole, with a length or chunked.
#[test]
fn request_bodies_reach_the_app_with_a_length_or_chunked() {
    let (web, app, _stores, _config) = keep_alive_setup();
    let r = http_request(web.addr(), "POST", "/api/echo", &[], Some(b"hello")).unwrap();
    assert_eq!((r.status, r.text().as_str()), (200, "hello"), "{r:?}");
    let mut conn = TcpStream::connect(web.addr()).unwrap();
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.write_all(
        b"POST /api/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
          transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    conn.write_all(b"2\r\nde\r\n0\r\n\r\n").unwrap();
    let mut got = String::new();
    conn.read_to_string(&mut got).unwrap();
    assert!(got.starts_with("HTTP/1.1 200"), "{got:?}");
    assert!(got.ends_with("\r\n\r\nabcde"), "{got:?}");
    assert_eq!(app.conns(), 1);
}
