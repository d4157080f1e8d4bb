//! A pyfunc model loaded in the embedded interpreter, and its scorer: the model bound to
//! one result type and params, scoring Arrow batches.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{Array, ArrayData, ArrayRef, make_array};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::pyarrow::{FromPyArrow, ToPyArrow};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTracebackMethods};
use serde_json::{Value, json};

use crate::call_metrics::ModelMetrics;
use crate::enforce::{InputFrame, Label};
use crate::error::{Error, Result};
use crate::mlmodel::MlModel;
use crate::params::validate_params;
use crate::result_type::{ResultType, SparkType};
use crate::runtime::{bridge, start_python};
use crate::signature::{MlflowType, Schema};
use crate::store::ResolvedUri;
use crate::workers::{WorkerLimits, WorkerPool};

/// How many traceback lines an error keeps.
const TRACEBACK_LINES: usize = 12;

/// A model loaded once through its `loader_module`: in the embedded interpreter, or in
/// each process of a [`WorkerPool`].
#[derive(Debug)]
pub struct PyModel {
    name: String,
    uri: String,
    resolved: Option<ResolvedUri>,
    mlmodel: MlModel,
    runtime: Runtime,
}

#[derive(Debug)]
enum Runtime {
    InProcess(Py<PyAny>),
    Workers(Box<WorkerPool>),
}

impl PyModel {
    /// Reads `<dir>/MLmodel` and loads the model (`_load_pyfunc`) in the embedded
    /// interpreter, starting it with the default venv if needed. `name` is how errors
    /// refer to the model.
    pub fn load(name: &str, dir: impl AsRef<Path>) -> Result<Self> {
        Self::load_with_workers(name, dir, 0)
    }

    /// Like [`PyModel::load`], but with `workers` > 0 the model is loaded (in parallel)
    /// by that many Python worker processes of the venv, which then score its batches:
    /// models that hold the GIL use as many cores as there are workers.
    pub fn load_with_workers(name: &str, dir: impl AsRef<Path>, workers: usize) -> Result<Self> {
        Self::load_in_workers(name, dir, workers, WorkerLimits::default())
    }

    /// Like [`PyModel::load_with_workers`], with limits on each worker (timeouts,
    /// recycling; see [`WorkerLimits`]).
    pub fn load_in_workers(
        name: &str,
        dir: impl AsRef<Path>,
        workers: usize,
        limits: WorkerLimits,
    ) -> Result<Self> {
        let mlmodel = MlModel::from_path(dir.as_ref())?;
        let venv = start_python(None)?;
        let code_dir = mlmodel.code_dir().map(|p| p.display().to_string());
        let data_path = mlmodel.data_path().display().to_string();
        let model_config = mlmodel.pyfunc.model_config.as_ref().map(Value::to_string);
        let runtime = if workers > 0 {
            let load = json!({
                "code_dir": code_dir,
                "loader_module": mlmodel.pyfunc.loader_module,
                "data_path": data_path,
                "model_config": model_config,
            });
            let python = venv.join("bin").join("python");
            Runtime::Workers(Box::new(WorkerPool::start(
                name, python, load, workers, limits,
            )?))
        } else {
            Runtime::InProcess(Python::attach(|py| -> Result<Py<PyAny>> {
                let loaded = bridge(py)?.getattr("load_model").and_then(|f| {
                    f.call1((
                        code_dir,
                        &mlmodel.pyfunc.loader_module,
                        data_path,
                        model_config,
                    ))
                });
                loaded
                    .map(Bound::unbind)
                    .map_err(|e| python_error(py, name, "loading the model", &e))
            })?)
        };
        Ok(Self {
            name: name.to_owned(),
            uri: dir.as_ref().display().to_string(),
            resolved: None,
            mlmodel,
            runtime,
        })
    }

    /// The worker processes scoring this model, if it runs in workers.
    pub fn workers(&self) -> Option<&WorkerPool> {
        match &self.runtime {
            Runtime::Workers(pool) => Some(pool.as_ref()),
            Runtime::InProcess(_) => None,
        }
    }

    /// Records where the model came from (see [`crate::ModelStore::load`]).
    pub(crate) fn with_uri(mut self, uri: &str, resolved: ResolvedUri) -> Self {
        self.uri = uri.to_owned();
        self.resolved = Some(resolved);
        self
    }

    /// The URI (or path) the model was loaded from, as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// How the URI was resolved, when it went through a [`crate::ModelStore`].
    pub fn resolved(&self) -> Option<&ResolvedUri> {
        self.resolved.as_ref()
    }

    /// The name errors refer to the model by.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The model's manifest.
    pub fn mlmodel(&self) -> &MlModel {
        &self.mlmodel
    }

    /// Binds the model to a result type (a Spark DDL string, or `None` for the model's
    /// default) and params, validating both now as `spark_udf` does at UDF creation.
    pub fn scorer(
        self: &Arc<Self>,
        result_type: Option<&str>,
        params: Option<&Value>,
    ) -> Result<Scorer> {
        let signature = &self.mlmodel.signature;
        let result_type = ResultType::resolve(result_type, signature.outputs.as_ref())?;
        let return_type = result_type.spark.to_arrow()?;
        let params = validate_params(&self.name, params, signature.params.as_deref())?;
        let datetime_params: Vec<_> = signature
            .params
            .iter()
            .flatten()
            .filter(|p| p.ty == MlflowType::Datetime)
            .map(|p| p.name.clone())
            .collect();
        let (tensors, tensor_names) = match &signature.inputs {
            Some(Schema::Tensors(t)) => (
                Some(
                    t.iter()
                        .map(|t| json!([t.name, t.dtype, t.shape]))
                        .collect::<Vec<_>>(),
                ),
                t.iter().all(|t| t.name.is_some()),
            ),
            _ => (None, false),
        };
        let config = json!({
            "result_type": result_type.spark.to_json(),
            "params": params,
            "datetime_params": datetime_params,
            "tensors": tensors,
            "tensor_names": tensor_names,
        });
        let predict_fn = self
            .mlmodel
            .pyfunc
            .predict_fn
            .as_deref()
            .unwrap_or("predict");
        let binding = match &self.runtime {
            Runtime::InProcess(model) => {
                Binding::InProcess(Python::attach(|py| -> Result<Py<PyAny>> {
                    bridge(py)?
                        .getattr("Scorer")
                        .and_then(|cls| cls.call1((model.bind(py), predict_fn, config.to_string())))
                        .map(Bound::unbind)
                        .map_err(|e| python_error(py, &self.name, "binding the model", &e))
                })?)
            }
            Runtime::Workers(_) => Binding::Workers {
                predict_fn: predict_fn.to_owned(),
                config: config.to_string(),
            },
        };
        Ok(Scorer {
            model: Arc::clone(self),
            result_type,
            return_type,
            params,
            binding,
        })
    }
}

/// A model bound to a result type and params: scores input frames.
#[derive(Debug)]
pub struct Scorer {
    model: Arc<PyModel>,
    result_type: ResultType,
    return_type: DataType,
    params: Option<Value>,
    binding: Binding,
}

/// The bridge's `Scorer` for a model in the embedded interpreter, or what each worker
/// needs to build its own.
#[derive(Debug)]
enum Binding {
    InProcess(Py<PyAny>),
    Workers { predict_fn: String, config: String },
}

impl Scorer {
    /// The model.
    pub fn model(&self) -> &Arc<PyModel> {
        &self.model
    }

    /// The Spark result type.
    pub fn result_type(&self) -> &SparkType {
        &self.result_type.spark
    }

    /// The result type as resolved: the Spark type and whether it was inferred.
    pub fn resolved_result_type(&self) -> &ResultType {
        &self.result_type
    }

    /// The Arrow type of every prediction array.
    pub fn return_type(&self) -> &DataType {
        &self.return_type
    }

    /// The params `predict` receives, after validation and defaults.
    pub fn params(&self) -> Option<&Value> {
        self.params.as_ref()
    }

    /// Scores one input frame; the result has exactly `frame.num_rows` rows of the
    /// return type. An empty frame never reaches the model. Counts into `metrics`.
    pub fn predict(&self, frame: &InputFrame, metrics: &ModelMetrics) -> Result<ArrayRef> {
        if frame.num_rows == 0 {
            return Ok(arrow::array::new_empty_array(&self.return_type));
        }
        let name = self.model.name();
        let waiting = Instant::now();
        let data = match (&self.binding, &self.model.runtime) {
            (Binding::Workers { predict_fn, config }, Runtime::Workers(pool)) => {
                let answer = pool.predict(predict_fn, config, frame)?;
                let busy = answer.queued_time + answer.predict_time;
                metrics.queued_time.add_duration(answer.queued_time);
                metrics.predict_time.add_duration(answer.predict_time);
                metrics
                    .convert_time
                    .add_duration(waiting.elapsed().saturating_sub(busy));
                answer.data
            }
            (Binding::InProcess(scorer), _) => self.predict_in_process(scorer, frame, metrics)?,
            (Binding::Workers { .. }, Runtime::InProcess(_)) => {
                unreachable!("a scorer binds to its model's runtime")
            }
        };
        metrics.rows.add(frame.num_rows);
        metrics.batches.add(1);
        let array = make_array(data);
        if array.len() != frame.num_rows {
            return Err(Error::RowCount {
                model: name.to_owned(),
                expected: frame.num_rows,
                found: array.len(),
            });
        }
        if array.data_type() == &self.return_type {
            return Ok(array);
        }
        cast(&array, &self.return_type).map_err(|e| Error::Output {
            model: name.to_owned(),
            expected: self.result_type.spark.to_string(),
            message: e.to_string(),
        })
    }

    fn predict_in_process(
        &self,
        scorer: &Py<PyAny>,
        frame: &InputFrame,
        metrics: &ModelMetrics,
    ) -> Result<ArrayData> {
        let name = self.model.name();
        let waiting = Instant::now();
        Python::attach(|py| -> Result<ArrayData> {
            let attached = Instant::now();
            metrics.queued_time.add_duration(attached - waiting);
            let to_py = |e: PyErr| python_error(py, name, "predict", &e);
            let labels = PyList::empty(py);
            let arrays = PyList::empty(py);
            for (label, array) in frame.labels.iter().zip(&frame.arrays) {
                match label {
                    Label::Name(n) => labels.append(n),
                    Label::Index(i) => labels.append(i),
                }
                .map_err(to_py)?;
                match array {
                    Some(a) => arrays.append(a.to_data().to_pyarrow(py).map_err(to_py)?),
                    None => arrays.append(py.None()),
                }
                .map_err(to_py)?;
            }
            let (out, predict_ns): (Bound<'_, PyAny>, u64) = scorer
                .bind(py)
                .call_method1("predict", (labels, arrays, frame.mode.as_str()))
                .and_then(|r| r.extract())
                .map_err(to_py)?;
            let data = ArrayData::from_pyarrow_bound(&out).map_err(to_py)?;
            let predict = Duration::from_nanos(predict_ns);
            metrics.predict_time.add_duration(predict);
            metrics
                .convert_time
                .add_duration(attached.elapsed().saturating_sub(predict));
            Ok(data)
        })
    }
}

/// Captures a Python exception while attached: `Type: message` and the last traceback lines.
pub(crate) fn format_py_err(py: Python<'_>, err: &PyErr) -> (String, String) {
    let exception = format!("{}: {}", type_name(py, err), err.value(py));
    let traceback = err
        .traceback(py)
        .and_then(|tb| tb.format().ok())
        .map(|text| abridge_traceback(&text))
        .unwrap_or_default();
    (exception, traceback)
}

/// The last lines of a formatted traceback, starting at a frame boundary so no frame is
/// shown half; empty when there are no frames.
pub(crate) fn abridge_traceback(text: &str) -> String {
    let lines: Vec<_> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(TRACEBACK_LINES)..];
    let Some(start) = tail.iter().position(|l| l.starts_with("  File")) else {
        return String::new();
    };
    format!(
        "Traceback (most recent call last, abridged):\n{}",
        tail[start..].join("\n")
    )
}

fn type_name(py: Python<'_>, err: &PyErr) -> String {
    err.get_type(py)
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "Exception".into())
}

/// A Python exception as our error; the bridge tags exceptions raised outside the
/// model's own code with `mlfusion_stage`.
fn python_error(py: Python<'_>, model: &str, stage: &str, err: &PyErr) -> Error {
    let (exception, traceback) = format_py_err(py, err);
    let stage = err
        .value(py)
        .getattr("mlfusion_stage")
        .and_then(|s| s.extract::<String>())
        .unwrap_or_else(|_| stage.to_owned());
    Error::Python {
        model: model.to_owned(),
        stage,
        exception,
        traceback,
    }
}
