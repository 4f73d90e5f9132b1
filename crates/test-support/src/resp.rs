//! A tiny blocking RESP2/RESP3 client that shows replies exactly as sent on
//! the wire ([`Resp`], [`RespConn`]), and a `redis` crate connection for
//! round trips where the exact wire form does not matter.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::Instant;

use crate::wait::IO_TIMEOUT;

/// A new plain TCP connection to `addr`, with [`IO_TIMEOUT`]s.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect to the store at {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// A new RESP connection to the store at `addr`, authenticated with
/// `password` if there is one.
pub(crate) fn client(addr: SocketAddr, password: Option<&str>) -> RespConn {
    let mut c = RespConn::from_stream(connect(addr)).unwrap();
    if let Some(pass) = password {
        assert_eq!(c.cmd(&[b"AUTH", pass.as_bytes()]).unwrap(), Resp::ok());
    }
    c
}

/// A synchronous `redis` crate connection to the store at `addr`
/// (authenticated with `password`, if any), with [`IO_TIMEOUT`]s.
pub(crate) fn redis_connection(addr: SocketAddr, password: Option<&str>) -> redis::Connection {
    let url = match password {
        Some(p) => format!("redis://:{p}@{addr}/"),
        None => format!("redis://{addr}/"),
    };
    let client = redis::Client::open(url).expect("redis client");
    let conn = client
        .get_connection_with_timeout(IO_TIMEOUT)
        .expect("redis connection");
    conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    conn
}

/// One RESP2 or RESP3 reply, as sent.
#[derive(Clone, PartialEq)]
pub enum Resp {
    /// `+text`
    Simple(String),
    /// `-text` (code and message)
    Error(String),
    /// `:n`
    Int(i64),
    /// `$n` bulk string
    Bulk(Vec<u8>),
    /// `$-1` (RESP2 null bulk)
    NilBulk,
    /// `*-1` (RESP2 null array)
    NilArray,
    /// `_` (RESP3 null)
    Null,
    /// `*n` array
    Array(Vec<Resp>),
    /// `%n` map (RESP3)
    Map(Vec<(Resp, Resp)>),
    /// `~n` set (RESP3)
    Set(Vec<Resp>),
    /// `#t` / `#f` (RESP3)
    Boolean(bool),
    /// `,x` double (RESP3), as text
    Double(String),
}

impl Resp {
    /// `+OK`
    pub fn ok() -> Resp {
        Resp::Simple("OK".into())
    }

    /// `+text`
    pub fn simple(text: &str) -> Resp {
        Resp::Simple(text.into())
    }

    /// `-text`
    pub fn error(text: &str) -> Resp {
        Resp::Error(text.into())
    }

    /// `$n` bulk with these bytes.
    pub fn bulk(b: impl AsRef<[u8]>) -> Resp {
        Resp::Bulk(b.as_ref().to_vec())
    }

    /// Whether this is an error reply starting with `prefix`.
    pub fn is_error_starting(&self, prefix: &str) -> bool {
        matches!(self, Resp::Error(e) if e.starts_with(prefix))
    }

    /// The integer of a `:n` reply.
    pub fn as_int(&self) -> Option<i64> {
        match self {
            Resp::Int(n) => Some(*n),
            _ => None,
        }
    }

    /// The bytes of a bulk string or the text of a status.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Resp::Bulk(b) => Some(b),
            Resp::Simple(s) => Some(s.as_bytes()),
            _ => None,
        }
    }

    /// The `name:value` field of an `INFO` reply.
    pub fn info_field(&self, name: &str) -> Option<String> {
        let text = String::from_utf8_lossy(self.as_bytes()?).into_owned();
        text.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(':'))
                .map(|v| v.trim().to_owned())
        })
    }
}

impl fmt::Debug for Resp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resp::Simple(s) => write!(f, "+{s}"),
            Resp::Error(s) => write!(f, "-{s}"),
            Resp::Int(n) => write!(f, ":{n}"),
            Resp::Bulk(b) => write!(f, "${:?}", String::from_utf8_lossy(b)),
            Resp::NilBulk => write!(f, "$-1"),
            Resp::NilArray => write!(f, "*-1"),
            Resp::Null => write!(f, "_"),
            Resp::Array(items) => f.debug_list().entries(items).finish(),
            Resp::Map(pairs) => f
                .debug_map()
                .entries(pairs.iter().map(|(k, v)| (k, v)))
                .finish(),
            Resp::Set(items) => write!(f, "~{items:?}"),
            Resp::Boolean(b) => write!(f, "#{b}"),
            Resp::Double(d) => write!(f, ",{d}"),
        }
    }
}

/// The RESP multibulk encoding of a request.
pub fn encode_request(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Reads a CRLF-terminated line, byte by byte (never reads past it).
fn read_line(r: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        if r.read(&mut byte)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "connection closed (after {:?})",
                    String::from_utf8_lossy(&line)
                ),
            ));
        }
        line.push(byte[0]);
        if line.ends_with(b"\r\n") {
            line.truncate(line.len() - 2);
            return Ok(line);
        }
        if line.len() > 1 << 20 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
    }
}

fn bad(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn parse_num(text: &str) -> io::Result<i64> {
    text.parse()
        .map_err(|_| bad(format!("bad number in reply: {text:?}")))
}

/// Reads exactly one reply from `r`, never reading past its end (so the next
/// reply stays in the socket). An EOF before a complete reply is an
/// `UnexpectedEof` error.
pub fn read_reply(r: &mut impl Read) -> io::Result<Resp> {
    let line = read_line(r)?;
    let Some((&kind, rest)) = line.split_first() else {
        return Err(bad("empty reply line".into()));
    };
    let text = String::from_utf8_lossy(rest).into_owned();
    Ok(match kind {
        b'+' => Resp::Simple(text),
        b'-' => Resp::Error(text),
        b':' => Resp::Int(parse_num(&text)?),
        b'_' => Resp::Null,
        b'#' => Resp::Boolean(text == "t"),
        b',' => Resp::Double(text),
        b'$' => match parse_num(&text)? {
            -1 => Resp::NilBulk,
            n if n < 0 => return Err(bad(format!("bad bulk length {n}"))),
            n => {
                let mut buf = vec![0u8; n as usize + 2];
                r.read_exact(&mut buf)?;
                if !buf.ends_with(b"\r\n") {
                    return Err(bad("bulk string without CRLF".into()));
                }
                buf.truncate(n as usize);
                Resp::Bulk(buf)
            }
        },
        b'*' | b'~' => match parse_num(&text)? {
            -1 if kind == b'*' => Resp::NilArray,
            n if n < 0 => return Err(bad(format!("bad aggregate length {n}"))),
            n => {
                let items = (0..n).map(|_| read_reply(r)).collect::<io::Result<_>>()?;
                if kind == b'*' {
                    Resp::Array(items)
                } else {
                    Resp::Set(items)
                }
            }
        },
        b'%' => {
            let n = parse_num(&text)?;
            let mut pairs = Vec::new();
            for _ in 0..n {
                let k = read_reply(r)?;
                let v = read_reply(r)?;
                pairs.push((k, v));
            }
            Resp::Map(pairs)
        }
        other => {
            return Err(bad(format!(
                "unknown reply type {:?} in line {:?}",
                char::from(other),
                String::from_utf8_lossy(&line)
            )))
        }
    })
}

/// Sends one request (as a multibulk) on `stream` and reads its reply.
pub fn resp_cmd(stream: &mut TcpStream, args: &[&[u8]]) -> io::Result<Resp> {
    stream.write_all(&encode_request(args))?;
    read_reply(stream)
}

/// Reads from `stream` until the peer closes it, up to [`IO_TIMEOUT`];
/// returns what was read. A connection reset counts as closed.
pub fn read_to_close(stream: &mut TcpStream) -> Vec<u8> {
    let mut all = Vec::new();
    let mut buf = [0u8; 8192];
    let start = Instant::now();
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return all,
            Ok(n) => all.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                ) =>
            {
                return all
            }
            Err(e) => panic!(
                "the store did not close the connection within {:?} ({e}); read so far: {:?}",
                start.elapsed(),
                String::from_utf8_lossy(&all)
            ),
        }
    }
}

/// A blocking RESP connection: send requests, read replies, exactly as on
/// the wire.
pub struct RespConn {
    stream: TcpStream,
}

impl RespConn {
    /// Wraps a connected stream, setting [`IO_TIMEOUT`]s.
    pub fn from_stream(stream: TcpStream) -> io::Result<RespConn> {
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        stream.set_nodelay(true)?;
        Ok(RespConn { stream })
    }

    /// Connects to `addr`.
    pub fn connect(addr: SocketAddr) -> io::Result<RespConn> {
        Self::from_stream(TcpStream::connect_timeout(&addr, IO_TIMEOUT)?)
    }

    /// Sends one request and reads its reply.
    pub fn cmd(&mut self, args: &[&[u8]]) -> io::Result<Resp> {
        resp_cmd(&mut self.stream, args)
    }

    /// [`cmd`](Self::cmd) with the arguments as text, split on blanks
    /// (convenient for requests without binary or blank-containing values).
    /// Panics on an I/O error.
    pub fn cmd_str(&mut self, line: &str) -> Resp {
        let args: Vec<&[u8]> = line.split_ascii_whitespace().map(str::as_bytes).collect();
        self.cmd(&args)
            .unwrap_or_else(|e| panic!("request {line:?}: {e}"))
    }

    /// `SESS.PUT key gen seq owner ttl_ms payload`; panics on an I/O error.
    #[allow(clippy::too_many_arguments)]
    pub fn sess_put(
        &mut self,
        key: &str,
        generation: u64,
        seq: u64,
        owner: &str,
        ttl_ms: u64,
        payload: &[u8],
    ) -> Resp {
        self.cmd(&[
            b"SESS.PUT",
            key.as_bytes(),
            generation.to_string().as_bytes(),
            seq.to_string().as_bytes(),
            owner.as_bytes(),
            ttl_ms.to_string().as_bytes(),
            payload,
        ])
        .unwrap_or_else(|e| panic!("SESS.PUT {key}: {e}"))
    }

    /// Writes raw bytes.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads one reply.
    pub fn read_reply(&mut self) -> io::Result<Resp> {
        read_reply(&mut self.stream)
    }

    /// Reads until the store closes the connection (see [`read_to_close`]).
    pub fn read_to_close(&mut self) -> Vec<u8> {
        read_to_close(&mut self.stream)
    }

    /// Closes the writing half (the store sees EOF).
    pub fn shutdown_write(&self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// The underlying stream.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
}
