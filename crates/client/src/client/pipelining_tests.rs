//! Tests of the pipelined connection to a `sticky store`: many requests
//! in flight on one connection, requests whose callers give up, and a
//! store that stalls in the middle of a reply; against [`EchoStore`],
//! which answers in order, after a delay the key names, with the key
//! itself, so that a reply given to the wrong request shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use sticky_proto::resp::{parse_request, Limits, Reply, Version};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;

/// A store that answers each connection's commands in order:
///
/// - `SESS.GET d<ms>-<name>`: after `ms` milliseconds, a live copy whose
///   payload is the key;
/// - `SESS.GET half`: the first half of such a reply, then nothing more;
/// - `SESS.PUT key gen seq ...`: `STALE gen seq+1` (names the put's own
///   stamp, so a reply given to another put shows);
/// - `PING`: `PONG`; `CLIENT ...`: `OK`.
struct EchoStore {
    addr: std::net::SocketAddr,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl EchoStore {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acc = Arc::clone(&accepted);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                acc.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(echo(stream));
            }
        });
        Self {
            addr,
            accepted,
            task,
        }
    }

    fn client(&self, request_ms: u64) -> StoreClient {
        let options = ClientOptions {
            request_timeout: Duration::from_millis(request_ms),
            connect_timeout: Duration::from_millis(request_ms),
            max_backoff: Duration::from_millis(400),
            ..ClientOptions::default()
        };
        StoreClient::new(&self.addr.to_string(), options).unwrap()
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for EchoStore {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn get_reply(key: &[u8]) -> Vec<u8> {
    let reply = Reply::Array(vec![
        Reply::bulk("live"),
        Reply::Int(1),
        Reply::Int(1),
        Reply::bulk("w"),
        Reply::Int(-1),
        Reply::bulk(key),
    ]);
    let mut out = BytesMut::new();
    reply.encode(Version::Resp2, &mut out);
    out.to_vec()
}

async fn echo(mut stream: TcpStream) {
    let mut buf = BytesMut::new();
    loop {
        while let Some(args) = parse_request(&mut buf, &Limits::default()).unwrap() {
            let name = args[0].to_ascii_uppercase();
            let key = args.get(1).cloned().unwrap_or_default();
            let out = match &name[..] {
                b"CLIENT" => b"+OK\r\n".to_vec(),
                b"PING" => b"+PONG\r\n".to_vec(),
                b"SESS.PUT" => {
                    let num = |i: usize| -> u64 {
                        std::str::from_utf8(&args[i]).unwrap().parse().unwrap()
                    };
                    format!("-STALE {} {}\r\n", num(2), num(3) + 1).into_bytes()
                }
                b"SESS.GET" if &key[..] == b"half" => {
                    let reply = get_reply(b"half");
                    if stream.write_all(&reply[..reply.len() / 2]).await.is_err() {
                        return;
                    }
                    std::future::pending::<()>().await;
                    return;
                }
                b"SESS.GET" => {
                    let ms = std::str::from_utf8(&key[1..])
                        .ok()
                        .and_then(|k| k.split('-').next()?.parse().ok())
                        .unwrap_or(0);
                    if ms > 0 {
                        tokio::time::sleep(Duration::from_millis(ms)).await;
                    }
                    get_reply(&key)
                }
                _ => b"-ERR unknown command\r\n".to_vec(),
            };
            if stream.write_all(&out).await.is_err() {
                return;
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// The payload of a `get` of `key`, which the echo store sets to the key.
async fn echoed(c: &StoreClient, key: &[u8]) -> Result<Bytes, ClientError> {
    Ok(c.get(key).await?.expect("a copy").payload)
}

/// A small random number generator (xorshift), seeded per test.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_callers_gave_up_do_not_shift_later_replies() {
    let store = EchoStore::start().await;
    let c = store.client(2000);
    c.ping().await.unwrap();

    // Given up while waiting for its reply (dropped by a timeout that
    // ends long before the store answers).
    let gave_up = tokio::time::timeout(Duration::from_millis(20), c.get(b"d300-first")).await;
    assert!(gave_up.is_err(), "the store answers after 300 ms");
    // Polled once (so sent), then dropped.
    {
        let mut sent = Box::pin(c.get(b"d100-second"));
        tokio::select! {
            biased;
            _ = &mut sent => panic!("answered before the store's delay"),
            () = std::future::ready(()) => {}
        }
    }
    // Sent after the two: each gets its own reply, not theirs.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..20 {
        let c = c.clone();
        tasks.spawn(async move {
            let key = format!("d0-after-{i}");
            (key.clone(), echoed(&c, key.as_bytes()).await)
        });
    }
    while let Some(r) = tasks.join_next().await {
        let (key, got) = r.unwrap();
        assert_eq!(got.unwrap(), Bytes::from(key));
    }
    // And more, one after the other, and a pipeline.
    for i in 0..5 {
        let key = format!("d1-then-{i}");
        assert_eq!(echoed(&c, key.as_bytes()).await.unwrap(), Bytes::from(key));
    }
    let puts: Vec<Put<'_>> = (1..=4)
        .map(|seq| Put {
            key: b"k",
            stamp: Stamp::new(7, seq),
            owner: "w",
            ttl: None,
            payload: b"p",
        })
        .collect();
    let outcomes = c.put_many(&puts).await;
    for (p, r) in puts.iter().zip(outcomes) {
        let want = Stamp::new(p.stamp.generation, p.stamp.seq + 1);
        assert_eq!(r, Err(ClientError::Stale { stored: want }));
    }
    // Giving up does not cost the connection.
    assert_eq!(store.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_reply_then_silence_drops_the_connection() {
    let store = EchoStore::start().await;
    let c = store.client(300);
    c.ping().await.unwrap();
    let (stalled, behind) = tokio::join!(c.get(b"half"), async {
        // Queued behind the stalled reply, on the same connection.
        tokio::task::yield_now().await;
        c.get(b"d0-behind").await
    });
    assert_eq!(stalled.unwrap_err(), ClientError::Timeout);
    // Never another request's reply: it fails, retryably.
    let behind = behind.unwrap_err();
    assert!(behind.is_retryable(), "{behind:?}");
    // The connection was replaced: the next request works on a new one.
    assert_eq!(
        echoed(&c, b"d0-next").await.unwrap(),
        Bytes::from_static(b"d0-next")
    );
    assert_eq!(store.accepted(), 2);
}

/// Many tasks, each sending gets, puts and pipelines after random pauses,
/// some giving up on theirs at random, against a store that answers after
/// random delays: every answered request has its own reply.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_from_many_tasks_each_get_their_own_reply() {
    let store = EchoStore::start().await;
    let c = store.client(5000);
    let answered = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..32u64 {
        let c = c.clone();
        let answered = Arc::clone(&answered);
        tasks.spawn(async move {
            let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (task + 1).wrapping_mul(0x2545_f491));
            for i in 0..40u64 {
                if rng.below(4) == 0 {
                    tokio::time::sleep(Duration::from_micros(rng.below(500))).await;
                } else {
                    tokio::task::yield_now().await;
                }
                match rng.below(6) {
                    0 => {
                        let count = 2 + rng.below(5);
                        let puts: Vec<Put<'_>> = (0..count)
                            .map(|j| Put {
                                key: b"k",
                                stamp: Stamp::new(task, i * 100 + j),
                                owner: "w",
                                ttl: None,
                                payload: b"p",
                            })
                            .collect();
                        for (p, r) in puts.iter().zip(c.put_many(&puts).await) {
                            let want = Stamp::new(p.stamp.generation, p.stamp.seq + 1);
                            assert_eq!(r, Err(ClientError::Stale { stored: want }));
                        }
                    }
                    1 => {
                        // Given up: a short timeout on a slow reply.
                        let key = format!("d{}-gaveup-{task}-{i}", 2 + rng.below(3));
                        let _ = tokio::time::timeout(
                            Duration::from_micros(rng.below(1500)),
                            c.get(key.as_bytes()),
                        )
                        .await;
                        continue;
                    }
                    _ => {
                        let key = format!("d{}-{task}-{i}", rng.below(2));
                        let got = echoed(&c, key.as_bytes()).await.unwrap();
                        assert_eq!(got, Bytes::from(key));
                    }
                }
                answered.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    assert!(answered.load(Ordering::Relaxed) > 32 * 20);
    assert_eq!(store.accepted(), 1);
}
