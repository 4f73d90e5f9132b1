//! The `metrics::Recorder`: handles registered in a sharded registry of
//! atomics, descriptions kept for the `# HELP` lines.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, PoisonError, RwLock};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::Registry;

use crate::histogram::Buckets;

/// What the registry stores per metric: counters and gauges as atomics
/// (a gauge as its `f64` bits), histograms as [`Buckets`] whose bounds
/// follow the metric's name.
#[derive(Debug)]
pub(crate) struct Storage;

impl metrics_util::registry::Storage<Key> for Storage {
    type Counter = Arc<AtomicU64>;
    type Gauge = Arc<AtomicU64>;
    type Histogram = Arc<Buckets>;

    fn counter(&self, _: &Key) -> Self::Counter {
        Arc::new(AtomicU64::new(0))
    }

    fn gauge(&self, _: &Key) -> Self::Gauge {
        Arc::new(AtomicU64::new(0f64.to_bits()))
    }

    fn histogram(&self, key: &Key) -> Self::Histogram {
        Arc::new(Buckets::for_name(key.name()))
    }
}

pub(crate) struct Inner {
    pub(crate) registry: Registry<Key, Storage>,
    /// Help text by metric name.
    pub(crate) descriptions: RwLock<HashMap<String, SharedString>>,
}

impl Inner {
    fn describe(&self, key: KeyName, description: SharedString) {
        self.descriptions
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.as_str().to_owned(), description);
    }
}

/// A Prometheus recorder: what the `metrics` macros (or the methods of
/// `metrics::Recorder`) count, rendered by its [`Handle`].
///
/// Registering a metric makes it appear in the output (a counter at 0, a
/// gauge at 0) until the recorder is dropped: nothing expires.
pub struct Recorder {
    inner: Arc<Inner>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                registry: Registry::new(Storage),
                descriptions: RwLock::new(HashMap::new()),
            }),
        }
    }

    /// A handle that renders this recorder's metrics.
    pub fn handle(&self) -> Handle {
        Handle {
            inner: self.inner.clone(),
        }
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.inner.describe(key, description);
    }

    fn describe_gauge(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.inner.describe(key, description);
    }

    fn describe_histogram(&self, key: KeyName, _unit: Option<Unit>, description: SharedString) {
        self.inner.describe(key, description);
    }

    fn register_counter(&self, key: &Key, _metadata: &Metadata<'_>) -> Counter {
        self.inner
            .registry
            .get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _metadata: &Metadata<'_>) -> Gauge {
        self.inner
            .registry
            .get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _metadata: &Metadata<'_>) -> Histogram {
        self.inner
            .registry
            .get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// Renders a [`Recorder`]'s metrics; cheap to clone.
#[derive(Clone)]
pub struct Handle {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").finish_non_exhaustive()
    }
}

impl Handle {
    /// The metrics in the Prometheus text exposition format (0.0.4).
    pub fn render(&self) -> String {
        crate::render::render(&self.inner)
    }
}

/// A global recorder was already installed in this process.
#[derive(Debug, thiserror::Error)]
#[error("a metrics recorder is already installed in this process")]
pub struct InstallError;

/// Makes a new [`Recorder`] the process's global recorder (what the
/// `metrics` macros count into) and returns its handle.
///
/// # Errors
///
/// [`InstallError`] if a global recorder was installed before.
pub fn install() -> Result<Handle, InstallError> {
    let recorder = Recorder::new();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).map_err(|_| InstallError)?;
    Ok(handle)
}
