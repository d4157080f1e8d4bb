//! # mlfusion-udf
//!
//! MLflow `python_function` ("pyfunc") models as DataFusion scalar UDFs, returning exactly
//! what `mlflow.pyfunc.spark_udf` returns for the same model, input and `result_type`.
//!
//! Three parts, each importing only the ones before it:
//!
//! - [`pyfunc`]: the MLflow pyfunc format as data — the `MLmodel` manifest, signatures,
//!   params, Spark result types, input enforcement on Arrow. No Python, no DataFusion.
//! - [`python`]: running models — the embedded CPython, models loaded in it or in worker
//!   processes, [`Scorer`]s calling `predict`, model URIs resolved through MLflow. No SQL.
//! - [`plan`]: models in DataFusion plans — [`PyModelUdf`] and the rules placing,
//!   batching and counting model calls.
//!
//! Beside them, [`error`] (the crate's one error type) and [`limits`] (how much nesting
//! user and network input may ask for).
//!
//! ## The data path
//!
//! A batch read from Parquet reaches the model like this:
//!
//! 1. **plan**: [`ModelBatchesExec`] coalesces short batches to the session batch size;
//!    [`ModelCallsExec`] evaluates the projection calling the model, several batches in
//!    flight; [`PyModelUdf::invoke_with_args`](datafusion::logical_expr::ScalarUDFImpl::invoke_with_args)
//!    gets the argument arrays.
//! 2. **input enforcement** ([`pyfunc::enforce`]): the arrays become an
//!    [`InputFrame`](pyfunc::enforce::InputFrame), columns named by call form and cast
//!    to the signature's types.
//! 3. **Python** ([`Scorer::predict`]): the frame goes to the embedded interpreter or,
//!    as Arrow IPC, to a worker process ([`WorkerPool`]); the bridge (`bridge.py`)
//!    builds the pandas frame and calls `predict`.
//! 4. **result coercion**: the bridge coerces the prediction to the result type as
//!    `spark_udf` does and returns Arrow; [`Scorer::predict`] checks the row count and
//!    casts to the UDF's return type.
//! 5. **back** to the plan: one prediction per input row, in order.
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

pub mod error;
pub mod limits;
pub mod plan;
pub mod pyfunc;
pub mod python;

pub use error::{Error, Result};
pub use plan::call_forms::{ModelCallRewrites, ParamsArgument};
pub use plan::call_metrics::{ModelCallsExec, ModelMetricsRule};
pub use plan::call_placement::ModelCallsOnce;
pub use plan::model_batches::{ModelBatchesExec, ModelBatchesRule};
pub use plan::scalar::PyModelUdf;
pub use pyfunc::mlmodel::MlModel;
pub use pyfunc::result_type::{ResultType, SparkType};
pub use python::{
    Binding, EnvCache, EnvEntry, EnvManager, LoadOptions, ModelEnv, ModelLoader, ModelMetrics,
    ModelStore, OnError, ProcessMetrics, PyModel, ResolvedUri, Scorer, WorkerLimits, WorkerPool,
    WorkerStart, process_metrics, start_python,
};
