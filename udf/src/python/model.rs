//! A pyfunc model loaded in the embedded interpreter or in worker processes, and its
//! scorers: the model bound to one result type and params, scoring input frames.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayData, ArrayRef, StringArray, StructArray, make_array, new_null_array,
};
use arrow::compute::{cast, concat};
use arrow::datatypes::{DataType, Field, Fields};
use pyo3::prelude::*;
use pyo3::types::PyList;
use pyo3_arrow::PyArray;
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::pyfunc::enforce::{InputFrame, Label};
use crate::pyfunc::mlmodel::MlModel;
use crate::pyfunc::params::validate_params;
use crate::pyfunc::result_type::{ResultType, SparkType};
use crate::pyfunc::signature::{ColType, MlflowType, Schema};
use crate::python::environments::{EnvManager, ModelEnv};
use crate::python::exception::python_error;
use crate::python::interpreter::{attach, bridge, start_python};
use crate::python::metrics::{ModelMetrics, process_metrics};
use crate::python::store::ResolvedUri;
use crate::python::workers::{WorkerLimits, WorkerPool, WorkerPython};

/// How one model binding loads its model besides its URI: `spark_udf`'s `env_manager`,
/// `model_config` and `extra_env`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadOptions {
    /// The env manager (the loader's when `None`).
    pub env_manager: Option<EnvManager>,
    /// Overrides of the model's saved config, applied as `mlflow.pyfunc.load_model`'s
    /// `model_config` is (only keys the saved config has; see [`MlModel::model_config_with`]).
    pub model_config: Option<serde_json::Map<String, Value>>,
    /// Environment variables of the model's worker processes.
    pub extra_env: BTreeMap<String, String>,
}

/// MLflow's environment variable of config overrides, read where the model loads.
const INFERENCE_CONFIG_VAR: &str = "MLFLOW_PYFUNC_INFERENCE_CONFIG";

/// `MLFLOW_PYFUNC_INFERENCE_CONFIG` as the model's process sees it: from its `extra_env`,
/// else inherited from the engine.
fn inference_config(extra_env: &BTreeMap<String, String>) -> Option<String> {
    extra_env
        .get(INFERENCE_CONFIG_VAR)
        .cloned()
        .or_else(|| std::env::var(INFERENCE_CONFIG_VAR).ok())
}

/// A model loaded once through its `loader_module`: in the embedded interpreter, or in
/// each process of a [`WorkerPool`].
#[derive(Debug)]
pub struct PyModel {
    name: String,
    uri: String,
    resolved: Option<ResolvedUri>,
    mlmodel: MlModel,
    runtime: Runtime,
    /// The model's own env, when it has one (held for the model's lifetime).
    env: Option<ModelEnv>,
    /// The config `_load_pyfunc` was given (saved config with the binding's overrides).
    model_config: Option<Value>,
    /// The environment variables its workers were given.
    extra_env: BTreeMap<String, String>,
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
        Self::from_mlmodel(
            name,
            MlModel::from_path(dir.as_ref())?,
            workers,
            limits,
            None,
            &LoadOptions::default(),
        )
    }

    /// Loads `mlmodel`: with `env`, in (at least one) worker process of that env's
    /// Python; else as [`PyModel::load_in_workers`] does. `options` give its config
    /// overrides and its workers' environment variables (their `env_manager` is `env`).
    pub fn from_mlmodel(
        name: &str,
        mlmodel: MlModel,
        workers: usize,
        limits: WorkerLimits,
        env: Option<ModelEnv>,
        options: &LoadOptions,
    ) -> Result<Self> {
        let (mut python, workers) = match &env {
            Some(env) => (env.worker_python(), workers.max(1)),
            None => {
                let path = start_python(None)?;
                (
                    WorkerPython {
                        path,
                        pycache: None,
                        env: Vec::new(),
                    },
                    workers,
                )
            }
        };
        let code_dir = mlmodel.code_dir().map(|p| p.display().to_string());
        let data_path = mlmodel.data_path().display().to_string();
        if workers == 0 && !options.extra_env.is_empty() {
            return Err(Error::Call {
                model: name.to_owned(),
                message: "extra_env sets the environment of the model's own processes, and with --workers 0 it has none (every model shares the engine's)\nhint: run it in worker processes (--workers 1 or more)".into(),
            });
        }
        python.env = options.extra_env.clone().into_iter().collect();
        let effective_config = mlmodel.model_config_with(
            name,
            options.model_config.as_ref(),
            inference_config(&options.extra_env).as_deref(),
        )?;
        let model_config = effective_config.as_ref().map(Value::to_string);
        let runtime = if workers > 0 {
            let load = json!({
                "code_dir": code_dir,
                "loader_module": mlmodel.pyfunc.loader_module,
                "data_path": data_path,
                "model_config": model_config,
            });
            Runtime::Workers(Box::new(WorkerPool::start(
                name, python, load, workers, limits,
            )?))
        } else {
            Runtime::InProcess(attach(|py| -> Result<Py<PyAny>> {
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
            uri: mlmodel.dir.display().to_string(),
            resolved: None,
            mlmodel,
            runtime,
            env,
            model_config: effective_config,
            extra_env: options.extra_env.clone(),
        })
    }

    /// Checks that a client's `model_config` overrides and `extra_env` (as `spark_udf`
    /// takes them) would load the model as it is loaded: a server loads each model once,
    /// so a client cannot change either.
    pub fn check_load_options(
        &self,
        model_config: Option<&serde_json::Map<String, Value>>,
        extra_env: Option<&BTreeMap<String, String>>,
    ) -> Result<()> {
        let refuse = |what: &str, asked: String, loaded: String| Error::Call {
            model: self.name.clone(),
            message: format!(
                "the client asks for {what} {asked}, but the model is served with {loaded}; a server loads each model once\nhint: serve the model under a second name with that {what} (--model-config / --extra-env, or the config file)"
            ),
        };
        if let Some(env) = extra_env
            && *env != self.extra_env
        {
            return Err(refuse(
                "extra_env",
                json!(env).to_string(),
                json!(self.extra_env).to_string(),
            ));
        }
        if model_config.is_some() {
            let asked = self.mlmodel.model_config_with(
                &self.name,
                model_config,
                inference_config(&self.extra_env).as_deref(),
            )?;
            if asked != self.model_config {
                let show =
                    |c: &Option<Value>| c.as_ref().map_or("no config".into(), Value::to_string);
                return Err(refuse(
                    "model_config",
                    show(&asked),
                    show(&self.model_config),
                ));
            }
        }
        Ok(())
    }

    /// The worker processes scoring this model, if it runs in workers.
    pub fn workers(&self) -> Option<&WorkerPool> {
        match &self.runtime {
            Runtime::Workers(pool) => Some(pool.as_ref()),
            Runtime::InProcess(_) => None,
        }
    }

    /// Records where the model came from (see [`ModelLoader::load`](crate::ModelLoader::load)).
    pub(crate) fn with_uri(mut self, uri: &str, resolved: ResolvedUri) -> Self {
        self.uri = uri.to_owned();
        self.resolved = Some(resolved);
        self
    }

    /// The URI (or path) the model was loaded from, as given.
    pub fn uri(&self) -> &str {
        &self.uri
    }

    /// How the URI was resolved, when it went through a [`ModelStore`](crate::ModelStore).
    pub fn resolved(&self) -> Option<&ResolvedUri> {
        self.resolved.as_ref()
    }

    /// The model's own env, if it runs in one (else the engine's venv).
    pub fn env(&self) -> Option<&ModelEnv> {
        self.env.as_ref()
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
        self.bind(self.binding(result_type, params)?)
    }

    /// What [`PyModel::scorer`] would bind to, without binding: the result type resolved
    /// (the model's default for `None`) and the params validated, defaults filled in.
    /// Two calls that yield equal bindings score alike.
    pub fn binding(&self, result_type: Option<&str>, params: Option<&Value>) -> Result<Binding> {
        let signature = &self.mlmodel.signature;
        Ok(Binding {
            result_type: ResultType::resolve(result_type, signature.outputs.as_ref())?,
            params: validate_params(&self.name, params, signature.params.as_deref())?,
            on_error: OnError::Raise,
        })
    }

    /// `binding` with other params (validated, defaults filled in): the same result type
    /// and `on_error`.
    pub fn with_params(&self, binding: &Binding, params: Option<&Value>) -> Result<Binding> {
        Ok(Binding {
            params: validate_params(&self.name, params, self.mlmodel.signature.params.as_deref())?,
            ..binding.clone()
        })
    }

    /// A scorer for `binding` (from [`PyModel::binding`]).
    pub fn bind(self: &Arc<Self>, binding: Binding) -> Result<Scorer> {
        let signature = &self.mlmodel.signature;
        let Binding {
            result_type,
            params,
            on_error,
        } = &binding;
        let value_type = result_type.spark.to_arrow()?;
        let return_type = match on_error {
            OnError::Struct => DataType::Struct(Fields::from(vec![
                Field::new("value", value_type.clone(), true),
                Field::new("error", DataType::Utf8, true),
            ])),
            OnError::Raise | OnError::Null => value_type.clone(),
        };
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
        // Nested ColSpec inputs get MLflow's own per-value enforcement, in Python.
        let nested = matches!(&signature.inputs, Some(Schema::Columns(cols))
            if cols.iter().any(|c| !matches!(c.ty, ColType::Primitive(_))));
        let config = json!({
            "result_type": result_type.spark.to_json(),
            "params": params,
            "datetime_params": datetime_params,
            "tensors": tensors,
            "tensor_names": tensor_names,
            "nested_inputs": signature.inputs_json.as_ref().filter(|_| nested && !signature.from_type_hints),
            "example_dir": signature.from_example_type.then(|| self.mlmodel.dir.display().to_string()),
        });
        let predict_fn = self
            .mlmodel
            .pyfunc
            .predict_fn
            .as_deref()
            .unwrap_or("predict");
        let python = match &self.runtime {
            Runtime::InProcess(model) => PyScorer::InProcess(attach(|py| -> Result<Py<PyAny>> {
                bridge(py)?
                    .getattr("Scorer")
                    .and_then(|cls| cls.call1((model.bind(py), predict_fn, config.to_string())))
                    .map(Bound::unbind)
                    .map_err(|e| python_error(py, &self.name, "binding the model", &e))
            })?),
            Runtime::Workers(_) => PyScorer::Workers {
                predict_fn: predict_fn.to_owned(),
                config: config.to_string(),
            },
        };
        Ok(Scorer {
            model: Arc::clone(self),
            value_type,
            return_type,
            binding,
            python,
        })
    }
}

/// What a scorer is bound to: the result type and the params `predict` receives, as
/// validated by [`PyModel::binding`], and what it does with rows that fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    result_type: ResultType,
    params: Option<Value>,
    on_error: OnError,
}

/// What a model call does with the rows whose prediction fails (`--on-error`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// The call fails, as `spark_udf`'s does.
    #[default]
    Raise,
    /// The rows that fail are NULL; the others keep their predictions.
    Null,
    /// `struct<value: T, error: string>`: each row's prediction, or why it failed.
    Struct,
}

impl std::str::FromStr for OnError {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "raise" => Ok(Self::Raise),
            "null" => Ok(Self::Null),
            "struct" => Ok(Self::Struct),
            _ => Err(format!("unknown on_error '{s}': raise, null or struct")),
        }
    }
}

impl OnError {
    /// The name `--on-error` and the JSON bodies take.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Raise => "raise",
            Self::Null => "null",
            Self::Struct => "struct",
        }
    }
}

impl Binding {
    /// The same binding, doing `on_error` with rows that fail.
    pub fn with_on_error(self, on_error: OnError) -> Self {
        Self { on_error, ..self }
    }

    /// What a call does with rows that fail.
    pub fn on_error(&self) -> OnError {
        self.on_error
    }

    /// The result type as resolved: the Spark type and whether it was inferred.
    pub fn result_type(&self) -> &ResultType {
        &self.result_type
    }

    /// The params after validation and defaults.
    pub fn params(&self) -> Option<&Value> {
        self.params.as_ref()
    }
}

/// A model bound to a result type and params: scores input frames.
#[derive(Debug)]
pub struct Scorer {
    model: Arc<PyModel>,
    /// The Arrow type of the predictions.
    value_type: DataType,
    /// The Arrow type of the call's result: the predictions', or a struct of them and
    /// the errors (`on_error = struct`).
    return_type: DataType,
    binding: Binding,
    python: PyScorer,
}

/// The bridge's `Scorer` for a model in the embedded interpreter, or what each worker
/// needs to build its own.
#[derive(Debug)]
enum PyScorer {
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
        &self.binding.result_type.spark
    }

    /// What the scorer is bound to.
    pub fn binding(&self) -> &Binding {
        &self.binding
    }

    /// The Arrow type of every prediction array.
    pub fn return_type(&self) -> &DataType {
        &self.return_type
    }

    /// The params `predict` receives, after validation and defaults.
    pub fn params(&self) -> Option<&Value> {
        self.binding.params()
    }

    /// Scores one input frame; the result has exactly `frame.num_rows` rows of the
    /// return type. An empty frame never reaches the model. Counts into `metrics`.
    ///
    /// Unless the binding's `on_error` is `raise`, a call that fails is retried on each
    /// half of its rows, down to the rows that fail alone, which become NULL (and carry
    /// their error with `struct`): with f such rows in a batch of n, at most about
    /// 2·f·log2(n) more calls, and none when every row scores.
    pub fn predict(&self, frame: &InputFrame, metrics: &ModelMetrics) -> Result<ArrayRef> {
        if frame.num_rows == 0 {
            return Ok(arrow::array::new_empty_array(&self.return_type));
        }
        let started = Instant::now();
        let predicted = self.predict_with_on_error(frame, metrics);
        process_metrics().batch(self.model.name(), frame.num_rows, started.elapsed());
        predicted
    }

    /// [`Scorer::predict`] of a frame that is not empty.
    fn predict_with_on_error(
        &self,
        frame: &InputFrame,
        metrics: &ModelMetrics,
    ) -> Result<ArrayRef> {
        if self.binding.on_error == OnError::Raise {
            return self.predict_frame(frame, metrics);
        }
        let mut errors = Vec::with_capacity(frame.num_rows);
        let values = self.predict_rows(frame, metrics, &mut errors)?;
        if self.binding.on_error == OnError::Null {
            return Ok(values);
        }
        let DataType::Struct(fields) = &self.return_type else {
            unreachable!("on_error = struct returns a struct")
        };
        let errors: ArrayRef = Arc::new(StringArray::from(errors));
        Ok(Arc::new(StructArray::try_new(
            fields.clone(),
            vec![values, errors],
            None,
        )?))
    }

    /// The predictions of `frame`, where a failing call is split in halves until the
    /// rows that fail alone are found: those are NULL, their errors pushed to `errors`
    /// (one entry per row, `None` for a row that scored).
    fn predict_rows(
        &self,
        frame: &InputFrame,
        metrics: &ModelMetrics,
        errors: &mut Vec<Option<String>>,
    ) -> Result<ArrayRef> {
        let error = match self.predict_frame(frame, metrics) {
            Ok(values) => {
                errors.extend(std::iter::repeat_n(None, frame.num_rows));
                return Ok(values);
            }
            Err(error) => error,
        };
        metrics.failed_call(self.model.name());
        if frame.num_rows == 1 {
            metrics.failed_row(self.model.name());
            // The cause, without the traceback that follows it.
            let message = error.to_string();
            errors.push(Some(message.lines().next().unwrap_or_default().to_owned()));
            return Ok(new_null_array(&self.value_type, 1));
        }
        let half = frame.num_rows / 2;
        let first = self.predict_rows(&frame.slice(0, half), metrics, errors)?;
        let second =
            self.predict_rows(&frame.slice(half, frame.num_rows - half), metrics, errors)?;
        Ok(concat(&[first.as_ref(), second.as_ref()])?)
    }

    /// Scores `frame` in one call, as the binding's value type.
    fn predict_frame(&self, frame: &InputFrame, metrics: &ModelMetrics) -> Result<ArrayRef> {
        let name = self.model.name();
        let waiting = Instant::now();
        let (data, predict) = match (&self.python, &self.model.runtime) {
            (PyScorer::Workers { predict_fn, config }, Runtime::Workers(pool)) => {
                let answer = pool.predict(predict_fn, config, frame)?;
                let busy = answer.queued_time + answer.predict_time;
                metrics.queued_time.add_duration(answer.queued_time);
                metrics
                    .convert_time
                    .add_duration(waiting.elapsed().saturating_sub(busy));
                (answer.data, answer.predict_time)
            }
            (PyScorer::InProcess(scorer), _) => self.predict_in_process(scorer, frame, metrics)?,
            (PyScorer::Workers { .. }, Runtime::InProcess(_)) => {
                unreachable!("a scorer binds to its model's runtime")
            }
        };
        metrics.answered(name, frame.num_rows, predict);
        let array = make_array(data);
        if array.len() != frame.num_rows {
            return Err(Error::RowCount {
                model: name.to_owned(),
                expected: frame.num_rows,
                found: array.len(),
            });
        }
        if array.data_type() == &self.value_type {
            return Ok(array);
        }
        cast(&array, &self.value_type).map_err(|e| Error::Output {
            model: name.to_owned(),
            expected: self.result_type().to_string(),
            message: e.to_string(),
        })
    }

    fn predict_in_process(
        &self,
        scorer: &Py<PyAny>,
        frame: &InputFrame,
        metrics: &ModelMetrics,
    ) -> Result<(ArrayData, Duration)> {
        let name = self.model.name();
        let waiting = Instant::now();
        attach(|py| -> Result<(ArrayData, Duration)> {
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
                    Some(a) => {
                        let array = PyArray::from_array_ref(Arc::clone(a));
                        arrays.append(array.to_pyarrow(py).map_err(to_py)?)
                    }
                    None => arrays.append(py.None()),
                }
                .map_err(to_py)?;
            }
            let (out, predict_ns): (Bound<'_, PyAny>, u64) = scorer
                .bind(py)
                .call_method1("predict", (labels, arrays, frame.mode.as_str()))
                .and_then(|r| r.extract())
                .map_err(to_py)?;
            let data = out.extract::<PyArray>().map_err(to_py)?.array().to_data();
            let predict = Duration::from_nanos(predict_ns);
            metrics
                .convert_time
                .add_duration(attached.elapsed().saturating_sub(predict));
            Ok((data, predict))
        })
    }
}
