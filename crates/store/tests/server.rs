//! In-process tests of `sticky store` over a real socket (the mini-redis
//! way): `Store::serve` on port 0, bytes in, bytes out.

#![allow(clippy::unwrap_used, clippy::expect_used)]

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
