//! A broken store: a TCP listener that hangs or answers garbage
//! ([`FakeStore`]), for the web servers' bad-input tests.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::random::random_u64;
use crate::wait::POLL;

/// How a [`FakeStore`] misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Misbehavior {
    /// Accepts connections, reads, and never answers.
    Hang,
    /// Answers whatever it reads with random bytes that are no RESP.
    Garbage,
}

/// A loopback listener that plays a broken store until dropped.
pub struct FakeStore {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: Option<JoinHandle<()>>,
}

impl FakeStore {
    /// Listens on a free loopback port and misbehaves as told.
    pub fn start(how: Misbehavior) -> FakeStore {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a fake store");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (st, acc) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((sock, _)) => {
                        acc.fetch_add(1, Ordering::Relaxed);
                        let _ = sock.set_nonblocking(false);
                        let _ = sock.set_read_timeout(Some(Duration::from_millis(200)));
                        match how {
                            Misbehavior::Hang => {
                                // Keep it open; drain what comes so the
                                // client's writes never block.
                                let st = st.clone();
                                let mut s = sock.try_clone().unwrap();
                                conns.lock().unwrap().push(sock);
                                std::thread::spawn(move || drain(&mut s, &st, false));
                            }
                            Misbehavior::Garbage => {
                                let st = st.clone();
                                let mut s = sock;
                                std::thread::spawn(move || drain(&mut s, &st, true));
                            }
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(_) => std::thread::sleep(POLL),
                }
            }
        });
        FakeStore {
            addr,
            stop,
            accepted,
            thread: Some(thread),
        }
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }
}

/// Reads from `s` until EOF or `stop`; with `answer`, answers every read
/// with random non-RESP bytes.
fn drain(s: &mut TcpStream, stop: &AtomicBool, answer: bool) {
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        match s.read(&mut buf) {
            Ok(0) => return,
            Ok(_) if answer => {
                let mut junk: Vec<u8> = (0..8).flat_map(|_| random_u64().to_le_bytes()).collect();
                // No RESP reply starts with a NUL byte.
                junk[0] = 0;
                junk.extend_from_slice(b"\r\n");
                if s.write_all(&junk).is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

impl Drop for FakeStore {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
