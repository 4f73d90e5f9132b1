//! The one HTTP/1.1 client of the tests, blocking, showing exactly what
//! came back: one-shot requests ([`http_request`], `Connection: close`),
//! a keep-alive client with a cookie jar ([`HttpClient`]), raw bytes in
//! and one response out ([`raw_exchange`]); one response parser
//! ([`read_response`]: `Content-Length`, chunked, or until close).

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Socket timeouts of one request: a bound on a hung test, never a wait a
/// passing test sits through.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One response.
#[derive(Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "HTTP {} {:?} {:?}",
            self.status,
            self.headers,
            self.text()
        )
    }
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of header `name`.
    pub fn headers_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics showing the response if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self:?}"))
    }

    /// Asserts status 200 and returns the JSON body.
    pub fn json_ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200: {self:?}");
        self.json()
    }

    /// The value the response sets cookie `name` to: `Some(Some(v))` for a
    /// new value, `Some(None)` for a removal (`Max-Age=0` or empty value),
    /// `None` if it does not set it.
    pub fn set_cookie(&self, name: &str) -> Option<Option<String>> {
        self.cookies_set()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    /// Every cookie the response sets, in order, as in
    /// [`set_cookie`](Self::set_cookie): `(name, Some(value))` for a new
    /// value, `(name, None)` for a removal.
    pub fn cookies_set(&self) -> Vec<(String, Option<String>)> {
        self.headers_all("set-cookie")
            .filter_map(|line| {
                let mut parts = line.split(';');
                let (k, v) = parts.next()?.trim().split_once('=')?;
                let removed =
                    v.is_empty() || parts.any(|a| a.trim().eq_ignore_ascii_case("max-age=0"));
                Some((k.to_owned(), (!removed).then(|| v.to_owned())))
            })
            .collect()
    }

    /// Every `Set-Cookie` as `(name, value)`, removals included (with
    /// their empty or stale value).
    pub fn set_cookies(&self) -> Vec<(String, String)> {
        self.headers_all("set-cookie")
            .filter_map(|v| {
                let pair = v.split(';').next()?;
                let (n, val) = pair.split_once('=')?;
                Some((n.trim().to_owned(), val.trim().to_owned()))
            })
            .collect()
    }

    /// The whole `Set-Cookie` header for cookie `name`.
    pub fn set_cookie_line(&self, name: &str) -> Option<&str> {
        let prefix = format!("{name}=");
        self.headers_all("set-cookie")
            .find(|v| v.starts_with(&prefix))
    }

    /// Which backend answered (`x-backend`).
    pub fn backend(&self) -> Option<&str> {
        self.header("x-backend")
    }

    /// The `key=value` field of a `/count` or `/value` answer.
    pub fn field(&self, key: &str) -> Option<String> {
        self.text().split_whitespace().find_map(|w| {
            w.strip_prefix(key)
                .and_then(|r| r.strip_prefix('='))
                .map(str::to_owned)
        })
    }
}

/// [`http_request_timeout`] with [`HTTP_TIMEOUT`].
///
/// # Errors
///
/// Connecting, sending or reading failed, or the response is malformed.
pub fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> io::Result<Response> {
    http_request_timeout(addr, method, path, headers, body, HTTP_TIMEOUT)
}

/// One HTTP/1.1 request on a new connection (`Connection: close`, `Host`
/// the address, `Content-Length` always): the whole response. Header
/// values are sent as given, byte for byte.
///
/// # Errors
///
/// Connecting, sending or reading failed, or the response is malformed.
pub fn http_request_timeout(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> io::Result<Response> {
    let mut s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    let body = body.unwrap_or_default();
    let mut req =
        format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n").into_bytes();
    for (k, v) in headers {
        req.extend_from_slice(k.as_bytes());
        req.extend_from_slice(b": ");
        req.extend_from_slice(v.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    req.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
    req.extend_from_slice(body);
    s.write_all(&req)?;
    read_response(&mut BufReader::new(s), method == "HEAD")
}

/// `method path` on `addr` (see [`http_request`]) with `Cookie: cookie`
/// unless `cookie` is empty, and `json` as the body if given.
pub(crate) fn request_with_cookie(
    addr: SocketAddr,
    method: &str,
    path: &str,
    cookie: &str,
    json: Option<&Value>,
) -> io::Result<Response> {
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if !cookie.is_empty() {
        headers.push(("Cookie", cookie));
    }
    let body = json.map(|j| serde_json::to_vec(j).expect("JSON serializes"));
    if body.is_some() {
        headers.push(("Content-Type", "application/json"));
    }
    http_request(addr, method, path, &headers, body.as_deref())
}

/// A client: one keep-alive connection, reopened when the server closed
/// it while idle (as browsers do), and a cookie jar.
pub struct HttpClient {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    /// Cookies sent with every request, updated from `Set-Cookie`.
    pub cookies: BTreeMap<String, String>,
}

impl HttpClient {
    /// A client of `addr`, not connected yet, with an empty jar.
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            cookies: BTreeMap::new(),
        }
    }

    /// `GET path`.
    ///
    /// # Errors
    ///
    /// As [`request`](Self::request).
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// Sends a request with these extra headers and body; reads the answer.
    ///
    /// # Errors
    ///
    /// Connecting, sending or reading failed (the connection is then
    /// dropped), or the response is malformed.
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> io::Result<Response> {
        if self
            .stream
            .as_ref()
            .is_some_and(|s| closed_by_peer(s.get_ref()))
        {
            self.stream = None;
        }
        if self.stream.is_none() {
            let s = TcpStream::connect_timeout(&self.addr, HTTP_TIMEOUT)?;
            s.set_read_timeout(Some(HTTP_TIMEOUT))?;
            s.set_write_timeout(Some(HTTP_TIMEOUT))?;
            s.set_nodelay(true)?;
            self.stream = Some(BufReader::new(s));
        }
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: sticky.test\r\n");
        if !self.cookies.is_empty() {
            let jar: Vec<String> = self
                .cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            head.push_str(&format!("Cookie: {}\r\n", jar.join("; ")));
        }
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !body.is_empty() || method == "POST" || method == "PUT" {
            head.push_str(&format!("Content-Length: {}\r\n", body.len()));
        }
        head.push_str("\r\n");
        let result = (|| {
            let stream = self.stream.as_mut().expect("connected");
            let mut bytes = head.into_bytes();
            bytes.extend_from_slice(body);
            stream.get_mut().write_all(&bytes)?;
            read_response(stream, method == "HEAD")
        })();
        match result {
            Ok(resp) => {
                if resp
                    .header("connection")
                    .is_some_and(|c| c.eq_ignore_ascii_case("close"))
                {
                    self.stream = None;
                }
                for (k, v) in resp.set_cookies() {
                    self.cookies.insert(k, v);
                }
                Ok(resp)
            }
            Err(e) => {
                self.stream = None;
                Err(e)
            }
        }
    }
}

/// True if the peer closed this idle connection (EOF or reset waiting).
fn closed_by_peer(s: &TcpStream) -> bool {
    if s.set_nonblocking(true).is_err() {
        return true;
    }
    let mut b = [0u8; 1];
    let closed = match s.peek(&mut b) {
        Ok(_) => true, // EOF, or bytes nobody asked for
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    let _ = s.set_nonblocking(false);
    closed
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut line = String::new();
    if r.read_line(&mut line)? == 0 {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "connection closed before a complete response",
        ));
    }
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Reads one response from `r` (without its body if `head_only`).
///
/// # Errors
///
/// Reading failed, or the response is malformed.
pub fn read_response(r: &mut impl BufRead, head_only: bool) -> io::Result<Response> {
    let status_line = read_line(r)?;
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, status_line.clone()))?;
    let mut headers = Vec::new();
    loop {
        let line = read_line(r)?;
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let resp = Response {
        status,
        headers,
        body: Vec::new(),
    };
    if head_only || status == 101 || status == 204 || status == 304 || (100..200).contains(&status)
    {
        return Ok(resp);
    }
    let mut body = Vec::new();
    if let Some(len) = resp.header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        body.resize(len, 0);
        r.read_exact(&mut body)?;
    } else if resp
        .header("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let size_line = read_line(r)?;
            let size = usize::from_str_radix(size_line.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "chunk size"))?;
            if size == 0 {
                while !read_line(r)?.is_empty() {}
                break;
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            read_line(r)?;
        }
    } else {
        r.read_to_end(&mut body)?;
    }
    Ok(Response { body, ..resp })
}

/// Sends `bytes` on a new connection and reads one response.
///
/// # Errors
///
/// Connecting or reading failed, or the response is malformed.
pub fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> io::Result<Response> {
    let s = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT)?;
    s.set_read_timeout(Some(HTTP_TIMEOUT))?;
    s.set_write_timeout(Some(HTTP_TIMEOUT))?;
    let mut w = s.try_clone()?;
    // The director may answer (431...) and close before reading it all:
    // a failed write still leaves its answer to read.
    let _ = w.write_all(bytes);
    read_response(&mut BufReader::new(s), false)
}
