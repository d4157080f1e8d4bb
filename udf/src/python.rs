//! Running models in Python: the embedded CPython (pyo3), models loaded through their
//! `loader_module` in it or in worker processes, scorers calling `predict` on input
//! frames, and model URIs resolved through MLflow.
//!
//! It knows the pyfunc format ([`crate::pyfunc`]) and Arrow, not SQL: nothing here
//! imports the plan side ([`crate::plan`]), which calls in through [`Scorer`] and counts
//! into [`ModelMetrics`].
//!
//! - [`interpreter`]: starting the embedded interpreter on a venv, and the bridge module
//!   (`bridge.py`: pandas frames, `predict`, result coercion, as `spark_udf` does them).
//! - [`model`]: [`PyModel`], a loaded model, and its [`Scorer`]s, one per [`Binding`]
//!   (result type and params).
//! - [`workers`]: [`WorkerPool`], Python worker processes (`worker.py`) scoring a model
//!   on every core, within [`WorkerLimits`]; [`template`]: the process they are forked
//!   from, which loads the model once.
//! - [`store`]: [`ModelStore`], model URIs (paths, `runs:/`, `models:/`, ...) resolved to
//!   directories, downloads cached; [`loader`]: [`ModelLoader`], a URI to a loaded model.
//! - [`environments`]: [`EnvCache`], per-model envs built by uv from the model's
//!   requirements, cached by content and shared by every process.
//! - [`metrics`]: the counters a model call updates.
//! - `messages`: the framing of the engine's pipes to its Python processes.
//! - `exception`: Python exceptions (in process or from a worker) as [`Error`](crate::Error)s.

pub mod environments;
mod exception;
pub mod interpreter;
pub mod loader;
mod messages;
pub mod metrics;
pub mod model;
pub mod store;
pub mod template;
pub mod workers;

pub use environments::{EnvCache, EnvEntry, EnvManager, ModelEnv};
pub use interpreter::start_python;
pub use loader::ModelLoader;
pub use metrics::{ModelMetrics, ProcessMetrics, process_metrics};
pub use model::{Binding, LoadOptions, OnError, PyModel, Scorer};
pub use store::{ModelStore, ResolvedUri};
pub use workers::{WorkerLimits, WorkerPool, WorkerStart};
