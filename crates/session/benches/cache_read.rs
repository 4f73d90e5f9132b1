//! Reading a cached 1 KB session: `load` (cookie check, cache lookup,
//! per-session lock) + `get` of one field + `save` of an unchanged session.
//! The bar: at most 1 µs. Needs no network: the store is only used
//! once, to create the session.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use criterion::{criterion_group, criterion_main, Criterion};
use sticky_session::{Config, CookieUpdate, SessionManager, StoreSpec};
use sticky_store::{Store, StoreConfig};

fn bench(c: &mut Criterion) {
    // A worker thread keeps the lease renewed between measurements (a
    // current-thread runtime would run it only inside `block_on`, and the
    // server would stop serving when its lease ran out).
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (manager, cookie) = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = Store::new(StoreConfig {
            // A fresh store, not a restarted one (no recovery window).
            restarted: false,
            ..StoreConfig::default()
        });
        tokio::spawn(async move { store.serve(listener, std::future::pending()).await });
        let stores = vec![StoreSpec {
            name: "s1".into(),
            addr: addr.to_string(),
        }];
        let mut config = Config::new("ws1", vec![7u8; 32], stores);
        config.replicas = 1;
        let m = SessionManager::start(config).await.unwrap();
        let s = m.load(None).await.unwrap();
        s.insert("blob", "x".repeat(1000)).unwrap();
        s.insert("counter", 1u64).unwrap();
        let CookieUpdate::Set(cookie) = m.save(&s).await.unwrap() else {
            panic!("no cookie")
        };
        (m, cookie)
    });
    c.bench_function("cached 1KB session: load + get + save", |b| {
        b.iter(|| {
            rt.block_on(async {
                let s = manager.load(Some(&cookie)).await.unwrap();
                let n: u64 = s.get("counter").unwrap().unwrap();
                assert_eq!(s.source(), sticky_session::Source::Cache);
                manager.save(&s).await.unwrap();
                n
            })
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
