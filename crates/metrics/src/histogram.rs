//! Fixed-bucket histograms: one atomic add per recorded value, rendered as
//! Prometheus cumulative buckets.
//!
//! The bounds follow the metric's name: `*_bytes` counts sizes (a session
//! of a few hundred bytes to the 1 MiB default `max_size`), anything else
//! durations in seconds (a cached request's sub-millisecond to a claim's
//! timeout).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::render::number;

/// Upper bounds, in seconds, of a duration histogram's buckets (a `+Inf`
/// bucket follows).
pub const SECONDS_BOUNDS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// Upper bounds, in bytes, of a size histogram's buckets (a `+Inf` bucket
/// follows).
pub const BYTES_BOUNDS: &[f64] = &[
    64.0,
    256.0,
    1024.0,
    4096.0,
    16384.0,
    65536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
];

/// A histogram's counts: per bucket (not cumulative; the last is `+Inf`),
/// and the sum of the values recorded.
#[derive(Debug)]
pub struct Buckets {
    bounds: &'static [f64],
    counts: Box<[AtomicU64]>,
    /// The sum's `f64` bits.
    sum: AtomicU64,
}

impl Buckets {
    /// Empty buckets with `bounds` (ascending; a `+Inf` bucket is added).
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0f64.to_bits()),
        }
    }

    /// Empty buckets with the bounds a metric called `name` takes.
    pub fn for_name(name: &str) -> Self {
        if name.ends_with("_bytes") {
            Self::new(BYTES_BOUNDS)
        } else {
            Self::new(SECONDS_BOUNDS)
        }
    }

    /// Counts one value. A NaN is counted in `+Inf` and left out of the sum.
    pub fn record(&self, value: f64) {
        // Prometheus buckets are "less than or equal": the first bound not
        // below the value. A NaN is below no bound: it lands past the end.
        let bucket = if value.is_nan() {
            self.bounds.len()
        } else {
            self.bounds.partition_point(|&bound| bound < value)
        };
        if let Some(count) = self.counts.get(bucket) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        if value.is_nan() {
            return;
        }
        let mut old = self.sum.load(Ordering::Relaxed);
        loop {
            let new = (f64::from_bits(old) + value).to_bits();
            match self
                .sum
                .compare_exchange_weak(old, new, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return,
                Err(seen) => old = seen,
            }
        }
    }

    /// The upper bounds (without `+Inf`).
    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Cumulative counts, one per bound and then `+Inf` (the total). The
    /// buckets are read one by one while values are recorded, so the total
    /// is the sum of the same reads (never below any bucket).
    pub fn cumulative(&self) -> Vec<u64> {
        let mut total = 0u64;
        self.counts
            .iter()
            .map(|count| {
                total = total.saturating_add(count.load(Ordering::Relaxed));
                total
            })
            .collect()
    }

    /// The sum of the values recorded.
    pub fn sum(&self) -> f64 {
        f64::from_bits(self.sum.load(Ordering::Relaxed))
    }

    /// Appends these buckets as one unlabelled Prometheus histogram
    /// `name` (with its `# HELP` and `# TYPE`); `_count` is the `+Inf`
    /// bucket. For histograms kept outside a [`Recorder`](crate::Recorder).
    pub fn render(&self, name: &str, help: &str, out: &mut String) {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        let cumulative = self.cumulative();
        for (i, count) in cumulative.iter().enumerate() {
            match self.bounds.get(i) {
                Some(bound) => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {count}", number(*bound));
                }
                None => {
                    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
                }
            }
        }
        let _ = writeln!(out, "{name}_sum {}", number(self.sum()));
        let total = cumulative.last().copied().unwrap_or(0);
        let _ = writeln!(out, "{name}_count {total}");
    }
}

impl metrics::HistogramFn for Buckets {
    fn record(&self, value: f64) {
        Buckets::record(self, value);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn values_land_in_the_first_bucket_not_below_them() {
        let b = Buckets::new(&[1.0, 2.0]);
        b.record(0.5);
        b.record(1.0); // on a bound: that bucket
        b.record(1.5);
        b.record(7.0); // +Inf only
        b.record(f64::NAN); // +Inf, not summed
        assert_eq!(b.cumulative(), vec![2, 3, 5]);
        assert!((b.sum() - 10.0).abs() < 1e-12, "{}", b.sum());
    }

    #[test]
    fn the_name_picks_the_bounds() {
        assert_eq!(
            Buckets::for_name("sticky_session_bytes").bounds(),
            BYTES_BOUNDS
        );
        assert_eq!(
            Buckets::for_name("sticky_takeover_seconds").bounds(),
            SECONDS_BOUNDS
        );
        for bounds in [BYTES_BOUNDS, SECONDS_BOUNDS] {
            assert!(bounds.windows(2).all(|w| w[0] < w[1]), "{bounds:?}");
        }
    }

    #[test]
    fn concurrent_records_are_all_counted_and_summed() {
        let b = std::sync::Arc::new(Buckets::for_name("x_seconds"));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let b = b.clone();
                std::thread::spawn(move || {
                    for _ in 0..10_000 {
                        b.record(0.5);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(*b.cumulative().last().unwrap(), 40_000);
        assert!((b.sum() - 20_000.0).abs() < 1e-9, "{}", b.sum());
    }
}
