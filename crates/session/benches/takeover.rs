//! Takeover latency: how long a web server takes to claim a 1 KB session
//! another server hosted (`load_id` of a session not in its cache), against
//! three `sticky store`s on loopback in the same process, R=2. Each
//! iteration claims a session not claimed before. The first host stopped
//! gracefully, releasing its lease, as after a fence or a proven death.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use sticky_session::{Config, SessionId, SessionManager, StoreSpec};
use sticky_store::{Store, StoreConfig};

/// Sessions created at a time (outside the timing); each iteration claims
/// one.
const BATCH: usize = 2_000;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (second, creator) = rt.block_on(async {
        let mut specs = Vec::new();
        for i in 1..=3 {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let store = Store::new(StoreConfig {
                // A fresh store, not a restarted one (no recovery window).
                restarted: false,
                ..StoreConfig::default()
            });
            tokio::spawn(async move { store.serve(listener, std::future::pending()).await });
            specs.push(StoreSpec {
                name: format!("s{i}"),
                addr: addr.to_string(),
            });
        }
        let config = |name: &str| {
            let mut c = Config::new(name, vec![7u8; 32], specs.clone());
            c.replicas = 2;
            c.new_sessions_per_ip = 0;
            c
        };
        let second = SessionManager::start(config("ws2")).await.unwrap();
        (second, config("ws1"))
    });
    // Sessions hosted by a first server that then stopped (releasing its
    // lease), created in batches outside the timed part.
    let mut batch = 0u64;
    let mut fresh = |rt: &tokio::runtime::Runtime| -> Vec<SessionId> {
        batch += 1;
        rt.block_on(async {
            let first = SessionManager::start(creator.clone()).await.unwrap();
            let mut ids = Vec::with_capacity(BATCH);
            for n in 0..BATCH {
                let mut b = [0u8; 16];
                b[..8].copy_from_slice(&(n as u64).to_le_bytes());
                b[8..].copy_from_slice(&batch.to_le_bytes());
                let id = SessionId::from_bytes(b);
                let s = first.create_id(id);
                s.insert("blob", "x".repeat(1000)).unwrap();
                first.save(&s).await.unwrap();
                ids.push(id);
            }
            first.stop().await;
            ids
        })
    };
    let mut ids: Vec<SessionId> = Vec::new();
    c.bench_function("takeover of a 1 KB session (3 stores, R=2)", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let id = match ids.pop() {
                    Some(id) => id,
                    None => {
                        ids = fresh(&rt);
                        ids.pop().expect("a batch")
                    }
                };
                let started = Instant::now();
                rt.block_on(async {
                    let s = second.load_id(id).await.unwrap().expect("a stored session");
                    assert_eq!(s.source(), sticky_session::Source::Store);
                    second.save(&s).await.unwrap();
                });
                total += started.elapsed();
            }
            total
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
