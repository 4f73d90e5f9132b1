//! The director's fast path (plain HTTP/1.1 on raw sockets, no hyper),
//! through a real `sticky director` in front of a web server written here
//! on raw sockets, so that it can answer with every response framing, and
//! with malformed ones, byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sticky_test_support::director::{metric, DirectorProcess, SECRET};
use sticky_test_support::{read_response, Response, Sticky};

/// The `sticky` binary under test.
const STICKY: Sticky = Sticky::new(env!("CARGO_BIN_EXE_sticky"));

/// Not a test of its own: the backend process of the other director tests
/// (returns at once in a normal run).
#[test]
fn director_test_backend() {
    sticky_test_support::director::stand_in::run_if_requested();
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// A web server on raw sockets: health checks answered as
/// `docs/protocol.md` says, and for every other path a fixed answer,
/// written exactly as given (see [`answer`]).
struct RawBackend {
    addr: SocketAddr,
    /// Connections that carried a request other than a health check.
    app_connections: Arc<AtomicUsize>,
}

impl RawBackend {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let app_connections = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&app_connections);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let counter = Arc::clone(&counter);
                std::thread::spawn(move || serve(stream, &counter));
            }
        });
        Self {
            addr,
            app_connections,
        }
    }

    fn cluster(&self, director_extra: &str) -> String {
        // `admin_hosts`: the test client's `Host` is `sticky.test`.
        format!(
            "secret = \"{SECRET}\"\n\n[director]\nlisten = \"127.0.0.1:0\"\nadmin = \"127.0.0.1:0\"\n\
             admin_hosts = [\"sticky.test\"]\nhealth_interval_ms = 300\nhealth_timeout_ms = 2000\nhealth_slow_ms = 0\n{director_extra}\n\n\
             [[web]]\nname = \"ws1\"\nlisten = \"{}\"\n",
            self.addr
        )
    }
}

/// One request as the web server saw it.
struct Seen {
    method: String,
    path: String,
    /// The head's lines after the request line, as received.
    headers: Vec<String>,
    body: Vec<u8>,
}

fn read_line(r: &mut impl BufRead) -> Option<String> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    Some(line.trim_end_matches(['\r', '\n']).to_owned())
}

fn read_request(r: &mut impl BufRead) -> Option<Seen> {
    let mut line = String::new();
    if r.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let path = parts.next()?.to_owned();
    let mut headers = Vec::new();
    let mut length = 0;
    let mut chunked = false;
    loop {
        let h = read_line(r)?;
        if h.is_empty() {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().ok()?;
        }
        chunked |= lower == "transfer-encoding: chunked";
        headers.push(h);
    }
    let mut body = vec![0; length];
    r.read_exact(&mut body).ok()?;
    while chunked {
        let size = usize::from_str_radix(&read_line(r)?, 16).ok()?;
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..]).ok()?;
        read_line(r)?;
        chunked = size > 0;
    }
    Some(Seen {
        method,
        path,
        headers,
        body,
    })
}

fn serve(stream: TcpStream, app_connections: &AtomicUsize) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut counted = false;
    while let Some(req) = read_request(&mut reader) {
        if !req.path.starts_with("/.sticky/") && !counted {
            counted = true;
            app_connections.fetch_add(1, Ordering::SeqCst);
        }
        let (bytes, close) = answer(&req);
        if writer.write_all(&bytes).is_err() || close {
            return;
        }
    }
}

fn with_length(head: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("{head}content-length: {}\r\n\r\n", body.len()).into_bytes();
    out.extend_from_slice(body);
    out
}

/// The answer to `req`, and whether the connection closes after it.
fn answer(req: &Seen) -> (Vec<u8>, bool) {
    let fixed = |s: &str| (s.as_bytes().to_vec(), false);
    // Control paths by path alone: the director's checks carry a query.
    match req.path.split('?').next().unwrap_or_default() {
        "/.sticky/health" | "/.sticky/fence" => {
            let json = r#"{"name":"ws1","epoch":7,"sessions":0,"ready":true,"standby":false}"#;
            (
                with_length(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n",
                    json.as_bytes(),
                ),
                false,
            )
        }
        "/chunked" => fixed(
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-trailer: yes\r\n\r\n",
        ),
        "/big-chunked" => {
            // Chunks of 10,000 bytes, 100 of them: 1 MB, more than the
            // director gathers before writing.
            let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
            for i in 0..100u32 {
                out.extend_from_slice(b"2710\r\n");
                out.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, 10_000));
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            (out, false)
        }
        "/until-close" => (
            b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end".to_vec(),
            true,
        ),
        "/early-hints" => fixed(
            "HTTP/1.1 103 Early Hints\r\nlink: </app.css>; rel=preload\r\n\r\n\
             HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal",
        ),
        "/head" => fixed("HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"),
        "/no-content" => fixed("HTTP/1.1 204 No Content\r\nx-seen: 1\r\n\r\n"),
        "/hop" => fixed(
            "HTTP/1.1 200 OK\r\nconnection: x-secret\r\nx-secret: 1\r\nkeep-alive: timeout=5\r\n\
             x-app: kept\r\ncontent-length: 2\r\n\r\nok",
        ),
        "/ambiguous" => fixed(
            "HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n",
        ),
        "/two-lengths" => {
            fixed("HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nabc")
        }
        "/bad-chunk" => (
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n"
                .to_vec(),
            true,
        ),
        // A whole keep-alive answer, then the connection closed: as a web
        // server does with an idle connection (its keep-alive timeout).
        "/then-close" => (with_length("HTTP/1.1 200 OK\r\n", b"bye"), true),
        "/truncated" => (
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort".to_vec(),
            true,
        ),
        _ => {
            // Echo: method and path, the headers, a blank line, the body.
            let mut body = format!("{} {}\n", req.method, req.path).into_bytes();
            for h in &req.headers {
                body.extend_from_slice(h.as_bytes());
                body.push(b'\n');
            }
            body.push(b'\n');
            body.extend_from_slice(&req.body);
            (with_length("HTTP/1.1 200 OK\r\n", &body), false)
        }
    }
}

/// A keep-alive client connection to the director.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Client {
    fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect_timeout(&addr, TIMEOUT).unwrap();
        s.set_read_timeout(Some(TIMEOUT)).unwrap();
        s.set_nodelay(true).unwrap();
        Self {
            writer: s.try_clone().unwrap(),
            reader: BufReader::new(s),
        }
    }

    fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).unwrap();
    }

    fn read(&mut self, head_only: bool) -> Response {
        read_response(&mut self.reader, head_only).unwrap()
    }

    fn get(&mut self, path: &str) -> Response {
        self.try_get(path).unwrap()
    }

    /// `GET path`; an error if the answer breaks off.
    fn try_get(&mut self, path: &str) -> std::io::Result<Response> {
        self.send(format!("GET {path} HTTP/1.1\r\nHost: shop.example\r\n\r\n").as_bytes());
        read_response(&mut self.reader, false)
    }

    /// True once the director closed this connection.
    fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(self.reader.read(&mut b), Ok(0) | Err(_))
    }
}

fn fast_path_counts(d: &DirectorProcess) -> (f64, f64) {
    let text = d.admin_get("/metrics").text();
    (
        metric(&text, "sticky_director_fast_path_requests_total"),
        metric(&text, "sticky_director_fast_path_handovers_total"),
    )
}

fn echoed_header(resp: &Response, name: &str) -> Vec<String> {
    resp.text()
        .lines()
        .take_while(|l| !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
        .collect()
}

#[test]
fn plain_requests_take_the_fast_path_with_the_general_paths_rules() {
    let ws1 = RawBackend::start();
    let d = DirectorProcess::start(STICKY, &ws1.cluster(""));
    let mut c = Client::connect(d.public);
    c.send(
        b"GET /echo?q=1 HTTP/1.1\r\nHost: shop.example\r\nConnection: keep-alive\r\n\
          Sticky-Owner: forged\r\nsticky-epoch: 1\r\nX-Forwarded-For: 6.6.6.6\r\n\
          X-Forwarded-Host: evil.example\r\nProxy-Authorization: Basic Zm9vOmJhcg==\r\n\
          Keep-Alive: timeout=5\r\nTE: trailers\r\nX-App: kept\r\nCookie: a=b\r\n\r\n",
    );
    let resp = c.read(false);
    assert_eq!(resp.status, 200);
    assert!(
        resp.text().starts_with("GET /echo?q=1\n"),
        "{}",
        resp.text()
    );
    assert_eq!(echoed_header(&resp, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(echoed_header(&resp, "x-forwarded-proto"), ["http"]);
    assert_eq!(echoed_header(&resp, "x-forwarded-host"), ["shop.example"]);
    assert_eq!(echoed_header(&resp, "host"), ["shop.example"]);
    assert_eq!(echoed_header(&resp, "x-app"), ["kept"]);
    assert_eq!(echoed_header(&resp, "cookie"), ["a=b"]);
    // The client's forged epoch is replaced by the one ws1 reported.
    assert_eq!(echoed_header(&resp, "sticky-epoch"), ["7"]);
    for gone in [
        "sticky-owner",
        "connection",
        "keep-alive",
        "te",
        "proxy-authorization",
    ] {
        assert!(
            echoed_header(&resp, gone).is_empty(),
            "{gone} reached the web server:\n{}",
            resp.text()
        );
    }
    // A new client gets its route cookie.
    assert!(resp.set_cookie_line("sticky.route").is_some());

    // A body, then two requests in one write (pipelined), on the same
    // connection.
    c.send(b"POST /form HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 11\r\n\r\nhello world");
    let resp = c.read(false);
    assert!(resp.text().starts_with("POST /form\n"));
    assert!(resp.text().ends_with("\n\nhello world"), "{}", resp.text());
    c.send(
        b"GET /one HTTP/1.1\r\nHost: shop.example\r\n\r\n\
          GET /two HTTP/1.1\r\nHost: shop.example\r\n\r\n",
    );
    assert!(c.read(false).text().starts_with("GET /one\n"));
    assert!(c.read(false).text().starts_with("GET /two\n"));

    let (fast, handovers) = fast_path_counts(&d);
    assert_eq!(fast, 4.0, "every request took the fast path");
    assert_eq!(handovers, 0.0);
    // One connection to the web server carried all of them.
    assert_eq!(ws1.app_connections.load(Ordering::SeqCst), 1);
}

#[test]
fn every_response_framing_reaches_the_client_whole() {
    let ws1 = RawBackend::start();
    let d = DirectorProcess::start(STICKY, &ws1.cluster(""));
    let mut c = Client::connect(d.public);

    let resp = c.get("/chunked");
    assert_eq!(resp.status, 200);
    assert_eq!(resp.text(), "hello, world");

    let resp = c.get("/big-chunked");
    assert_eq!(resp.body.len(), 1_000_000);
    assert!(resp.body[..10_000].iter().all(|&b| b == b'a'));
    assert!(resp.body[990_000..].iter().all(|&b| b == b'a' + 99 % 26));

    // The 103 is dropped; the final answer arrives.
    let resp = c.get("/early-hints");
    assert_eq!((resp.status, resp.text().as_str()), (200, "final"));

    c.send(b"HEAD /head HTTP/1.1\r\nHost: shop.example\r\n\r\n");
    let resp = c.read(true);
    assert_eq!(resp.header("content-length"), Some("1000"));

    let resp = c.get("/no-content");
    assert_eq!((resp.status, resp.header("x-seen")), (204, Some("1")));

    let resp = c.get("/hop");
    assert_eq!(resp.text(), "ok");
    assert_eq!(resp.header("x-app"), Some("kept"));
    for gone in ["x-secret", "keep-alive", "connection"] {
        assert_eq!(resp.header(gone), None, "{gone} reached the client");
    }
    // Still the same connection to ws1, and the same client connection.
    assert_eq!(ws1.app_connections.load(Ordering::SeqCst), 1);
    assert_eq!(c.get("/after").status, 200);

    // A body that ends with the connection: the client's connection ends
    // with it, and says so.
    let resp = {
        c.send(b"GET /until-close HTTP/1.1\r\nHost: shop.example\r\n\r\n");
        c.read(false)
    };
    assert_eq!(resp.text(), "until the end");
    assert_eq!(resp.header("connection"), Some("close"));

    let (fast, handovers) = fast_path_counts(&d);
    assert_eq!((fast, handovers), (8.0, 0.0));
}

#[test]
fn malformed_responses_are_never_passed_on_as_whole() {
    let ws1 = RawBackend::start();
    let d = DirectorProcess::start(STICKY, &ws1.cluster(""));
    for path in ["/ambiguous", "/two-lengths", "/bad-chunk", "/truncated"] {
        let mut c = Client::connect(d.public);
        let resp = match c.try_get(path) {
            Ok(resp) => resp,
            // The truncated answer's head and first bytes may have been
            // passed on before its server closed (they are sent as they
            // come when nothing more is there yet, since session 27): then
            // it arrives cut short, its declared length unmet, and the
            // connection closes — never whole.
            Err(e) if path == "/truncated" && e.kind() == std::io::ErrorKind::UnexpectedEof => {
                assert!(c.closed(), "{path}: the connection closed");
                continue;
            }
            Err(e) => panic!("{path}: {e}"),
        };
        assert_eq!(resp.status, 502, "{path}: {}", resp.text());
        assert!(resp.text().contains("502 Bad Gateway"), "{path}");
        // The director answered for itself and the connection goes on.
        assert_eq!(c.get("/fine").status, 200, "{path}");
    }
}

#[test]
fn anything_unusual_is_handed_to_the_general_path() {
    let ws1 = RawBackend::start();
    let d = DirectorProcess::start(STICKY, &ws1.cluster(""));

    // A head that arrives in two parts: the first is handed over before
    // the second is sent.
    let mut c = Client::connect(d.public);
    c.send(b"GET /split HTTP/1.1\r\nHo");
    sticky_test_support::wait_until(
        sticky_test_support::DEADLINE,
        "the partial head handed over",
        || fast_path_counts(&d).1 == 1.0,
    );
    c.send(b"st: shop.example\r\n\r\n");
    let resp = c.read(false);
    assert!(resp.text().starts_with("GET /split\n"), "{}", resp.text());
    // The rest of that connection stays on the general path, and works.
    assert!(c.get("/again").text().starts_with("GET /again\n"));

    // A chunked request body; HTTP/1.0; an absolute-form target.
    let mut c = Client::connect(d.public);
    c.send(
        b"POST /chunked-upload HTTP/1.1\r\nHost: shop.example\r\nTransfer-Encoding: chunked\r\n\r\n\
          3\r\nabc\r\n0\r\n\r\n",
    );
    let resp = c.read(false);
    assert!(resp.text().ends_with("\n\nabc"), "{}", resp.text());
    let mut c = Client::connect(d.public);
    c.send(b"GET /old HTTP/1.0\r\nHost: shop.example\r\n\r\n");
    assert!(c.read(false).text().starts_with("GET /old\n"));
    let mut c = Client::connect(d.public);
    c.send(b"GET http://shop.example/abs HTTP/1.1\r\nHost: shop.example\r\n\r\n");
    assert!(c.read(false).text().starts_with("GET /abs\n"));
    // The reserved path: the general path's 404.
    let mut c = Client::connect(d.public);
    assert_eq!(c.get("/.sticky/health").status, 404);

    let (fast, handovers) = fast_path_counts(&d);
    assert_eq!(fast, 0.0);
    assert_eq!(handovers, 5.0);
}

#[test]
fn the_fast_path_can_be_turned_off() {
    let ws1 = RawBackend::start();
    let d = DirectorProcess::start(STICKY, &ws1.cluster("fast_path = false"));
    let mut c = Client::connect(d.public);
    for _ in 0..3 {
        assert_eq!(c.get("/x").status, 200);
    }
    assert_eq!(fast_path_counts(&d), (0.0, 0.0));
}

#[test]
fn a_closed_client_and_an_idle_one_are_let_go() {
    let ws1 = RawBackend::start();
    let d = DirectorProcess::start(STICKY, &ws1.cluster("header_timeout_ms = 300"));
    let mut c = Client::connect(d.public);
    assert_eq!(c.get("/x").status, 200);
    // Idle past the header timeout: closed by the director.
    assert!(c.closed(), "an idle keep-alive connection must be closed");
    let gauge = || {
        metric(
            &d.admin_get("/metrics").text(),
            "sticky_director_connections",
        )
    };
    sticky_test_support::wait_until(
        sticky_test_support::DEADLINE,
        "the director counts no open connection",
        || gauge() == 0.0,
    );
}

/// Waits until a connection to `port` on loopback has been closed by its
/// far end and not yet by us (`CLOSE_WAIT` in `/proc/net/tcp`): the
/// director has received the web server's FIN on a pooled connection.
fn until_closed_by_the_server(port: u16) {
    let remote = format!("0100007F:{port:04X}");
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
        let close_wait = table.lines().skip(1).any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == remote && f[3] == "08"
        });
        if close_wait {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no connection to port {port} in CLOSE_WAIT within {TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A pooled connection the web server has closed since its last exchange
/// costs no request: a GET (which may be sent again) goes out on it
/// unchecked and, finding it closed, again on a new connection; a POST
/// (which may not) is only ever sent on a connection the kernel says is
/// open, so it skips the closed one (`pool.rs`, `Reuse`).
#[test]
fn a_connection_the_server_closed_while_pooled_costs_no_request() {
    let ws1 = RawBackend::start();
    let d = DirectorProcess::start(STICKY, &ws1.cluster(""));
    let retries = || {
        metric(
            &d.admin_get("/metrics").text(),
            "sticky_director_retries_total",
        )
    };
    let mut c = Client::connect(d.public);

    assert_eq!(c.get("/then-close").status, 200);
    until_closed_by_the_server(ws1.addr.port());
    let before = retries();
    let resp = c.get("/echo");
    assert_eq!(resp.status, 200);
    assert!(resp.text().starts_with("GET /echo\n"), "{}", resp.text());
    assert_eq!(
        retries(),
        before + 1.0,
        "the GET went out on the closed connection, then on a new one"
    );

    assert_eq!(c.get("/then-close").status, 200);
    until_closed_by_the_server(ws1.addr.port());
    let before = retries();
    c.send(b"POST /form HTTP/1.1\r\nHost: shop.example\r\nContent-Length: 5\r\n\r\nhello");
    let resp = c.read(false);
    assert_eq!(resp.status, 200);
    assert!(resp.text().ends_with("\n\nhello"), "{}", resp.text());
    assert_eq!(
        retries(),
        before,
        "the POST was never written to the closed connection"
    );
    // A connection per /then-close, and the one the GET opened anew.
    assert_eq!(ws1.app_connections.load(Ordering::SeqCst), 3);
}
