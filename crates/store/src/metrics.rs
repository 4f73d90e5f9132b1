//! Prometheus metrics: the same figures as `INFO`, served over HTTP.

use std::net::SocketAddr;
use std::time::Duration;

use crate::server::Store;

/// Error starting the metrics endpoint.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Another recorder was installed in this process first.
    #[error(transparent)]
    Install(#[from] sticky_metrics::InstallError),
    /// The listener could not bind.
    #[error(transparent)]
    Serve(#[from] sticky_metrics::ServeError),
}

/// Installs the process-wide Prometheus recorder with an HTTP listener on
/// `addr`, and copies `store`'s figures into it every second until the
/// returned task is aborted. Call once per process, inside a Tokio
/// runtime (the listener and the copying run as its tasks).
///
/// # Errors
///
/// [`MetricsError`] if the listener cannot bind or a recorder is already
/// installed.
pub async fn serve_metrics(
    store: Store,
    addr: SocketAddr,
) -> Result<tokio::task::JoinHandle<()>, MetricsError> {
    let handle = sticky_metrics::install()?;
    let (bound, _listener) = sticky_metrics::serve(addr, handle).await?;
    tracing::info!(addr = %bound, "metrics on http://{bound}/metrics");
    Ok(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            publish(&store);
        }
    }))
}

fn publish(store: &Store) {
    let s = store.snapshot();
    let counters = [
        (
            "sticky_store_connections_received_total",
            s.connections_received,
        ),
        (
            "sticky_store_connections_rejected_total",
            s.rejected_connections,
        ),
        (
            "sticky_store_commands_processed_total",
            s.commands_processed,
        ),
        ("sticky_store_expired_keys_total", s.expired_keys),
        ("sticky_store_stale_puts_refused_total", s.stale_refused),
        ("sticky_store_oom_refused_total", s.oom_refused),
        ("sticky_store_protocol_errors_total", s.protocol_errors),
        ("sticky_store_naps_total", s.naps),
    ];
    for (name, v) in counters {
        metrics::counter!(name).absolute(v);
    }
    for (name, calls) in crate::stats::SESSION_COMMANDS.iter().zip(s.session_calls) {
        metrics::counter!("sticky_store_session_commands_total", "command" => *name)
            .absolute(calls);
    }
    let gauges = [
        ("sticky_store_connected_clients", s.connected_clients),
        ("sticky_store_keys", s.keys),
        ("sticky_store_keys_with_ttl", s.keys_with_ttl),
        ("sticky_store_used_memory_bytes", s.used_memory),
        ("sticky_store_max_memory_bytes", s.max_memory),
        ("sticky_store_resident_memory_bytes", s.rss),
    ];
    for (name, v) in gauges {
        metrics::gauge!(name).set(v as f64);
    }
}
