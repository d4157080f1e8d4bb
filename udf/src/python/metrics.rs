//! What model calls count. [`ModelMetrics`] are one call site's counters (DataFusion's
//! metric counters, so a plan shows them in `EXPLAIN ANALYZE`); [`ProcessMetrics`] are
//! the whole process's, by model name, in the Prometheus registry a server exposes and
//! `mlfusion query --timing` summarizes.

use std::sync::LazyLock;
use std::time::Duration;

use datafusion::physical_plan::metrics::{Count, Time};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Counters of one model at one call site, shared by the scorer that updates them and
/// whoever reports them.
#[derive(Debug, Clone, Default)]
pub struct ModelMetrics {
    /// Rows scored (with `on_error`, those that failed too).
    pub rows: Count,
    /// Batches scored (model calls that answered).
    pub batches: Count,
    /// Model calls that failed (with `on_error` other than `raise`, each failed call is
    /// retried on the halves of its rows, down to the rows that fail alone).
    pub failed_calls: Count,
    /// Rows whose prediction failed (NULL, or an error, in the result).
    pub failed_rows: Count,
    /// Time inside the model's `predict`.
    pub predict_time: Time,
    /// Time preparing the input and converting the prediction (Rust and Python).
    pub convert_time: Time,
    /// Time a batch waited for the interpreter (or a worker) before it could be scored.
    pub queued_time: Time,
}

/// The label of per-model metrics.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabel {
    /// The model's name in the session or server.
    pub model: String,
}

impl ModelLabel {
    /// The label of model `name`.
    pub fn new(name: &str) -> Self {
        Self {
            model: name.to_owned(),
        }
    }
}

/// The label of environment preparations.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    /// `built`, `reused` or `failed`.
    pub outcome: &'static str,
}

/// A histogram family of seconds, 1 ms to ~65 s.
fn seconds() -> Family<ModelLabel, Histogram, fn() -> Histogram> {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 2.0, 17)))
}

/// A histogram family of batch lengths, 1 to ~1M rows.
fn rows() -> Family<ModelLabel, Histogram, fn() -> Histogram> {
    Family::new_with_constructor(|| Histogram::new(exponential_buckets(1.0, 4.0, 11)))
}

/// The process's counters of every model, by name (Prometheus names in the field docs,
/// without the `mlfusion_` prefix of the registry).
#[derive(Debug)]
pub struct ProcessMetrics {
    /// `rows_scored`: rows answered (with `on_error`, those that failed too).
    pub rows_scored: Family<ModelLabel, Counter>,
    /// `batches_scored`: model calls that answered.
    pub batches_scored: Family<ModelLabel, Counter>,
    /// `failed_calls`: model calls that failed.
    pub failed_calls: Family<ModelLabel, Counter>,
    /// `failed_rows`: rows whose prediction failed (NULL or an error in the result).
    pub failed_rows: Family<ModelLabel, Counter>,
    /// `predict_seconds`: time in the model's `predict`, per call.
    pub predict_seconds: Family<ModelLabel, Histogram, fn() -> Histogram>,
    /// `batch_seconds`: a batch end to end: waiting for a worker, input and output
    /// conversion, `predict`, and the retries of `on_error`.
    pub batch_seconds: Family<ModelLabel, Histogram, fn() -> Histogram>,
    /// `batch_rows`: rows per batch scored.
    pub batch_rows: Family<ModelLabel, Histogram, fn() -> Histogram>,
    /// `workers_alive`: worker processes running.
    pub workers_alive: Family<ModelLabel, Gauge>,
    /// `worker_restarts`: workers started in the place of one that crashed, timed out or
    /// was retired by a limit.
    pub worker_restarts: Family<ModelLabel, Counter>,
    /// `env_builds`: model environments prepared, by outcome.
    pub env_builds: Family<OutcomeLabel, Counter>,
}

impl ProcessMetrics {
    fn new() -> Self {
        Self {
            rows_scored: Family::default(),
            batches_scored: Family::default(),
            failed_calls: Family::default(),
            failed_rows: Family::default(),
            predict_seconds: seconds(),
            batch_seconds: seconds(),
            batch_rows: rows(),
            workers_alive: Family::default(),
            worker_restarts: Family::default(),
            env_builds: Family::default(),
        }
    }

    /// Registers every metric in `registry` (which then reads the same values).
    pub fn register(&self, registry: &mut Registry) {
        let counters = [
            ("rows_scored", "Rows scored", &self.rows_scored),
            (
                "batches_scored",
                "Model calls that answered",
                &self.batches_scored,
            ),
            (
                "failed_calls",
                "Model calls that failed",
                &self.failed_calls,
            ),
            (
                "failed_rows",
                "Rows whose prediction failed",
                &self.failed_rows,
            ),
            (
                "worker_restarts",
                "Workers started in place of one that ended",
                &self.worker_restarts,
            ),
        ];
        for (name, help, family) in counters {
            registry.register(name, help, family.clone());
        }
        let histograms = [
            (
                "predict_seconds",
                "Time in the model's predict per call",
                &self.predict_seconds,
            ),
            (
                "batch_seconds",
                "Time to score one batch end to end",
                &self.batch_seconds,
            ),
            ("batch_rows", "Rows per batch scored", &self.batch_rows),
        ];
        for (name, help, family) in histograms {
            registry.register(name, help, family.clone());
        }
        registry.register(
            "workers_alive",
            "Worker processes running",
            self.workers_alive.clone(),
        );
        registry.register(
            "env_builds",
            "Model environments prepared, by outcome",
            self.env_builds.clone(),
        );
    }

    /// Creates model `name`'s counters at 0, so that scrapers see them before its first
    /// call.
    pub fn declare(&self, name: &str) {
        let label = ModelLabel::new(name);
        for family in [
            &self.rows_scored,
            &self.batches_scored,
            &self.failed_calls,
            &self.failed_rows,
            &self.worker_restarts,
        ] {
            let _ = family.get_or_create(&label);
        }
        let _ = self.workers_alive.get_or_create(&label);
    }

    /// What `--timing` prints of model `name`: its counters (the histograms are for
    /// scrapers).
    pub fn summary(&self, name: &str) -> String {
        let label = ModelLabel::new(name);
        let count = |f: &Family<ModelLabel, Counter>| f.get(&label).map_or(0, |c| c.get());
        let alive = self.workers_alive.get(&label).map_or(0, |g| g.get());
        format!(
            "model '{name}': {} rows in {} batches, {} rows failed in {} calls; workers alive {alive}, restarted {}",
            count(&self.rows_scored),
            count(&self.batches_scored),
            count(&self.failed_rows),
            count(&self.failed_calls),
            count(&self.worker_restarts),
        )
    }

    /// How many environments were built, reused and failed, in that order.
    pub fn env_counts(&self) -> [u64; 3] {
        ["built", "reused", "failed"].map(|outcome| {
            self.env_builds
                .get(&OutcomeLabel { outcome })
                .map_or(0, |c| c.get())
        })
    }

    /// Counts a batch of `rows` rows of model `model` scored end to end in `elapsed`
    /// (with `on_error`, its retries included).
    pub(crate) fn batch(&self, model: &str, rows: usize, elapsed: Duration) {
        let label = ModelLabel::new(model);
        self.batch_seconds
            .get_or_create(&label)
            .observe(elapsed.as_secs_f64());
        self.batch_rows.get_or_create(&label).observe(rows as f64);
    }
}

impl ModelMetrics {
    /// Counts a call of model `model` that answered `rows` rows, `predict` of it in the
    /// model's `predict`, here and in the process's metrics.
    pub(crate) fn answered(&self, model: &str, rows: usize, predict: Duration) {
        self.predict_time.add_duration(predict);
        self.rows.add(rows);
        self.batches.add(1);
        let label = ModelLabel::new(model);
        let process = process_metrics();
        process
            .rows_scored
            .get_or_create(&label)
            .inc_by(rows as u64);
        process.batches_scored.get_or_create(&label).inc();
        process
            .predict_seconds
            .get_or_create(&label)
            .observe(predict.as_secs_f64());
    }

    /// Counts a call of model `model` that failed, here and in the process's metrics.
    pub(crate) fn failed_call(&self, model: &str) {
        self.failed_calls.add(1);
        process_metrics()
            .failed_calls
            .get_or_create(&ModelLabel::new(model))
            .inc();
    }

    /// Counts a row of model `model` answered with NULL because it failed alone.
    pub(crate) fn failed_row(&self, model: &str) {
        self.rows.add(1);
        self.failed_rows.add(1);
        let label = ModelLabel::new(model);
        let process = process_metrics();
        process.rows_scored.get_or_create(&label).inc();
        process.failed_rows.get_or_create(&label).inc();
    }
}

/// The process's metrics.
pub fn process_metrics() -> &'static ProcessMetrics {
    static METRICS: LazyLock<ProcessMetrics> = LazyLock::new(ProcessMetrics::new);
    &METRICS
}
