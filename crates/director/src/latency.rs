//! How long the director takes to answer: a fixed-bucket histogram of the
//! time from a client's request head to the response head the director
//! sends back (the web server's time included, the body's streaming not),
//! recorded with one atomic add per request and rendered as a Prometheus
//! histogram and, in `/api/cluster`, as [`ResponseTimes`] (from which
//! the dashboard shows the last second's p50 and p99).
//!
//! Fixed buckets rather than a recorder's histogram: the request path must
//! not touch a registry (see `metrics.rs`), and fixed buckets add across
//! directors and over time, which quantile summaries do not.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Upper bounds of the buckets, in seconds (a `+Inf` bucket follows). From
/// a cached session read on the same host (sub-millisecond) to a web
/// server at the response timeout.
pub(crate) const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The response-time histogram as `GET /api/cluster` shows it: counts
/// since the director started, cumulative like Prometheus buckets. Two
/// snapshots a second apart give that second's distribution (the
/// dashboard's p50 and p99).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseTimes {
    /// Upper bounds of the buckets in microseconds; an unbounded bucket
    /// follows the last.
    pub le_us: Vec<u64>,
    /// Responses that took at most each bound, then all responses
    /// (`le_us.len() + 1` entries, never decreasing).
    pub cumulative: Vec<u64>,
}

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

    /// Cumulative counts, bucket by bucket. The buckets are read one by
    /// one while requests go on, so the total is the sum of the same reads
    /// (never below any bucket).
    fn cumulative(&self) -> [u64; BOUNDS.len() + 1] {
        let mut out = [0u64; BOUNDS.len() + 1];
        let mut total = 0u64;
        for (slot, count) in out.iter_mut().zip(&self.counts) {
            total += count.load(Ordering::Relaxed);
            *slot = total;
        }
        out
    }

    /// The counts so far, for `/api/cluster`.
    pub(crate) fn snapshot(&self) -> ResponseTimes {
        ResponseTimes {
            // Whole microseconds: every bound is a multiple of 100 us.
            le_us: BOUNDS.iter().map(|s| (s * 1e6).round() as u64).collect(),
            cumulative: self.cumulative().to_vec(),
        }
    }

    /// Appends the histogram in the Prometheus text format; `_count` is the
    /// `+Inf` bucket.
    pub(crate) fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let cumulative = self.cumulative();
        for (i, count) in cumulative.iter().enumerate() {
            match BOUNDS.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {count}");
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
                }
            }
        }
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum {sum}");
        let total = cumulative[BOUNDS.len()];
        let _ = writeln!(out, "{name}_count {total}");
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
    fn a_snapshot_is_cumulative_and_ends_with_the_total() {
        let h = Histogram::default();
        h.record(Duration::from_micros(200)); // le 500 us
        h.record(Duration::from_millis(3)); // le 5000 us
        h.record(Duration::from_millis(4)); // le 5000 us
        h.record(Duration::from_secs(60)); // unbounded
        let snap = h.snapshot();
        assert_eq!(
            snap.le_us,
            [
                500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
                1_000_000, 2_500_000, 5_000_000, 10_000_000
            ]
        );
        assert_eq!(snap.cumulative.len(), BOUNDS.len() + 1);
        assert_eq!(&snap.cumulative[..5], &[1, 1, 1, 3, 3]);
        assert_eq!(snap.cumulative[BOUNDS.len() - 1], 3);
        assert_eq!(snap.cumulative[BOUNDS.len()], 4);
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
