//! The store probes: one task asks every `[[store]]` of the cluster file
//! for `PING` and `INFO` each second ([`sticky_proto::probe`]) and records
//! the answers on the [`StoreBoard`](crate::stores::StoreBoard). A store
//! whose `url` is `sticky+tls://` or `rediss://` is asked over TLS, its
//! certificate verified against `[session] store_tls_ca` (or the system's
//! trust store).

use std::sync::{Arc, Weak};
use std::time::Duration;

use sticky_proto::probe::ProbeTls;
use tokio::task::JoinSet;

use crate::state::State;

/// Time between two looks at the stores.
const INTERVAL: Duration = Duration::from_secs(1);
/// Time one look at one store may take.
const LIMIT: Duration = Duration::from_millis(800);

/// Looks at every store each [`INTERVAL`] until the director stops.
pub(crate) async fn run(shared: Weak<State>) {
    let mut tick = tokio::time::interval(INTERVAL);
    // The client configuration for TLS stores, built at the first one.
    let mut tls_config: Option<Result<Arc<rustls::ClientConfig>, String>> = None;
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(s) = shared.upgrade() else {
            return;
        };
        if !s.is_serving() {
            return;
        }
        let password = s.config.store_password.clone();
        let mut probes = JoinSet::new();
        for (i, addr, tls_host) in s.stores.targets() {
            let password = password.clone();
            let tls = match tls_host {
                None => Ok(None),
                Some(host) => tls_config
                    .get_or_insert_with(|| {
                        sticky_proto::tls::client_config(s.config.store_tls_ca.as_deref())
                            .map_err(|e| e.to_string())
                    })
                    .clone()
                    .and_then(|config| {
                        ProbeTls::new(&host, config)
                            .map(Some)
                            .map_err(|e| e.to_string())
                    }),
            };
            probes.spawn(async move {
                let result = match tls {
                    Ok(tls) => sticky_proto::probe::probe_store_with(
                        addr,
                        tls.as_ref(),
                        password.as_deref(),
                        LIMIT,
                    )
                    .await
                    .map_err(|e| e.to_string()),
                    Err(e) => Err(format!("TLS: {e}")),
                };
                (i, result)
            });
        }
        // Do not keep the director alive while waiting.
        let board = Weak::clone(&shared);
        drop(s);
        while let Some(done) = probes.join_next().await {
            if let (Ok((i, result)), Some(s)) = (done, board.upgrade()) {
                s.stores.record(i, result, &s.history);
            }
        }
    }
}
