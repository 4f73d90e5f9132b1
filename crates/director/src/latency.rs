//! How long the director takes to answer: a fixed-bucket histogram of the
//! time from a client's request head to the response head the director
//! sends back (the web server's time included, the body's streaming not),
//! recorded with one atomic add per request and rendered as a Prometheus
//! histogram.
//!
//! Fixed buckets rather than a recorder's histogram: the request path must
//! not touch a registry (see `metrics.rs`), and fixed buckets add across
//! directors and over time, which quantile summaries do not.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the buckets, in seconds (a `+Inf` bucket follows). From
/// a cached session read on the same host (sub-millisecond) to a web
/// server at the response timeout.
pub(crate) const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Response times recorded so far.
#[derive(Debug, Default)]
pub(crate) struct Histogram {
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Histogram {
    /// Counts one response that took `took`.
    pub(crate) fn record(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        // Prometheus buckets are "less than or equal": the first bound not
        // below the value.
        let bucket = BOUNDS.partition_point(|&bound| bound < seconds);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Appends the histogram in the Prometheus text format. The buckets are
    /// read one by one while requests go on, so `_count` is taken from the
    /// same reads as the buckets (never below the `+Inf` bucket).
    pub(crate) fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (i, count) in self.counts.iter().enumerate() {
            cumulative += count.load(Ordering::Relaxed);
            match BOUNDS.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
                }
            }
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let _ = writeln!(out, "{name}_count {cumulative}");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn rendered(h: &Histogram) -> String {
        let mut out = String::new();
        h.render("t_seconds", "Test.", &mut out);
        out
    }

    #[test]
    fn values_land_in_the_first_bucket_not_below_them() {
        let h = Histogram::default();
        h.record(Duration::from_micros(200)); // le 0.0005
        h.record(Duration::from_micros(500)); // exactly on a bound: le 0.0005
        h.record(Duration::from_millis(3)); // le 0.005
        h.record(Duration::from_secs(60)); // +Inf only
        let out = rendered(&h);
        for line in [
            "# TYPE t_seconds histogram",
            "t_seconds_bucket{le=\"0.0005\"} 2",
            "t_seconds_bucket{le=\"0.001\"} 2",
            "t_seconds_bucket{le=\"0.0025\"} 2",
            "t_seconds_bucket{le=\"0.005\"} 3",
            "t_seconds_bucket{le=\"10\"} 3",
            "t_seconds_bucket{le=\"+Inf\"} 4",
            "t_seconds_count 4",
        ] {
            assert!(
                out.lines().any(|l| l == line),
                "{line} missing from:\n{out}"
            );
        }
        let sum: f64 = out
            .lines()
            .find_map(|l| l.strip_prefix("t_seconds_sum "))
            .unwrap()
            .parse()
            .unwrap();
        assert!((sum - 60.0037).abs() < 1e-9, "{sum}");
    }

    #[test]
    fn an_empty_histogram_renders_zeros() {
        let out = rendered(&Histogram::default());
        assert!(out.contains("t_seconds_bucket{le=\"+Inf\"} 0"));
        assert!(out.contains("t_seconds_sum 0\n"));
        assert!(out.contains("t_seconds_count 0"));
        assert_eq!(out.lines().count(), 2 + BOUNDS.len() + 1 + 2);
    }
}
