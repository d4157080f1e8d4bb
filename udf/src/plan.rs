//! Models in DataFusion plans: a bound model as a scalar UDF, and the rules that rewrite
//! its call forms, evaluate each call once per row, hand it full batches and count it.
//!
//! It calls Python only through [`Scorer`](crate::python::Scorer) and counts into
//! [`ModelMetrics`](crate::python::ModelMetrics); it does not know SQL sessions, files
//! or servers (the `mlfusion-engine` crate does).
//!
//! - [`scalar`]: [`PyModelUdf`](scalar::PyModelUdf), the
//!   [`ScalarUDFImpl`](datafusion::logical_expr::ScalarUDFImpl).
//! - [`call_forms`]: `m()` and `m(struct(...))` rewritten as Spark binds them (analyzer).
//! - [`call_placement`]: each model call evaluated once per row, in a projection
//!   (logical optimizer).
//! - [`model_batches`]: model calls get batches of the session batch size (physical).
//! - [`call_metrics`]: per-query model metrics for `EXPLAIN ANALYZE` and progress bars,
//!   and batches in flight to keep every worker busy (physical).

pub mod call_forms;
pub mod call_metrics;
pub mod call_placement;
pub mod model_batches;
pub mod scalar;
