//! The counters a model call updates: rows, batches, and where the time went. They are
//! DataFusion's metric counters, so a plan can show them (`EXPLAIN ANALYZE`) as they are.

use datafusion::physical_plan::metrics::{Count, Time};

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
