//! The MLflow pyfunc format, as data: the `MLmodel` manifest, signatures, params, Spark
//! result types, and the Arrow side of input enforcement, with `spark_udf`'s rules.
//!
//! It knows neither Python nor DataFusion: everything here is pure Rust over `serde`
//! and Arrow, testable without an interpreter. It imports only [`crate::error`] and
//! [`crate::limits`].
//!
//! - [`mlmodel`]: the `MLmodel` manifest; [`signature`]: column, tensor and params schemas.
//! - [`result_type`]: Spark DDL result types, validation, defaults from the output schema.
//! - [`params`]: inference params against the params schema.
//! - [`environment`]: the Python environment a model asks for (`python_env.yaml`,
//!   `requirements.txt`, `conda.yaml`) and what it installs.
//! - [`enforce`]: the model input on Arrow: columns named by call form, a column
//!   signature enforced (casts, required and optional columns) before Python sees it.

pub mod enforce;
pub mod environment;
pub mod mlmodel;
pub mod params;
pub mod result_type;
pub mod signature;
