//! In-process tests of `sticky store` over a real socket (the mini-redis
//! way): `Store::serve` on port 0, bytes in, bytes out.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use sticky_store::{Store, StoreConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A store serving on a free loopback port until the returned sender is
/// dropped.
async fn start(config: StoreConfig) -> (std::net::SocketAddr, oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let store = Store::new(config);
        let _ = store
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await;
    });
    (addr, stop_tx)
}

/// Pipelines `count` PINGs on one connection from a writer task while this
/// task reads the replies; fails if no reply arrives for `stall` (the store
/// stopped reading a socket that still held requests).
async fn pipeline_pings(addr: std::net::SocketAddr, password: Option<&str>, count: usize) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (mut rd, mut wr) = stream.into_split();
    if let Some(pass) = password {
        let auth = format!("*2\r\n$4\r\nAUTH\r\n${}\r\n{pass}\r\n", pass.len());
        wr.write_all(auth.as_bytes()).await.expect("auth");
        let mut ok = [0u8; 5];
        rd.read_exact(&mut ok).await.expect("auth reply");
        assert_eq!(&ok, b"+OK\r\n", "AUTH refused");
    }
    let writer = tokio::spawn(async move {
        let batch = b"*1\r\n$4\r\nPING\r\n".repeat(1000);
        for _ in 0..count / 1000 {
            wr.write_all(&batch).await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let expected = count * b"+PONG\r\n".len();
    let mut got = 0usize;
    let mut buf = vec![0u8; 64 * 1024];
    let stall = Duration::from_secs(10);
    while got < expected {
        match tokio::time::timeout(stall, rd.read(&mut buf)).await {
            Ok(Ok(0)) => panic!("store closed the connection after {got} of {expected} bytes"),
            Ok(Ok(n)) => {
                assert!(
                    buf[..n].iter().all(|b| b"+PONG\r\n".contains(b)),
                    "unexpected reply bytes"
                );
                got += n;
            }
            Ok(Err(e)) => panic!("read failed after {got} bytes: {e}"),
            Err(_) => panic!(
                "no reply for {stall:?} after {} of {count} PONGs: the store stopped reading",
                got / 7
            ),
        }
    }
    let _wr = writer.await.expect("writer task").expect("writes");
}

/// Regression: the store once cleared a socket's readiness itself after a
/// short read, losing a readiness event that arrived in between; a
/// pipelining client then stalled for good with requests in `Recv-Q`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_pings_never_stall() {
    let (addr, _stop) = start(StoreConfig::default()).await;
    for _ in 0..3 {
        pipeline_pings(addr, None, 200_000).await;
    }
}

/// The same with `requirepass`, where the stall showed in 3 runs of 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_pings_never_stall_with_auth() {
    let config = StoreConfig {
        requirepass: Some("s3cret".into()),
        ..StoreConfig::default()
    };
    let (addr, _stop) = start(config).await;
    for _ in 0..3 {
        pipeline_pings(addr, Some("s3cret"), 200_000).await;
    }
}

/// `clients` connections at once, each sending `batches` batches of
/// `depth` PINGs (the replies to one before the next; depth 1 is a web
/// server's synchronous writes), against a store on a single-threaded
/// runtime with its nap hooks, as `sticky store` runs it: how many naps
/// the store took.
fn naps_under_load(config: StoreConfig, clients: usize, batches: usize, depth: usize) -> u64 {
    let store = Store::new(config);
    let rt = tokio::runtime::Builder::new_current_thread()
        .on_thread_park(store.park_hook())
        .on_thread_unpark(store.unpark_hook())
        .enable_all()
        .build()
        .unwrap();
    let server = store.clone();
    rt.block_on(async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = tokio::spawn(async move {
            server
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        // The clients run on threads of their own, so that their requests
        // arrive while the store's loop is busy or asleep, as over a
        // network.
        let threads: Vec<_> = (0..clients)
            .map(|_| {
                std::thread::spawn(move || {
                    use std::io::{Read, Write};
                    let mut c = std::net::TcpStream::connect(addr).unwrap();
                    c.set_nodelay(true).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                    let batch = b"*1\r\n$4\r\nPING\r\n".repeat(depth);
                    let pongs = b"+PONG\r\n".repeat(depth);
                    let mut replies = vec![0u8; pongs.len()];
                    for _ in 0..batches {
                        c.write_all(&batch).unwrap();
                        c.read_exact(&mut replies).unwrap();
                        assert_eq!(replies, pongs);
                    }
                })
            })
            .collect();
        let joined = tokio::task::spawn_blocking(move || {
            for t in threads {
                t.join().unwrap();
            }
        });
        tokio::time::timeout(Duration::from_secs(60), joined)
            .await
            .expect("the clients finish")
            .unwrap();
        let _ = stop.send(());
        serving.await.unwrap();
    });
    store.snapshot().naps
}

/// The default nap follows only rounds of pipelined batches: unpipelined
/// clients never wait for it, however many send at once. The nap under
/// load of `--nap-us` (every loaded round) naps under the same load, which
/// shows this load makes loaded rounds.
#[test]
fn unpipelined_clients_never_wait_for_the_default_nap() {
    let config = StoreConfig::default();
    assert!(config.pipelined_nap.is_some());
    assert_eq!(naps_under_load(config.clone(), 8, 500, 1), 0);
    assert_eq!(naps_under_load(config.clone(), 8, 500, 4), 0);
    let every_round = StoreConfig {
        nap: Some(Duration::from_micros(25)),
        ..StoreConfig::default()
    };
    assert!(naps_under_load(every_round, 8, 500, 1) > 0);
}

/// Several pipelining clients (16 requests a batch, as
/// `redis-benchmark -P 16`): the default nap is taken.
#[test]
fn pipelining_clients_get_the_default_nap() {
    assert!(naps_under_load(StoreConfig::default(), 8, 500, 16) > 0);
}
