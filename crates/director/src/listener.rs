//! The two listeners: accept loops, the connection limit, per-connection
//! timeouts, and graceful shutdown.
//!
//! Client connections are HTTP/1.1 (hyper's `server::conn::http1`, with
//! upgrades). The request head must arrive within `header_timeout` (hyper's
//! `header_read_timeout`: slowloris clients are closed, and so are
//! keep-alive connections idle for that long); a connection with no bytes
//! moving for `idle_timeout` is closed; heads larger than
//! `max_header_size` get `431`. At `max_connections`, new connections get
//! a one-line `503` and are closed.
//!
//! On shutdown both listeners close at once, every client connection is
//! told to finish its current request and close, and `serve` returns when
//! all have, or after `drain_timeout`.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};

use crate::director::Shared;
use crate::io::{Activity, ActivityIo};
use crate::{admin, proxy};

/// Admin connections at once (it is an operator's listener).
const MAX_ADMIN_CONNECTIONS: usize = 64;

const TOO_MANY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 53\r\nretry-after: 1\r\nconnection: close\r\n\r\n503 Service Unavailable: too many connections. Retry\n";

pub(crate) async fn serve(
    shared: Arc<Shared>,
    public: TcpListener,
    admin_listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) {
    let config = &shared.config;
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(config.max_header_size.max(8192))
        .keep_alive(true);
    let builder = Arc::new(builder);
    let limit = Arc::new(Semaphore::new(config.max_connections));
    let admin_limit = Arc::new(Semaphore::new(MAX_ADMIN_CONNECTIONS));

    let public_loop = accept_public(
        Arc::clone(&shared),
        public,
        Arc::clone(&builder),
        Arc::clone(&limit),
        stop_rx.clone(),
    );
    let admin_loop = accept_admin(
        Arc::clone(&shared),
        admin_listener,
        builder,
        Arc::clone(&admin_limit),
        stop_rx,
    );
    tokio::select! {
        () = public_loop => {}
        () = admin_loop => {}
        () = shutdown => {}
    }
    // The accept loops are dropped here: both listeners are closed.
    tracing::info!(
        connections = shared.stats.connections.load(Ordering::Relaxed),
        deadline = ?config.drain_timeout,
        "shutting down: no new connections, finishing requests in flight"
    );
    let _ = stop_tx.send(true);
    let all = u32::try_from(config.max_connections).unwrap_or(u32::MAX);
    let drained = tokio::time::timeout(config.drain_timeout, async {
        let _public = limit.acquire_many(all).await;
        let _admin = admin_limit.acquire_many(MAX_ADMIN_CONNECTIONS as u32).await;
    })
    .await;
    match drained {
        Ok(()) => tracing::info!("all connections closed"),
        Err(_) => tracing::warn!(
            connections = shared.stats.connections.load(Ordering::Relaxed),
            "drain timeout reached: closing the remaining connections"
        ),
    }
}

async fn accept_public(
    shared: Arc<Shared>,
    listener: TcpListener,
    builder: Arc<http1::Builder>,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&e).await;
                continue;
            }
        };
        let stats = &shared.stats;
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            stats.rejected_connections.fetch_add(1, Ordering::Relaxed);
            if !stats.at_connection_limit.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    max_connections = shared.config.max_connections,
                    "connection limit reached: refusing new connections with 503"
                );
            }
            // Best effort, never blocking the accept loop.
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        if stats.at_connection_limit.swap(false, Ordering::Relaxed) {
            tracing::info!("below the connection limit again");
        }
        stats.connections.fetch_add(1, Ordering::Relaxed);
        stats.connections_total.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(client_connection(
            Arc::clone(&shared),
            stream,
            peer,
            Arc::clone(&builder),
            permit,
            stop.clone(),
        ));
    }
}

async fn client_connection(
    shared: Arc<Shared>,
    stream: TcpStream,
    peer: SocketAddr,
    builder: Arc<http1::Builder>,
    permit: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let activity = Activity::new();
    let io = TokioIo::new(ActivityIo::new(stream, Arc::clone(&activity)));
    let svc_shared = Arc::clone(&shared);
    let service = service_fn(move |req| {
        let shared = Arc::clone(&svc_shared);
        async move { Ok::<_, Infallible>(proxy::handle(shared, peer, req).await) }
    });
    let conn = builder.serve_connection(io, service).with_upgrades();
    tokio::pin!(conn);
    let idle = shared.config.idle_timeout;
    let mut stopping = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    // Timeouts, malformed requests, clients that went away:
                    // routine on a public listener.
                    tracing::debug!(%peer, error = %e, "client connection ended");
                }
                break;
            }
            stopped = stop.wait_for(|stop| *stop), if !stopping => {
                drop(stopped);
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(activity.deadline(idle)) => {
                if tokio::time::Instant::now() >= activity.deadline(idle) {
                    tracing::debug!(%peer, ?idle, "closing idle client connection");
                    break;
                }
            }
        }
    }
    shared.stats.connections.fetch_sub(1, Ordering::Relaxed);
    drop(permit);
}

async fn accept_admin(
    shared: Arc<Shared>,
    listener: TcpListener,
    builder: Arc<http1::Builder>,
    limit: Arc<Semaphore>,
    stop: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                accept_error(&e).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&limit).try_acquire_owned() else {
            let _ = stream.try_write(TOO_MANY);
            continue;
        };
        let shared = Arc::clone(&shared);
        let builder = Arc::clone(&builder);
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let svc_shared = Arc::clone(&shared);
            let service = service_fn(move |req| {
                let shared = Arc::clone(&svc_shared);
                async move { Ok::<_, Infallible>(admin::handle(shared, req).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            tokio::pin!(conn);
            let finished = tokio::select! {
                result = conn.as_mut() => {
                    if let Err(e) = result {
                        tracing::debug!(%peer, error = %e, "admin connection ended");
                    }
                    true
                }
                stopped = stop.wait_for(|stop| *stop) => {
                    drop(stopped);
                    conn.as_mut().graceful_shutdown();
                    false
                }
            };
            if !finished {
                let _ = conn.await;
            }
            drop(permit);
        });
    }
}

/// Accept errors are usually a full file-descriptor table: say so, and
/// give connections a moment to close instead of spinning.
async fn accept_error(e: &std::io::Error) {
    tracing::warn!(error = %e, "accept failed (out of file descriptors?); pausing 100 ms");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_too_many_answer_is_well_framed() {
        let text = std::str::from_utf8(super::TOO_MANY).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(head.contains(&format!("content-length: {}", body.len())));
    }
}
