//! How long the director takes to answer: a fixed-bucket histogram of the
//! time from a client's request head to the response head the director
//! sends back (the web server's time included, the body's streaming not),
//! recorded with two atomic operations per request and rendered as a Prometheus
//! histogram and, in `/api/cluster`, as [`ResponseTimes`] (from which
//! the dashboard shows the last second's p50 and p99).
//!
//! Kept outside the scrape's recorder: the request path must not touch a
//! registry (see `metrics.rs`); the buckets are `sticky_metrics`'.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sticky_metrics::Buckets;

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

/// Response times recorded so far: [`sticky_metrics::Buckets`] with
/// [`BOUNDS`], in seconds.
#[derive(Debug)]
pub(crate) struct Histogram(Buckets);

impl Default for Histogram {
    fn default() -> Self {
        Self(Buckets::new(&BOUNDS))
    }
}

impl Histogram {
    /// Counts one response that took `took`.
    pub(crate) fn record(&self, took: Duration) {
        self.0.record(took.as_secs_f64());
    }

    /// The counts so far, for `/api/cluster`.
    pub(crate) fn snapshot(&self) -> ResponseTimes {
        ResponseTimes {
            // Whole microseconds: every bound is a multiple of 100 us.
            le_us: BOUNDS.iter().map(|s| (s * 1e6).round() as u64).collect(),
            cumulative: self.0.cumulative(),
        }
    }

    /// Appends the histogram in the Prometheus text format.
    pub(crate) fn render(&self, name: &str, help: &str, out: &mut String) {
        self.0.render(name, help, out);
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
