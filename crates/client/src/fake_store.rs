//! A scripted fake store for the client's unit tests: speaks RESP2 through
//! `sticky_proto::resp`, answers each command with a handler, logs what it
//! received, and can freeze or stop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use sticky_proto::resp::{parse_request, Limits, Reply, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the fake store does with a command.
pub(crate) enum Act {
    Reply(Reply),
    /// Stop answering on this connection (a frozen store).
    Hang,
}

pub(crate) type Handler = Arc<dyn Fn(&[Bytes]) -> Act + Send + Sync>;

/// A fake store speaking RESP2 through `sticky_proto::resp`, answering with a
/// handler; `CLIENT ...` (sent by the handshake) gets `+OK`.
pub(crate) struct FakeStore {
    pub(crate) addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    log: Arc<Mutex<Vec<Vec<Bytes>>>>,
    tasks: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
}

impl FakeStore {
    pub(crate) async fn start(handler: impl Fn(&[Bytes]) -> Act + Send + Sync + 'static) -> Self {
        Self::start_on("127.0.0.1:0".parse().unwrap(), Arc::new(handler)).await
    }

    pub(crate) async fn start_on(addr: std::net::SocketAddr, handler: Handler) -> Self {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let log = Arc::new(Mutex::new(Vec::new()));
        let tasks = Arc::new(Mutex::new(Vec::new()));
        let (acc, lg, ts) = (accepted.clone(), log.clone(), tasks.clone());
        let accept = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                acc.fetch_add(1, Ordering::SeqCst);
                let task = tokio::spawn(serve(stream, handler.clone(), lg.clone()));
                ts.lock().unwrap().push(task.abort_handle());
            }
        });
        tasks.lock().unwrap().push(accept.abort_handle());
        Self {
            addr,
            accepted,
            log,
            tasks,
        }
    }

    /// Closes the listener and every connection.
    pub(crate) fn stop(&self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
    }

    pub(crate) fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Every command received, but the handshake's `CLIENT` and `HELLO`.
    pub(crate) fn commands(&self) -> Vec<Vec<Bytes>> {
        let log = self.log.lock().unwrap();
        log.iter()
            .filter(|c| {
                let name = c[0].to_ascii_uppercase();
                name != b"CLIENT" && name != b"HELLO"
            })
            .cloned()
            .collect()
    }

    pub(crate) fn last_command(&self) -> Vec<Bytes> {
        self.log.lock().unwrap().last().cloned().unwrap_or_default()
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn serve(mut stream: TcpStream, handler: Handler, log: Arc<Mutex<Vec<Vec<Bytes>>>>) {
    let mut buf = BytesMut::new();
    loop {
        while let Some(args) = parse_request(&mut buf, &Limits::default()).unwrap() {
            let Some(name) = args.first() else { continue };
            let act = if name.eq_ignore_ascii_case(b"CLIENT") {
                Act::Reply(Reply::OK)
            } else {
                log.lock().unwrap().push(args.clone());
                handler(&args)
            };
            match act {
                Act::Reply(reply) => {
                    let mut out = BytesMut::new();
                    reply.encode(Version::Resp2, &mut out);
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
                Act::Hang => std::future::pending::<()>().await,
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}
