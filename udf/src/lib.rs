//! # mlfusion-udf
//!
//! MLflow `python_function` ("pyfunc") models as DataFusion scalar UDFs, returning exactly
//! what `mlflow.pyfunc.spark_udf` returns for the same model, input and `result_type`.
//!
//! - [`mlmodel`]: the `MLmodel` manifest; [`signature`]: column / tensor / params schemas.
//! - [`result_type`]: Spark DDL result types, validation, defaults from the output schema.
//! - [`enforce`]: naming and enforcing the model input on Arrow, before Python sees it.
//! - [`params`]: inference params against the params schema.
//! - [`limits`]: how much nesting and how many bindings user and network input may ask for.
//! - [`runtime`]: the embedded CPython (pyo3), pointed at a venv.
//! - [`store`]: model URIs (paths, `runs:/`, `models:/`, ...) and the download cache.
//! - [`model`]: loading a model once and scoring Arrow batches through it;
//!   [`workers`]: Python worker processes scoring a model on every core.
//! - [`scalar`]: the [`ScalarUDFImpl`](datafusion::logical_expr::ScalarUDFImpl).
//! - [`call_metrics`]: per-query model metrics for `EXPLAIN ANALYZE` and progress bars;
//!   [`call_placement`]: each model call evaluated once per row, in a projection;
//!   [`model_batches`]: model calls get batches of the session batch size.
//!
//! It does not know about SQL sessions, files or servers; the `mlfusion-engine` crate does.
//!
//! ```no_run
//! use std::sync::Arc;
//! use mlfusion_udf::{PyModel, PyModelUdf, start_python};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! start_python(None)?; // before any tokio runtime or thread attaches to Python
//! let model = Arc::new(PyModel::load("churn", "models/churn")?);
//! let scorer = Arc::new(model.scorer(Some("double"), None)?);
//! let udf = PyModelUdf::new("churn", scorer).into_udf();
//! // ctx.register_udf(udf); ctx.sql("SELECT churn(f0, f1) FROM t")
//! # let _ = udf; Ok(()) }
//! ```
//!
//! Threading: Python is attached only around a model call. Never call into DataFusion
//! (`collect`, `block_on`) from a thread that holds the GIL.

pub mod call_metrics;
pub mod call_placement;
pub mod enforce;
pub mod error;
pub mod limits;
pub mod mlmodel;
pub mod model;
pub mod model_batches;
pub mod params;
pub mod result_type;
pub mod runtime;
pub mod scalar;
pub mod signature;
pub mod store;
pub mod workers;

pub use call_metrics::{ModelCallsExec, ModelMetrics, ModelMetricsRule};
pub use call_placement::ModelCallsOnce;
pub use error::{Error, Result};
pub use mlmodel::MlModel;
pub use model::{PyModel, Scorer};
pub use model_batches::{ModelBatchesExec, ModelBatchesRule};
pub use result_type::{ResultType, SparkType};
pub use runtime::start_python;
pub use scalar::{ModelCallRewrites, PyModelUdf};
pub use store::{ModelStore, ResolvedUri};
pub use workers::{WorkerLimits, WorkerPool};
