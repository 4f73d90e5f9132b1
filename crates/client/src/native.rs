//! The connection to a `sticky store` over plain TCP (`host:port`,
//! `sticky://`): the request's own task encodes its command and writes it
//! to the socket, and one reader task per connection parses the replies
//! (with the `redis-protocol` crate) and hands each to the request that
//! waits for it, in the order the commands went out. No channel and no
//! task sits between a request and the socket, unlike the `redis` crate's
//! multiplexed connection, which Redis, Redis Cluster and `sticky+tls://`
//! stores still use.
//!
//! - Writing: a request appends its encoded command to the connection's
//!   output buffer and its reply slot to the queue of waiting requests,
//!   both under one lock, so the order of the slots is the order of the
//!   commands on the wire. If no one is writing, it writes the buffer
//!   itself, without awaiting (a non-blocking `write`); commands that
//!   other requests queue meanwhile go out with its next `write`
//!   (pipelining). If the socket takes only part of the buffer (the
//!   store does not read), a flusher task writes the rest when the
//!   socket is writable. No `.await` sits between a command's first and
//!   last byte in a request's task, so a request whose caller gives up
//!   never leaves half a command on the wire.
//! - Reading: replies are matched first in, first out. A request whose
//!   caller gave up (its future dropped, or timed out) leaves its slot in
//!   the queue; its reply is read and discarded, and the next reply goes
//!   to the next slot.
//! - A reply larger than [`MAX_REPLY`], a malformed reply, a reply nobody
//!   waits for, end of file or a socket error breaks the connection: every
//!   waiting request fails with the reason (a retryable error), and so does
//!   every later one until the connection is replaced (see
//!   [`crate::connection`]).

use std::collections::VecDeque;
use std::io;
use std::mem;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use redis::{Cmd, Pipeline, ServerError, Value};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::AbortHandle;

use crate::error::{clip, server_error, ClientError};

/// Largest reply accepted: a `SESS.GET` carries at most the store's
/// `--max-bulk` (16 MiB by default) of payload, and the store reads at most
/// `--max-query-buffer` (64 MiB by default) of a client's input; a reply
/// larger than that is not a session store's and breaks the connection
/// instead of growing the buffer without bound. (1 MiB in the unit tests,
/// which send one over it.)
pub(crate) const MAX_REPLY: usize = if cfg!(test) {
    1024 * 1024
} else {
    64 * 1024 * 1024
};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 16 * 1024;

/// Largest output buffer kept for reuse after a write, and largest read
/// buffer kept between replies.
const KEEP_OUTPUT: usize = 64 * 1024;

/// How to open a connection: the store's address and what the handshake
/// sends.
#[derive(Debug, Clone)]
pub(crate) struct NativeSettings {
    pub(crate) host: String,
    pub(crate) port: u16,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    /// `?protocol=resp3`: `HELLO 3` first, replies in RESP3.
    pub(crate) resp3: bool,
    pub(crate) db: i64,
}

/// Why a request on the connection failed: the connection broke.
pub(crate) type Broken = String;

/// An open connection. Clones share it; the last clone dropped closes it.
#[derive(Clone)]
pub(crate) struct NativeConn {
    handle: Arc<Handle>,
}

/// Owned by the clones of a [`NativeConn`]; closes the connection when
/// dropped.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.fail("connection closed");
    }
}

/// What the request tasks, the reader and the flusher share.
struct Shared {
    stream: TcpStream,
    resp3: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Encoded commands not yet given to the socket.
    out: Vec<u8>,
    /// An empty buffer kept to swap with `out`.
    spare: Vec<u8>,
    /// Whether a task (a request's, or the flusher) is writing: then a
    /// request only queues its command.
    writing: bool,
    /// Whether a request will write the queued commands once the tasks
    /// ready on its thread had their turn: then a request only queues its
    /// command.
    flush_pending: bool,
    /// The requests waiting for replies, in the order of their commands on
    /// the wire.
    waiting: VecDeque<Slot>,
    /// Set once the connection broke: why.
    broken: Option<Broken>,
    /// The reader and the flusher, stopped when the connection breaks.
    tasks: Vec<AbortHandle>,
}

/// Where a reply goes.
enum Slot {
    One(oneshot::Sender<Result<Value, Broken>>),
    /// A pipeline: `want` replies, collected in `got`.
    Many {
        tx: oneshot::Sender<Result<Vec<Value>, Broken>>,
        want: usize,
        got: Vec<Value>,
    },
}

impl Slot {
    fn fail(self, why: &str) {
        // A caller that gave up dropped its receiver: nothing to tell.
        match self {
            Slot::One(tx) => {
                let _ = tx.send(Err(why.to_owned()));
            }
            Slot::Many { tx, .. } => {
                let _ = tx.send(Err(why.to_owned()));
            }
        }
    }
}

/// Flushes the connection's queued commands when dropped.
struct Flush<'a>(&'a Arc<Shared>);

impl Drop for Flush<'_> {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// Why opening a connection failed.
pub(crate) enum ConnectError {
    Io(io::Error),
    /// The handshake's command was refused, or the connection broke.
    Client(ClientError),
}

impl NativeConn {
    /// Connects to the store and runs the handshake: `HELLO 3` (with
    /// `AUTH` when there is a password) for RESP3, else `AUTH` when there is
    /// a password; `SELECT` for a database other than 0; and the library's
    /// name and version (`CLIENT SETINFO`, whose answer is ignored), as the
    /// `redis` crate's connections send them. Not bounded in time: the
    /// caller bounds it.
    pub(crate) async fn connect(settings: &NativeSettings) -> Result<Self, ConnectError> {
        let stream = TcpStream::connect((settings.host.as_str(), settings.port))
            .await
            .map_err(ConnectError::Io)?;
        // Requests are small and latency-bound: no Nagle.
        stream.set_nodelay(true).map_err(ConnectError::Io)?;
        let shared = Arc::new(Shared {
            stream,
            resp3: settings.resp3,
            state: Mutex::new(State::default()),
        });
        let reader = tokio::spawn(read_replies(Arc::clone(&shared)));
        shared.lock().tasks.push(reader.abort_handle());
        let conn = Self {
            handle: Arc::new(Handle { shared }),
        };
        conn.handshake(settings, true).await?;
        Ok(conn)
    }

    async fn handshake(&self, s: &NativeSettings, with_username: bool) -> Result<(), ConnectError> {
        let mut pipe = redis::pipe();
        let auth = if s.resp3 {
            let hello = pipe.cmd("HELLO").arg("3");
            if let Some(password) = &s.password {
                let user = s.username.as_deref().unwrap_or("default");
                hello.arg("AUTH").arg(user).arg(password.as_bytes());
            }
            true
        } else if let Some(password) = &s.password {
            let auth = pipe.cmd("AUTH");
            if let Some(user) = s.username.as_deref().filter(|_| with_username) {
                auth.arg(user);
            }
            auth.arg(password.as_bytes());
            true
        } else {
            false
        };
        if s.db != 0 {
            pipe.cmd("SELECT").arg(s.db);
        }
        pipe.cmd("CLIENT")
            .arg("SETINFO")
            .arg("LIB-NAME")
            .arg("sticky");
        pipe.cmd("CLIENT")
            .arg("SETINFO")
            .arg("LIB-VER")
            .arg(env!("CARGO_PKG_VERSION"));
        let count = pipe.len();
        let replies = self
            .send_pipeline(&pipe, count)
            .await
            .map_err(|why| ConnectError::Client(ClientError::ConnectionLost(why)))?;
        let mut replies = replies.into_iter();
        if auth {
            if let Some(Value::ServerError(e)) = replies.next() {
                let detail = e.details().unwrap_or("");
                // An AUTH with a user name to a server that takes only a
                // password: the `redis` crate retries with the password.
                if !s.resp3
                    && with_username
                    && s.username.is_some()
                    && detail.contains("wrong number of arguments for 'auth' command")
                {
                    return Box::pin(self.handshake(s, false)).await;
                }
                let refused = match server_error(e.code(), e.details()) {
                    ClientError::Auth(msg) => ClientError::Auth(msg),
                    _ if !s.resp3 => ClientError::Auth(clip(&format!(
                        "Password authentication failed: {} {detail}",
                        e.code()
                    ))),
                    other => ClientError::ConnectionLost(format!("HELLO 3 refused: {other}")),
                };
                return Err(ConnectError::Client(refused));
            }
        }
        if s.db != 0 {
            if let Some(Value::ServerError(e)) = replies.next() {
                return Err(ConnectError::Client(ClientError::ConnectionLost(clip(
                    &format!("SELECT refused: {} {}", e.code(), e.details().unwrap_or("")),
                ))));
            }
        }
        Ok(())
    }

    /// Sends `cmd`; its reply (an error reply as [`Value::ServerError`]).
    pub(crate) async fn send(&self, cmd: &Cmd) -> Result<Value, Broken> {
        let (tx, rx) = oneshot::channel();
        self.handle
            .shared
            .submit(|out| cmd.write_packed_command(out), Slot::One(tx))
            .await?;
        rx.await
            .unwrap_or_else(|_| Err(String::from("connection closed")))
    }

    /// Sends the `count` commands of `pipe` in one write; their replies.
    pub(crate) async fn send_pipeline(
        &self,
        pipe: &Pipeline,
        count: usize,
    ) -> Result<Vec<Value>, Broken> {
        let (tx, rx) = oneshot::channel();
        let slot = Slot::Many {
            tx,
            want: count,
            got: Vec::with_capacity(count),
        };
        self.handle
            .shared
            .submit(
                |out| {
                    for cmd in pipe.cmd_iter() {
                        cmd.write_packed_command(out);
                    }
                },
                slot,
            )
            .await?;
        rx.await
            .unwrap_or_else(|_| Err(String::from("connection closed")))
    }

    /// Why the connection broke, if it did.
    pub(crate) fn broken(&self) -> Option<Broken> {
        self.handle.shared.lock().broken.clone()
    }

    /// Breaks the connection: the requests waiting on it fail with `why`.
    pub(crate) fn close(&self, why: &str) {
        self.handle.shared.fail(why);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Nothing panics while holding the lock; recover if it ever did.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues the command `encode` writes, with its reply slot, and writes
    /// it unless another task is writing (which then writes it too).
    async fn submit(
        self: &Arc<Self>,
        encode: impl FnOnce(&mut Vec<u8>),
        slot: Slot,
    ) -> Result<(), Broken> {
        {
            let mut st = self.lock();
            if let Some(why) = &st.broken {
                return Err(why.clone());
            }
            encode(&mut st.out);
            st.waiting.push_back(slot);
            if st.writing || st.flush_pending {
                return Ok(());
            }
            st.flush_pending = true;
        }
        // Let the tasks ready on this thread queue their commands first:
        // they go out in the same write. Flushed even if this request is
        // dropped meanwhile.
        let flush = Flush(self);
        tokio::task::yield_now().await;
        drop(flush);
        Ok(())
    }

    /// Writes what is queued, unless a task is writing (which then does).
    fn flush(self: &Arc<Self>) {
        let mut st = self.lock();
        st.flush_pending = false;
        if st.writing || st.out.is_empty() || st.broken.is_some() {
            return;
        }
        st.writing = true;
        let spare = mem::take(&mut st.spare);
        let buf = mem::replace(&mut st.out, spare);
        drop(st);
        self.write_now(buf);
    }

    /// Writes `buf`, then whatever was queued meanwhile, without waiting:
    /// what the socket does not take now is left to a flusher task.
    fn write_now(self: &Arc<Self>, mut buf: Vec<u8>) {
        loop {
            let mut written = 0;
            while written < buf.len() {
                match self.stream.try_write(&buf[written..]) {
                    Ok(n) => written += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.fail(&clip(&format!("write: {e}")));
                        return;
                    }
                }
            }
            if written < buf.len() {
                buf.drain(..written);
                let flusher = tokio::spawn(flush(Arc::clone(self), buf));
                let mut st = self.lock();
                if st.broken.is_some() {
                    flusher.abort();
                } else {
                    st.tasks.push(flusher.abort_handle());
                }
                return;
            }
            buf.clear();
            let mut st = self.lock();
            if st.out.is_empty() || st.broken.is_some() {
                st.writing = false;
                if buf.capacity() <= KEEP_OUTPUT {
                    st.spare = buf;
                }
                return;
            }
            mem::swap(&mut buf, &mut st.out);
        }
    }

    /// Breaks the connection (once): fails every waiting request with
    /// `why` and stops the reader and the flusher.
    fn fail(&self, why: &str) {
        let mut st = self.lock();
        if st.broken.is_some() {
            return;
        }
        st.broken = Some(why.to_owned());
        st.out = Vec::new();
        st.spare = Vec::new();
        let waiting = mem::take(&mut st.waiting);
        let tasks = mem::take(&mut st.tasks);
        drop(st);
        for slot in waiting {
            slot.fail(why);
        }
        for task in tasks {
            task.abort();
        }
    }

    /// Hands `replies` to the waiting requests, first in first out.
    /// `false` if a reply came that no request waits for.
    fn deliver(&self, replies: &mut Vec<Value>) -> bool {
        let mut st = self.lock();
        for reply in replies.drain(..) {
            let Some(slot) = st.waiting.front_mut() else {
                return false;
            };
            match slot {
                Slot::One(_) => {
                    if let Some(Slot::One(tx)) = st.waiting.pop_front() {
                        // A caller that gave up dropped its receiver: the
                        // reply is discarded.
                        let _ = tx.send(Ok(reply));
                    }
                }
                Slot::Many { want, got, .. } => {
                    got.push(reply);
                    if got.len() >= *want {
                        if let Some(Slot::Many { tx, got, .. }) = st.waiting.pop_front() {
                            let _ = tx.send(Ok(got));
                        }
                    }
                }
            }
        }
        true
    }
}

/// Writes `buf`, then whatever was queued meanwhile, waiting for the
/// socket to take it.
async fn flush(shared: Arc<Shared>, mut buf: Vec<u8>) {
    loop {
        while !buf.is_empty() {
            if let Err(e) = shared.stream.writable().await {
                shared.fail(&clip(&format!("write: {e}")));
                return;
            }
            match shared.stream.try_write(&buf) {
                Ok(n) => {
                    buf.drain(..n);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => {
                    shared.fail(&clip(&format!("write: {e}")));
                    return;
                }
            }
        }
        let mut st = shared.lock();
        if st.out.is_empty() || st.broken.is_some() {
            st.writing = false;
            return;
        }
        mem::swap(&mut buf, &mut st.out);
    }
}

/// The reader task: parses replies and hands them out until the
/// connection breaks.
async fn read_replies(shared: Arc<Shared>) {
    let why = read_until_broken(&shared).await;
    shared.fail(&why);
}

async fn read_until_broken(shared: &Shared) -> Broken {
    let mut buf: Vec<u8> = Vec::with_capacity(READ_CHUNK);
    let mut replies = Vec::new();
    loop {
        let mut start = 0;
        while start < buf.len() {
            match decode(&buf[start..], shared.resp3) {
                Ok(Some((Some(value), used))) => {
                    replies.push(value);
                    start += used;
                }
                // Out-of-band data (a RESP3 push): no request's reply.
                Ok(Some((None, used))) => start += used,
                Ok(None) => break,
                Err(why) => return why,
            }
        }
        buf.drain(..start);
        if !replies.is_empty() && !shared.deliver(&mut replies) {
            return String::from("a reply no request waits for");
        }
        if buf.len() >= MAX_REPLY {
            return format!("a reply over the limit of {MAX_REPLY} bytes");
        }
        if buf.is_empty() && buf.capacity() > KEEP_OUTPUT {
            // A large reply is done with: do not keep its room.
            buf = Vec::with_capacity(READ_CHUNK);
        }
        buf.reserve(READ_CHUNK);
        if let Err(e) = shared.stream.readable().await {
            return clip(&format!("read: {e}"));
        }
        match shared.stream.try_read_buf(&mut buf) {
            Ok(0) => return String::from("connection closed by the store"),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return clip(&format!("read: {e}")),
        }
    }
}

/// The first reply in `buf` and its length: `None` for out-of-band data;
/// `Ok(None)` if incomplete.
fn decode(buf: &[u8], resp3: bool) -> Result<Option<(Option<Value>, usize)>, Broken> {
    // The parser's message may quote the bytes it choked on: not repeated.
    let malformed = |_| String::from("malformed reply, connection dropped");
    if resp3 {
        match redis_protocol::resp3::decode::complete::decode(buf).map_err(malformed)? {
            None => Ok(None),
            Some((frame, used)) => Ok(Some((from_resp3(frame)?, used))),
        }
    } else {
        match redis_protocol::resp2::decode::decode(buf).map_err(malformed)? {
            None => Ok(None),
            Some((frame, used)) => Ok(Some((Some(from_resp2(frame)?), used))),
        }
    }
}

/// An error line `CODE detail` as the `redis` crate's parser splits it.
fn error_value(line: &str) -> Result<Value, Broken> {
    let (code, detail) = match line.split_once(' ') {
        Some((code, detail)) => (code, Some(detail.to_owned())),
        None => (line, None),
    };
    ServerError::try_from(redis::make_extension_error(code.to_owned(), detail))
        .map(Value::ServerError)
        .map_err(|_| String::from("malformed error reply"))
}

fn status_value(data: Vec<u8>) -> Result<Value, Broken> {
    if data == b"OK" {
        return Ok(Value::Okay);
    }
    String::from_utf8(data)
        .map(Value::SimpleString)
        .map_err(|_| String::from("a status reply that is not UTF-8"))
}

fn from_resp2(frame: redis_protocol::resp2::types::OwnedFrame) -> Result<Value, Broken> {
    use redis_protocol::resp2::types::OwnedFrame as F;
    Ok(match frame {
        F::SimpleString(data) => status_value(data)?,
        F::Error(line) => error_value(&line)?,
        F::Integer(i) => Value::Int(i),
        F::BulkString(data) => Value::BulkString(data),
        F::Array(items) => Value::Array(
            items
                .into_iter()
                .map(from_resp2)
                .collect::<Result<_, _>>()?,
        ),
        F::Null => Value::Nil,
    })
}

/// A RESP3 frame as the `redis` crate's value; `None` for a push.
fn from_resp3(frame: redis_protocol::resp3::types::OwnedFrame) -> Result<Option<Value>, Broken> {
    use redis_protocol::resp3::types::OwnedFrame as F;
    if matches!(frame, F::Push { .. }) {
        return Ok(None);
    }
    resp3_value(frame).map(Some)
}

fn resp3_value(frame: redis_protocol::resp3::types::OwnedFrame) -> Result<Value, Broken> {
    use redis_protocol::resp3::types::{OwnedFrame as F, VerbatimStringFormat};
    let list = |items: Vec<F>| {
        items
            .into_iter()
            .map(resp3_value)
            .collect::<Result<Vec<_>, _>>()
    };
    let pairs = |map: redis_protocol::resp3::types::FrameMap<F, F>| {
        map.into_iter()
            .map(|(k, v)| Ok((resp3_value(k)?, resp3_value(v)?)))
            .collect::<Result<Vec<_>, Broken>>()
    };
    let (value, attributes) = match frame {
        F::BlobString { data, attributes } => (Value::BulkString(data), attributes),
        F::SimpleString { data, attributes } => (status_value(data)?, attributes),
        F::SimpleError { data, attributes } => (error_value(&data)?, attributes),
        F::BlobError { data, attributes } => {
            (error_value(&String::from_utf8_lossy(&data))?, attributes)
        }
        F::Boolean { data, attributes } => (Value::Boolean(data), attributes),
        F::Null => (Value::Nil, None),
        F::Number { data, attributes } => (Value::Int(data), attributes),
        F::Double { data, attributes } => (Value::Double(data), attributes),
        F::BigNumber { data, attributes } => (Value::BigNumber(data), attributes),
        F::VerbatimString {
            data,
            format,
            attributes,
        } => (
            Value::VerbatimString {
                format: match format {
                    VerbatimStringFormat::Text => redis::VerbatimFormat::Text,
                    VerbatimStringFormat::Markdown => redis::VerbatimFormat::Markdown,
                },
                text: String::from_utf8_lossy(&data).into_owned(),
            },
            attributes,
        ),
        F::Array { data, attributes } => (Value::Array(list(data)?), attributes),
        F::Map { data, attributes } => (Value::Map(pairs(data)?), attributes),
        F::Set { data, attributes } => (Value::Set(list(data.into_iter().collect())?), attributes),
        F::Push { .. } | F::Hello { .. } | F::ChunkedString(_) => {
            return Err(String::from("an unexpected RESP3 frame in a reply"))
        }
    };
    Ok(match attributes {
        Some(attributes) => Value::Attribute {
            data: Box::new(value),
            attributes: pairs(attributes)?,
        },
        None => value,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn one(wire: &[u8], resp3: bool) -> Value {
        let (v, used) = decode(wire, resp3).unwrap().unwrap();
        assert_eq!(used, wire.len());
        normal(v.unwrap())
    }

    /// Error replies as their code and detail (the `redis` crate's parser
    /// tells known codes apart; the client only reads the two).
    fn normal(v: Value) -> Value {
        match v {
            Value::ServerError(e) => Value::Array(vec![
                Value::SimpleString(e.code().to_owned()),
                e.details()
                    .map_or(Value::Nil, |d| Value::SimpleString(d.to_owned())),
            ]),
            Value::Array(items) => Value::Array(items.into_iter().map(normal).collect()),
            other => other,
        }
    }

    #[test]
    fn replies_decode_as_the_redis_crate_parses_them() {
        let cases: &[&[u8]] = &[
            b"+OK\r\n",
            b"+PONG\r\n",
            b":-12\r\n",
            b"$3\r\na\r\n\r\n",
            b"$-1\r\n",
            b"*-1\r\n",
            b"*0\r\n",
            b"-STALE 3 7\r\n",
            b"-NOSESSION\r\n",
            b"-ERR unknown command 'X'\r\n",
            b"*6\r\n$4\r\nlive\r\n:1\r\n:2\r\n$1\r\nw\r\n:-1\r\n$4\r\na\r\nb\r\n",
            b"*2\r\n$2\r\n12\r\n*2\r\n$1\r\na\r\n$2\r\nb\x00\r\n",
        ];
        for wire in cases {
            assert_eq!(
                one(wire, false),
                normal(redis::parse_redis_value(wire).unwrap()),
                "{wire:?}"
            );
        }
        let resp3: &[&[u8]] = &[
            b"+OK\r\n",
            b"_\r\n",
            b"#t\r\n",
            b":5\r\n",
            b",1.5\r\n",
            b"$2\r\nab\r\n",
            b"-DEAD the lease\r\n",
            b"!9\r\nSTALE 1 2\r\n",
            b"=7\r\ntxt:abc\r\n",
            b"*2\r\n_\r\n$1\r\nx\r\n",
            b"|1\r\n+k\r\n+v\r\n+OK\r\n",
        ];
        for wire in resp3 {
            assert_eq!(
                one(wire, true),
                normal(redis::parse_redis_value(wire).unwrap()),
                "{wire:?}"
            );
        }
        // A push is nobody's reply.
        assert_eq!(
            decode(b">2\r\n+invalidate\r\n*0\r\n", true).unwrap(),
            Some((None, 21))
        );
    }

    #[test]
    fn incomplete_and_malformed_replies() {
        for part in [&b"$5\r\nab"[..], b"*2\r\n:1\r\n", b"+OK\r", b""] {
            assert_eq!(decode(part, false).unwrap(), None, "{part:?}");
        }
        let err = decode(b"?SECRET\r\n", false).unwrap_err();
        assert!(!err.contains("SECRET"), "{err}");
        assert!(decode(b":x\r\n", false).is_err());
        let err = error_value("STALE 5 6").unwrap();
        assert_eq!(
            crate::reply::reply_value(err),
            Err(ClientError::Stale {
                stored: sticky_proto::Stamp::new(5, 6)
            })
        );
    }
}
