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

/// Regression: over TLS, when the socket was full, the session took the
/// last bytes of a batch's replies but held back their records, and the
/// store then waited for the client's next request while the client waited
/// for the rest of its reply. With a small send buffer on the store's
/// sockets (so that its writes keep finding them full), a client pipelines
/// GETs of large values: every reply arrives whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_replies_over_tls_arrive_whole() {
    use sticky_test_support::{client_config, TestCa};
    use tokio_rustls::rustls::pki_types::ServerName;
    use tokio_rustls::TlsConnector;

    const VALUE: usize = 256 * 1024;
    const GETS: usize = 4;
    const ROUNDS: usize = 3;

    let ca = TestCa::new("store-tls-flush");
    let cert = ca.issue("store");
    // Accepted sockets inherit the listener's small send buffer: the
    // store's writes keep finding the socket full.
    let listening = tokio::net::TcpSocket::new_v4().expect("socket");
    listening.set_send_buffer_size(4096).expect("send buffer");
    listening
        .bind("127.0.0.1:0".parse().expect("an address"))
        .expect("bind port 0");
    let listener = listening.listen(16).expect("listen");
    let addr = listener.local_addr().expect("local addr");
    let store = Store::new(StoreConfig::default())
        .with_tls(&cert.cert, &cert.key)
        .expect("TLS settings");
    let (_stop, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = store
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await;
    });

    let tcp = TcpStream::connect(addr).await.expect("connect");
    let connector = TlsConnector::from(std::sync::Arc::new(client_config(ca.ca_file(), &[])));
    let name = ServerName::try_from("localhost").expect("a server name");
    let mut c = connector.connect(name, tcp).await.expect("TLS handshake");

    let value = vec![b'v'; VALUE];
    let mut set = format!("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${VALUE}\r\n").into_bytes();
    set.extend_from_slice(&value);
    set.extend_from_slice(b"\r\n");
    c.write_all(&set).await.expect("SET");
    let mut ok = [0u8; 5];
    c.read_exact(&mut ok).await.expect("SET reply");
    assert_eq!(&ok, b"+OK\r\n");

    let mut reply = format!("${VALUE}\r\n").into_bytes();
    reply.extend_from_slice(&value);
    reply.extend_from_slice(b"\r\n");
    let expected = reply.repeat(GETS);
    let gets = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n".repeat(GETS);
    let stall = Duration::from_secs(10);
    let mut got = Vec::with_capacity(expected.len());
    let mut buf = vec![0u8; 64 * 1024];
    for round in 0..ROUNDS {
        c.write_all(&gets).await.expect("GETs");
        got.clear();
        while got.len() < expected.len() {
            match tokio::time::timeout(stall, c.read(&mut buf)).await {
                Ok(Ok(0)) => panic!("round {round}: the store closed the connection"),
                Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
                Ok(Err(e)) => panic!("round {round}: read failed: {e}"),
                Err(_) => panic!(
                    "round {round}: no reply for {stall:?} with {} of {} bytes missing",
                    expected.len() - got.len(),
                    expected.len()
                ),
            }
        }
        assert!(got == expected, "round {round}: replies differ");
    }
}
