//! The history file: one JSON object per line for every operation, fault
//! step and anomaly, in the order they were recorded, for inspection
//! after a run (`jq`, or a script). It holds no cookie, session id or
//! payload: users are numbered.

use std::io::{BufWriter, Write as _};
use std::path::Path;
use std::sync::Mutex;

use serde::Serialize;

use super::checker::Finding;

/// One line of the history.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum HistoryEvent<'a> {
    /// One user operation.
    Op {
        /// Milliseconds since the run started, when the request was sent.
        at: f64,
        user: usize,
        /// `inc` or `read` (or `final` for the closing read).
        op: &'static str,
        /// `ok`, `failed` or `unknown`.
        outcome: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        value: Option<u64>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'static str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        server: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        source: Option<&'a str>,
        latency_us: u64,
        /// A client fault of the request: `dropped_route` (no route
        /// cookie) or `replayed_route` (an old one).
        #[serde(skip_serializing_if = "Option::is_none")]
        client_fault: Option<&'static str>,
        /// Which director it went to (its index), with several.
        #[serde(skip_serializing_if = "Option::is_none")]
        director: Option<usize>,
    },
    /// A step of a fault: `start`, `heal` or `settled`.
    Fault {
        at: f64,
        fault: &'static str,
        process: &'a str,
        phase: &'static str,
        /// A network fault's links (`ws2 -x- s1,s3`).
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<&'a str>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// What the checker found wrong.
    Anomaly {
        at: f64,
        user: usize,
        op: &'static str,
        #[serde(flatten)]
        finding: &'a Finding,
    },
}

/// The history file, shared by the users and the nemesis.
pub(crate) struct History {
    out: Mutex<Option<BufWriter<std::fs::File>>>,
}

impl History {
    /// Creates (truncates) the file at `path`.
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        let file = std::fs::File::create(path)?;
        Ok(Self {
            out: Mutex::new(Some(BufWriter::with_capacity(1 << 16, file))),
        })
    }

    /// Appends one event. A write error is reported once and ends the
    /// history (the run goes on).
    pub(crate) fn event(&self, event: HistoryEvent<'_>) {
        let Ok(mut guard) = self.out.lock() else {
            return;
        };
        let Some(out) = guard.as_mut() else {
            return;
        };
        let written = serde_json::to_writer(&mut *out, &event)
            .map_err(std::io::Error::from)
            .and_then(|()| out.write_all(b"\n"));
        if let Err(e) = written {
            tracing::error!(error = %e, "cannot write the history file; it ends here");
            *guard = None;
        }
    }

    /// Flushes what is buffered.
    pub(crate) fn flush(&self) -> std::io::Result<()> {
        match self.out.lock() {
            Ok(mut guard) => guard.as_mut().map_or(Ok(()), BufWriter::flush),
            Err(_) => Ok(()),
        }
    }
}
