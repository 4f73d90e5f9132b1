//! [`StoreBoard`]: the session stores as the director sees them, for the
//! dashboard and `/api/cluster`, as the probes (`probes.rs`) last found
//! them. The director never routes by them (web servers talk to the
//! stores themselves); it only shows them, and logs when one goes down or
//! comes back.

use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use crate::config::StoreSpec;
use crate::history::{EventKind, Recorder};
use crate::status::{millis, StoreState, StoreStatus};

struct Entry {
    status: StoreStatus,
    changed_at: Instant,
    /// The host its TLS certificate names, when it speaks TLS.
    tls_host: Option<String>,
}

/// The stores' last known states.
pub(crate) struct StoreBoard {
    entries: Mutex<Vec<Entry>>,
}

impl StoreBoard {
    pub(crate) fn new(specs: &[StoreSpec]) -> Self {
        let now = Instant::now();
        let entries = specs
            .iter()
            .map(|s| Entry {
                status: StoreStatus {
                    name: s.name.clone(),
                    addr: s.addr,
                    state: StoreState::Unknown,
                    keys: 0,
                    used_memory: 0,
                    max_memory: 0,
                    connected_clients: 0,
                    since_change_ms: 0,
                    error: None,
                },
                changed_at: now,
                tls_host: s.tls_host.clone(),
            })
            .collect();
        Self {
            entries: Mutex::new(entries),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Every store, in configuration order.
    pub(crate) fn status(&self) -> Vec<StoreStatus> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|e| StoreStatus {
                since_change_ms: millis(e.changed_at.elapsed()),
                ..e.status.clone()
            })
            .collect()
    }

    /// Every store's index, address and TLS host (if it speaks TLS), for
    /// the probes.
    pub(crate) fn targets(&self) -> Vec<(usize, SocketAddr, Option<String>)> {
        self.entries
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .enumerate()
            .map(|(i, e)| (i, e.status.addr, e.tls_host.clone()))
            .collect()
    }

    /// Records what a probe of store `i` found; a change of state is an
    /// event of `history`.
    pub(crate) fn record(
        &self,
        i: usize,
        result: Result<sticky_proto::probe::StoreInfo, String>,
        history: &Recorder,
    ) {
        let mut entries = self.entries.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(e) = entries.get_mut(i) else {
            return;
        };
        let before = e.status.state;
        let s = &mut e.status;
        match result {
            Ok(info) => {
                s.state = StoreState::Up;
                s.keys = info.keys;
                s.used_memory = info.used_memory;
                s.max_memory = info.max_memory;
                s.connected_clients = info.connected_clients;
                s.error = None;
            }
            Err(error) => {
                s.state = StoreState::Down;
                s.connected_clients = 0;
                s.error = Some(error);
            }
        }
        if s.state != before {
            e.changed_at = Instant::now();
            match (before, s.state) {
                (_, StoreState::Down) => {
                    let error = s.error.as_deref().unwrap_or("");
                    history.event(EventKind::StoreDown, &s.name, format!("down: {error}"));
                    tracing::warn!(store = %s.name, addr = %s.addr, error, "store down");
                }
                (StoreState::Down, StoreState::Up) => {
                    history.event(EventKind::StoreUp, &s.name, "up again");
                    tracing::info!(store = %s.name, addr = %s.addr, "store up again");
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn board_follows_the_probes() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 7379));
        let board = StoreBoard::new(&[StoreSpec {
            name: "s1".into(),
            addr,
            tls_host: None,
        }]);
        let history = Recorder::new(std::time::Duration::from_secs(5));
        assert_eq!(board.status()[0].state, StoreState::Unknown);
        let info = sticky_proto::probe::StoreInfo {
            keys: 3,
            used_memory: 512,
            connected_clients: 2,
            ..Default::default()
        };
        board.record(0, Ok(info.clone()), &history);
        let s = &board.status()[0];
        assert_eq!((s.state, s.keys, s.used_memory), (StoreState::Up, 3, 512));
        board.record(0, Err("connection refused".into()), &history);
        let s = &board.status()[0];
        assert_eq!(s.state, StoreState::Down);
        assert_eq!(s.error.as_deref(), Some("connection refused"));
        assert_eq!(s.keys, 3, "the last known figures stay");
        // Out of range (the list never changes, but a stale index is harmless).
        board.record(5, Err("x".into()), &history);
        board.record(0, Ok(info), &history);
        let events: Vec<_> = history
            .snapshot()
            .events
            .into_iter()
            .map(|e| (e.kind, e.subject, e.message))
            .collect();
        assert_eq!(
            events,
            [
                (
                    EventKind::StoreDown,
                    "s1".into(),
                    "down: connection refused".into()
                ),
                (EventKind::StoreUp, "s1".into(), "up again".into()),
            ],
            "changes of state only"
        );
    }
}
