//! A small blocking HTTP/1.1 client that shows exactly what came back:
//! keep-alive, a cookie jar, `Content-Length` and chunked bodies.

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// Socket timeouts: a bound on a hung test, never a wait a passing test
/// sits through.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

/// One response.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    /// Header names in lower case, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// The first header called `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every `Set-Cookie` as `(name, value)`.
    pub fn set_cookies(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .filter_map(|(_, v)| {
                let pair = v.split(';').next()?;
                let (n, val) = pair.split_once('=')?;
                Some((n.trim().to_owned(), val.trim().to_owned()))
            })
            .collect()
    }

    /// The whole `Set-Cookie` header for cookie `name`.
    pub fn set_cookie_line(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == "set-cookie")
            .map(|(_, v)| v.as_str())
            .find(|v| v.starts_with(&format!("{name}=")))
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
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

/// A client: one keep-alive connection, reopened when the server closed
/// it while idle (as browsers do), and a cookie jar.
pub struct HttpClient {
    addr: SocketAddr,
    stream: Option<BufReader<TcpStream>>,
    /// Cookies sent with every request, updated from `Set-Cookie`.
    pub cookies: BTreeMap<String, String>,
}

impl HttpClient {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            stream: None,
            cookies: BTreeMap::new(),
        }
    }

    /// `GET path`.
    pub fn get(&mut self, path: &str) -> io::Result<Response> {
        self.request("GET", path, &[], b"")
    }

    /// Sends a request with these extra headers and body; reads the answer.
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

/// Reads one response from `r`.
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
