//! The store probes: one task asks every `[[store]]` of the cluster file
//! for `PING` and `INFO` each second ([`sticky_proto::probe`]) and records
//! the answers on the [`StoreBoard`](crate::stores::StoreBoard).

use std::sync::Weak;
use std::time::Duration;

use tokio::task::JoinSet;

use crate::state::State;

/// Time between two looks at the stores.
const INTERVAL: Duration = Duration::from_secs(1);
/// Time one look at one store may take.
const LIMIT: Duration = Duration::from_millis(800);

/// Looks at every store each [`INTERVAL`] until the director stops.
pub(crate) async fn run(shared: Weak<State>) {
    let mut tick = tokio::time::interval(INTERVAL);
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
        for (i, addr) in s.stores.targets() {
            let password = password.clone();
            probes.spawn(async move {
                let result = sticky_proto::probe::probe_store(addr, password.as_deref(), LIMIT)
                    .await
                    .map_err(|e| e.to_string());
                (i, result)
            });
        }
        // Do not keep the director alive while waiting.
        let board = Weak::clone(&shared);
        drop(s);
        while let Some(done) = probes.join_next().await {
            if let (Ok((i, result)), Some(s)) = (done, board.upgrade()) {
                s.stores.record(i, result);
            }
        }
    }
}
