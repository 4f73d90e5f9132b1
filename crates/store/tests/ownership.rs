//! The ownership commands of `docs/safety.md` over a real socket:
//! `SESS.LEASE`, `SESS.KILL`, `SESS.PREPARE`, `SESS.OWNED`, `SESS.GET
//! WITHLEASE`, and the recovery window of a restarted store.

#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::time::Duration;

use sticky_store::{Store, StoreConfig};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

/// One RESP2 reply, as far as these tests need it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum R {
    Ok(String),
    Err(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<R>),
}

struct Conn(BufReader<TcpStream>);

impl Conn {
    async fn cmd(&mut self, args: &[&str]) -> R {
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        self.0
            .get_mut()
            .write_all(out.as_bytes())
            .await
            .expect("write");
        tokio::time::timeout(Duration::from_secs(10), self.read())
            .await
            .expect("a reply within 10 s")
    }

    fn read(&mut self) -> std::pin::Pin<Box<dyn std::future::Future<Output = R> + '_>> {
        Box::pin(async move {
            let mut line = String::new();
            self.0.read_line(&mut line).await.expect("read line");
            let (kind, rest) = line.trim_end().split_at(1);
            match kind {
                "+" => R::Ok(rest.into()),
                "-" => R::Err(rest.into()),
                ":" => R::Int(rest.parse().expect("integer")),
                "$" => {
                    let n: i64 = rest.parse().expect("length");
                    if n < 0 {
                        return R::Bulk(None);
                    }
                    let mut buf = vec![0; n as usize + 2];
                    self.0.read_exact(&mut buf).await.expect("bulk");
                    buf.truncate(n as usize);
                    R::Bulk(Some(buf))
                }
                "*" => {
                    let n: usize = rest.parse().expect("count");
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.read().await);
                    }
                    R::Array(items)
                }
                other => panic!("unexpected reply type {other:?}"),
            }
        })
    }
}

async fn start(config: StoreConfig) -> (Conn, oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind port 0");
    let addr = listener.local_addr().expect("local addr");
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = Store::new(config)
            .serve(listener, async {
                let _ = stop_rx.await;
            })
            .await;
    });
    let stream = TcpStream::connect(addr).await.expect("connect");
    (Conn(BufReader::new(stream)), stop_tx)
}

fn first_start() -> StoreConfig {
    StoreConfig {
        restarted: false,
        claim_window: Duration::from_secs(30),
        ..StoreConfig::default()
    }
}

fn err_starts(r: &R, prefix: &str) -> bool {
    matches!(r, R::Err(e) if e.starts_with(prefix))
}

#[tokio::test]
async fn a_live_lease_blocks_a_kill_and_a_killed_lease_cannot_be_renewed() {
    let (mut c, _stop) = start(first_start()).await;
    assert_eq!(
        c.cmd(&["SESS.LEASE", "ws1@7", "60000"]).await,
        R::Ok("OK".into())
    );
    let r = c.cmd(&["SESS.KILL", "ws1@7"]).await;
    assert!(err_starts(&r, "LIVE "), "{r:?}");
    // Proven death ends it at once.
    assert_eq!(
        c.cmd(&["SESS.KILL", "ws1@7", "FORCE"]).await,
        R::Ok("OK".into())
    );
    let r = c.cmd(&["SESS.LEASE", "ws1@7", "60000"]).await;
    assert!(err_starts(&r, "DEAD "), "{r:?}");
    // A lease nobody holds can be killed, and then never granted.
    assert_eq!(c.cmd(&["SESS.KILL", "ws2@1"]).await, R::Ok("OK".into()));
    assert!(err_starts(
        &c.cmd(&["SESS.LEASE", "ws2@1", "3000"]).await,
        "DEAD "
    ));
    // Bad owners and arguments are clear errors.
    assert!(err_starts(
        &c.cmd(&["SESS.LEASE", "", "3000"]).await,
        "ERR owner"
    ));
    assert!(err_starts(
        &c.cmd(&["SESS.KILL", "ws1@7", "NOW"]).await,
        "ERR syntax"
    ));
    assert!(err_starts(
        &c.cmd(&["SESS.LEASE", "ws1@8"]).await,
        "ERR wrong number"
    ));
    // Counted per command, as the session commands are.
    let R::Bulk(Some(info)) = c.cmd(&["INFO", "commandstats"]).await else {
        panic!("INFO answers a bulk string")
    };
    let info = String::from_utf8(info).expect("INFO is text");
    for line in [
        "cmdstat_sess.lease:calls=5\r\n",
        "cmdstat_sess.kill:calls=4\r\n",
        "cmdstat_sess.prepare:calls=0\r\n",
        "cmdstat_sess.owned:calls=0\r\n",
        "cmdstat_sess.put:calls=0\r\n",
    ] {
        assert!(info.contains(line), "{line:?} in {info}");
    }
}

#[tokio::test]
async fn get_withlease_reports_the_owners_lease() {
    let (mut c, _stop) = start(first_start()).await;
    assert_eq!(
        c.cmd(&["SESS.PUT", "sid", "1", "3", "ws1@7", "0", "data"])
            .await,
        R::Ok("OK".into())
    );
    let lease_of = |r: R| match r {
        R::Array(items) => items.get(6).cloned(),
        other => panic!("expected an array, got {other:?}"),
    };
    assert_eq!(
        lease_of(c.cmd(&["SESS.GET", "sid", "WITHLEASE"]).await),
        Some(R::Int(-1))
    );
    c.cmd(&["SESS.LEASE", "ws1@7", "60000"]).await;
    match lease_of(c.cmd(&["SESS.GET", "sid", "WITHLEASE"]).await) {
        Some(R::Int(ms)) => assert!(ms > 50_000 && ms <= 60_000, "{ms}"),
        other => panic!("expected the remaining lease, got {other:?}"),
    }
    c.cmd(&["SESS.KILL", "ws1@7", "FORCE"]).await;
    assert_eq!(
        lease_of(c.cmd(&["SESS.GET", "sid", "WITHLEASE"]).await),
        Some(R::Int(-2))
    );
    // Without the option, the reply is unchanged: six elements.
    match c.cmd(&["SESS.GET", "sid"]).await {
        R::Array(items) => assert_eq!(items.len(), 6),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn prepare_promises_and_fences_older_writes() {
    let (mut c, _stop) = start(first_start()).await;
    c.cmd(&["SESS.PUT", "sid", "4", "2", "ws1@7", "0", "v2"])
        .await;
    match c.cmd(&["SESS.PREPARE", "sid", "5", "ws2@1", "0"]).await {
        R::Array(items) => {
            assert_eq!(items[1], R::Int(4));
            assert_eq!(items[2], R::Int(2));
            assert_eq!(items[5], R::Bulk(Some(b"v2".to_vec())));
        }
        other => panic!("expected the copy, got {other:?}"),
    }
    let r = c
        .cmd(&["SESS.PUT", "sid", "4", "3", "ws1@7", "0", "v3"])
        .await;
    assert_eq!(
        r,
        R::Err("PROMISED 5 a takeover of this session is in progress".into())
    );
    let r = c.cmd(&["SESS.PREPARE", "sid", "4", "ws3@1", "0"]).await;
    assert!(
        err_starts(&r, "STALE 4 2"),
        "a generation at or below the copy's: {r:?}"
    );
    assert_eq!(
        c.cmd(&["SESS.PUT", "sid", "5", "0", "ws2@1", "0", "v2"])
            .await,
        R::Ok("OK".into())
    );
    // A missing session: null, and a promise all the same.
    assert_eq!(
        c.cmd(&["SESS.PREPARE", "new", "1", "ws2@1", "0"]).await,
        R::Bulk(None)
    );
    assert!(err_starts(
        &c.cmd(&["SESS.PUT", "new", "0", "9", "ws1@7", "0", "x"])
            .await,
        "PROMISED 1"
    ));
}

/// `SESS.PREPARE key NEXT` on the wire: `[generation, copy]`, nothing
/// promised over a live lease, `RELEASE` recording a lease dead first,
/// and its syntax errors.
#[tokio::test]
async fn prepare_next_on_the_wire() {
    let (mut c, _stop) = start(first_start()).await;
    c.cmd(&["SESS.PUT", "sid", "4", "2", "ws1@7", "0", "v2"])
        .await;
    assert_eq!(
        c.cmd(&["SESS.LEASE", "ws1@7", "60000"]).await,
        R::Ok("OK".into())
    );
    match c.cmd(&["SESS.PREPARE", "sid", "NEXT", "ws2@1", "0"]).await {
        R::Array(items) => {
            assert_eq!(items[0], R::Int(0), "live lease: nothing promised");
            let R::Array(copy) = &items[1] else {
                panic!("the copy: {items:?}")
            };
            assert_eq!((&copy[1], &copy[2]), (&R::Int(4), &R::Int(2)));
            assert!(matches!(copy[6], R::Int(ms) if ms > 0), "{copy:?}");
        }
        other => panic!("{other:?}"),
    }
    match c
        .cmd(&[
            "SESS.PREPARE",
            "sid",
            "next",
            "ws2@1",
            "0",
            "release",
            "ws1@7",
        ])
        .await
    {
        R::Array(items) => {
            assert_eq!(items[0], R::Int(5), "released, then promised");
            let R::Array(copy) = &items[1] else {
                panic!("the copy: {items:?}")
            };
            assert_eq!(copy[6], R::Int(-2), "the lease is dead now");
        }
        other => panic!("{other:?}"),
    }
    assert!(err_starts(
        &c.cmd(&["SESS.LEASE", "ws1@7", "60000"]).await,
        "DEAD"
    ));
    match c.cmd(&["SESS.PREPARE", "none", "NEXT", "ws2@1", "0"]).await {
        R::Array(items) => assert_eq!(items, vec![R::Int(1), R::Bulk(None)]),
        other => panic!("{other:?}"),
    }
    for (args, err) in [
        (
            &["SESS.PREPARE", "sid", "6", "ws2@1", "0", "RELEASE", "ws1@7"][..],
            "ERR RELEASE goes with NEXT",
        ),
        (
            &[
                "SESS.PREPARE",
                "sid",
                "NEXT",
                "ws2@1",
                "0",
                "FORCE",
                "ws1@7",
            ][..],
            "ERR syntax error",
        ),
        (
            &["SESS.PREPARE", "sid", "NEXT", "ws2@1", "0", "RELEASE", ""][..],
            "ERR owner must be",
        ),
    ] {
        let r = c.cmd(args).await;
        assert!(err_starts(&r, err), "{args:?}: {r:?}");
    }
}

#[tokio::test]
async fn stamps_with_signs_or_beyond_2_pow_53_are_refused() {
    let (mut c, _stop) = start(first_start()).await;
    for (g, s) in [
        ("+1", "0"),
        ("1", "+0"),
        ("9007199254740992", "0"),
        ("1", "9223372036854775807"),
        ("-1", "0"),
    ] {
        let r = c.cmd(&["SESS.PUT", "sid", g, s, "ws1@1", "0", "x"]).await;
        assert!(err_starts(&r, "ERR a stamp part"), "{g} {s}: {r:?}");
    }
    assert_eq!(
        c.cmd(&["SESS.GET", "sid"]).await,
        R::Bulk(None),
        "nothing stored"
    );
    assert_eq!(
        c.cmd(&[
            "SESS.PUT",
            "sid",
            "9007199254740991",
            "0",
            "ws1@1",
            "0",
            "x"
        ])
        .await,
        R::Ok("OK".into())
    );
}

#[tokio::test]
async fn owned_lists_an_owners_sessions() {
    let (mut c, _stop) = start(first_start()).await;
    for i in 0..50 {
        let owner = if i % 2 == 0 { "ws1@7" } else { "ws2@1" };
        let key = format!("sid{i}");
        c.cmd(&["SESS.PUT", &key, "1", "1", owner, "0", "x"]).await;
    }
    let mut cursor = "0".to_string();
    let mut keys = Vec::new();
    for _ in 0..10_000 {
        match c.cmd(&["SESS.OWNED", "ws1@7", &cursor]).await {
            R::Array(items) => {
                let R::Bulk(Some(next)) = &items[0] else {
                    panic!("{items:?}")
                };
                let R::Array(found) = &items[1] else {
                    panic!("{items:?}")
                };
                keys.extend(found.iter().cloned());
                cursor = String::from_utf8(next.clone()).expect("cursor");
            }
            other => panic!("{other:?}"),
        }
        if cursor == "0" {
            break;
        }
    }
    assert_eq!(cursor, "0", "the scan ended");
    assert_eq!(keys.len(), 25);
}

#[tokio::test]
async fn a_restarted_store_refuses_leases_kills_and_prepares_in_its_window() {
    let config = StoreConfig {
        restarted: true,
        claim_window: Duration::from_secs(60),
        ..StoreConfig::default()
    };
    let (mut c, _stop) = start(config).await;
    assert!(err_starts(
        &c.cmd(&["SESS.LEASE", "ws1@1", "3000"]).await,
        "RECOVERING "
    ));
    assert!(err_starts(
        &c.cmd(&["SESS.KILL", "ws1@1"]).await,
        "RECOVERING "
    ));
    assert!(err_starts(
        &c.cmd(&["SESS.PREPARE", "sid", "1", "ws1@1", "0"]).await,
        "RECOVERING "
    ));
    assert_eq!(
        c.cmd(&["SESS.KILL", "ws1@1", "FORCE"]).await,
        R::Ok("OK".into())
    );
    // Writes are taken: the copy is really there.
    assert_eq!(
        c.cmd(&["SESS.PUT", "sid", "1", "1", "ws1@2", "0", "x"])
            .await,
        R::Ok("OK".into())
    );
}

#[tokio::test]
async fn a_restarted_store_says_its_no_copy_may_be_forgotten() {
    let config = StoreConfig {
        restarted: true,
        claim_window: Duration::from_millis(1),
        ..StoreConfig::default()
    };
    let (mut c, _stop) = start(config).await;
    // Past the (tiny) recovery window, within the session-lifetime horizon.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let r = loop {
        let r = c
            .cmd(&["SESS.PREPARE", "gone", "1", "ws2@1", "86400000"])
            .await;
        if !err_starts(&r, "RECOVERING") || tokio::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert!(err_starts(&r, "FORGETFUL "), "{r:?}");
    // With a horizon already passed, its "no copy" counts.
    assert_eq!(
        c.cmd(&["SESS.PREPARE", "gone", "1", "ws2@1", "0"]).await,
        R::Bulk(None)
    );
    // A copy counts at once.
    c.cmd(&["SESS.PUT", "here", "1", "1", "ws1@2", "0", "x"])
        .await;
    assert!(matches!(
        c.cmd(&["SESS.PREPARE", "here", "2", "ws2@1", "86400000"])
            .await,
        R::Array(_)
    ));
}
