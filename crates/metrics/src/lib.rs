//! Sticky's Prometheus recorder.
//!
//! The web server, the store and the director count through the `metrics`
//! facade (`metrics::counter!`, `gauge!`, `histogram!`). This crate is the
//! recorder behind it: a sharded registry of atomics (`metrics-util`'s)
//! and a renderer of the Prometheus text exposition format.
//!
//! Why not `metrics-exporter-prometheus`, which did this until session 23
//! (`docs/dependencies.md`): its recorder builds a `quanta::Clock`, whose
//! first construction in a process calibrates the CPU's time-stamp
//! counter by spinning until its estimate settles, for up to 200 ms of
//! wall time. Under load the estimate does not settle, so a web server
//! restarted in a busy cluster spent 45–190 ms of a core spinning before
//! it could serve (`docs/benchmarks.md`, session 22), on a machine where
//! that core was serving other servers' takeovers. Nothing of ours needs
//! that clock: it serves the exporter's idle-metric expiry and rolling
//! summaries, neither of which we use.
//!
//! What differs from the exporter's output: histograms are Prometheus
//! histograms with fixed buckets ([`histogram`]) rather than summaries
//! with quantiles — they add up across servers and over time, as the
//! director's response-time histogram already did.
//!
//! - [`Recorder`]: the `metrics::Recorder`; [`install`] makes a new one the
//!   process's global recorder.
//! - [`Handle`]: renders what a recorder holds.
//! - [`serve`]: a `/metrics` listener for processes without an HTTP
//!   server of their own.

mod histogram;
mod recorder;
mod render;
mod serve;

pub use histogram::{Buckets, BYTES_BOUNDS, SECONDS_BOUNDS};
pub use recorder::{install, Handle, InstallError, Recorder};
pub use serve::{serve, ServeError};
