//! Resident memory per hosted session (issue 19, item 3: at most 1.5x the
//! payload at 1 KB sessions): fills one [`SessionManager`] with `SESSIONS`
//! sessions of one `SIZE`-character note (like `bench/scale.sh`'s
//! `POST /api/note`), through its public API and a real store, and reads
//! this process's resident set (`/proc/self/statm`) before and after.
//!
//!     nice cargo bench -p sticky-session --bench cache_memory
//!     SESSIONS=200000 SIZE=1024 nice cargo bench -p sticky-session --bench cache_memory
//!
//! The store runs in a child process (this binary again, with
//! `STICKY_MEMORY_BENCH_STORE` set), so that its copies are not counted.
//! Run as a test (`cargo test --benches`), it creates 1,000 sessions.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;

use sticky_session::{Config, CookieUpdate, SessionManager, StoreSpec};
use sticky_store::{Store, StoreConfig};

const STORE_ENV: &str = "STICKY_MEMORY_BENCH_STORE";

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Resident bytes of this process.
fn resident() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

/// The child: a store on a free loopback port, printed on stdout; exits
/// when its stdin closes (the parent exited).
fn serve_store() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("{}", listener.local_addr().unwrap());
        std::io::stdout().flush().unwrap();
        let store = Store::new(StoreConfig {
            restarted: false,
            ..StoreConfig::default()
        });
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().lock().read_line(&mut sink).unwrap_or(0) > 0 {}
        });
        store
            .serve(listener, async {
                let _ = stdin_closed.await;
            })
            .await
    })
    .unwrap();
}

fn main() {
    if std::env::var_os(STORE_ENV).is_some() {
        serve_store();
        return;
    }
    let benching = std::env::args().any(|a| a == "--bench");
    let sessions = env_or("SESSIONS", if benching { 100_000 } else { 1_000 });
    let size = env_or("SIZE", 1024);

    let mut child = Command::new(std::env::current_exe().unwrap())
        .env(STORE_ENV, "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut addr = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut addr)
        .unwrap();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (before, after, hosted, bytes) = rt.block_on(async {
        let stores = vec![StoreSpec {
            name: "s1".into(),
            addr: addr.trim().to_owned(),
        }];
        let mut config = Config::new("ws1", vec![7u8; 32], stores);
        config.replicas = 1;
        config.max_sessions = usize::MAX;
        config.max_bytes = u64::MAX;
        config.new_sessions_per_ip = 0;
        config.new_session_ttl = std::time::Duration::from_secs(86_400);
        let m = SessionManager::start(config).await.unwrap();
        // Warm up (connections, buffers, metrics) before the first reading.
        fill(&m, 64, size).await;
        let before = resident();
        fill(&m, sessions, size).await;
        let after = resident();
        (before, after, m.sessions() - 64, m.session_bytes())
    });
    drop(child.stdin.take());
    let _ = child.wait();

    assert_eq!(hosted, sessions, "every session is hosted");
    let per_session = (after - before) as f64 / sessions as f64;
    let payload = bytes as f64 / (sessions + 64) as f64;
    println!(
        "{sessions} sessions of a {size}-character note: {per_session:.0} B resident per session, \
         payload {payload:.0} B ({:.2}x)",
        per_session / payload
    );
}

/// Creates `n` sessions of a `size`-character note, 64 at a time.
async fn fill(m: &SessionManager, n: usize, size: usize) {
    let note: Arc<str> = "x".repeat(size).into();
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..64 {
        let (m, note, next) = (m.clone(), note.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < n {
                let s = m.load(None).await.unwrap();
                s.insert("note", &*note).unwrap();
                let CookieUpdate::Set(_) = m.save(&s).await.unwrap() else {
                    panic!("no cookie")
                };
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}
