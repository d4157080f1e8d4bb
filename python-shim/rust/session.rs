//! Sessions of the Python API: models and tables registered by name, SQL planned at once
//! and run when its rows are read ([`Frame`]), record batches streamed one at a time
//! ([`Batches`]) or written where `--output` writes.

use std::str::FromStr;
use std::sync::{Arc, Mutex};

use arrow::datatypes::SchemaRef;
use clap::{Parser, ValueEnum};
use datafusion::datasource::MemTable;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::DFParser;
use futures::StreamExt;
use mlfusion_engine::args::{LoadFlags, SessionArgs, worker_count};
use mlfusion_engine::error::{Error, Result};
use mlfusion_engine::output::{Format, Target};
use mlfusion_engine::progress::Scored;
use mlfusion_engine::registration::{load_models, model_registrations};
use mlfusion_engine::session::{new_context, start};
use mlfusion_engine::statements::{Prepared, prepare};
use mlfusion_udf::{EnvManager, ModelLoader};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3_arrow::{PyRecordBatch, PySchema, PyTable};

use crate::{Threads, block, to_py, wait};

/// A session's options: the session flags of `mlfusion query` (`--workers`, ...).
#[derive(Parser)]
#[command(name = "mlfusion.Session", no_binary_name = true)]
struct Options {
    #[command(flatten)]
    session: SessionArgs,
}

/// A DataFusion session whose SQL functions include the registered models.
#[pyclass(module = "mlfusion._engine", frozen)]
pub struct Session {
    runtime: Arc<Threads>,
    ctx: SessionContext,
    loader: ModelLoader,
}

#[pymethods]
impl Session {
    /// `flags`: session flags of `mlfusion query`, e.g. `["--workers", "0"]`.
    #[new]
    fn new(py: Python<'_>, flags: Vec<String>) -> PyResult<Self> {
        let options = Options::try_parse_from(flags)
            .map_err(|e| PyValueError::new_err(e.render().to_string()))?;
        let settings = options.session;
        let started = (|| -> Result<_> {
            settings.limits.apply(worker_count(settings.workers))?;
            mlfusion_udf::start_python(None)?;
            let runtime = Threads::new().map_err(Error::Runtime)?;
            Ok((runtime, new_context(&settings)?))
        })();
        let (runtime, ctx) = started.map_err(|e| to_py(py, e))?;
        Ok(Self {
            runtime: Arc::new(runtime),
            ctx,
            loader: settings.model_loader(),
        })
    }

    /// Loads the model at `uri` and binds it as the SQL function `name` (`--model`,
    /// `--result-type`, `--params`, `--model-config`, `--extra-env`, `--env-manager`,
    /// `--on-error`).
    #[pyo3(signature = (name, uri, result_type=None, params=None, model_config=None, extra_env=Vec::new(), env_manager=None, on_error=None))]
    #[allow(clippy::too_many_arguments)]
    fn register_model(
        &self,
        py: Python<'_>,
        name: &str,
        uri: &str,
        result_type: Option<&str>,
        params: Option<&str>,
        model_config: Option<&str>,
        extra_env: Vec<(String, String)>,
        env_manager: Option<&str>,
        on_error: Option<&str>,
    ) -> PyResult<()> {
        let of_model = |value: &str| vec![format!("{name}={value}")];
        let load = LoadFlags {
            model_configs: model_config.map(of_model).unwrap_or_default(),
            extra_envs: extra_env
                .iter()
                .map(|(var, value)| format!("{name}={var}={value}"))
                .collect(),
        };
        let mut models = model_registrations(
            &of_model(uri),
            &result_type.map(of_model).unwrap_or_default(),
            &params.map(of_model).unwrap_or_default(),
            &on_error.map(of_model).unwrap_or_default(),
            &load,
        )
        .map_err(|e| to_py(py, e))?;
        if let Some(manager) = env_manager {
            let manager = EnvManager::from_str(manager).map_err(PyValueError::new_err)?;
            for model in &mut models {
                model.options.env_manager = Some(manager);
            }
        }
        let loaded = block(
            py,
            &self.runtime,
            load_models(&self.ctx, &self.loader, models),
        )?;
        loaded.map_err(|e| to_py(py, e))
    }

    /// Registers the table `name`: a location as `--table` takes it (a Parquet file or
    /// directory, a URL, `delta:LOCATION[@VERSION]`, a Delta table's directory).
    fn register_table(&self, py: Python<'_>, name: &str, location: &str) -> PyResult<()> {
        let table = mlfusion_engine::tables::register_table(&self.ctx, name, location);
        let registered = block(py, &self.runtime, table)?;
        registered.map_err(|e| to_py(py, e))
    }

    /// Registers Arrow data held in memory (anything with `__arrow_c_stream__`: a pyarrow
    /// Table or RecordBatchReader, a polars DataFrame, ...) as the table `name`.
    fn register_arrow(&self, py: Python<'_>, name: &str, data: PyTable) -> PyResult<()> {
        let (batches, schema) = data.into_inner();
        let registered = MemTable::try_new(schema, vec![batches])
            .and_then(|table| self.ctx.register_table(name, Arc::new(table)));
        registered
            .map(drop)
            .map_err(|e| to_py(py, Error::DataFusion(e)))
    }

    /// Plans one SQL statement. A query runs when its frame is read; `COPY` and DDL run
    /// now (a `COPY` writes whole or not at all).
    fn sql(&self, py: Python<'_>, query: &str) -> PyResult<Frame> {
        let mut statements = DFParser::parse_sql(query).map_err(|e| to_py(py, e.into()))?;
        if statements.len() != 1 {
            return Err(PyValueError::new_err(format!(
                "sql() takes one statement, got {}\nhint: call sql() once per statement",
                statements.len()
            )));
        }
        let statement = statements.pop_front().expect("one statement");
        let prepared = block(py, &self.runtime, prepare(&self.ctx, statement, false))?;
        Ok(Frame {
            runtime: Arc::clone(&self.runtime),
            ctx: self.ctx.clone(),
            prepared: prepared.map_err(|e| to_py(py, e))?,
        })
    }
}

/// The result of one SQL statement. A query runs each time it is read.
#[pyclass(module = "mlfusion._engine", frozen)]
pub struct Frame {
    runtime: Arc<Threads>,
    ctx: SessionContext,
    prepared: Prepared,
}

impl Frame {
    /// Starts the statement: its rows, and the counters of what its models score.
    async fn start(&self) -> Result<(SendableRecordBatchStream, Option<Arc<Scored>>)> {
        match &self.prepared {
            Prepared::Query(plan) => {
                let (physical, stream) = start(&self.ctx, plan.clone()).await?;
                Ok((stream, Scored::of(&physical).map(Arc::new)))
            }
            Prepared::Done(schema, batches) => {
                let stream = MemoryStream::try_new(batches.clone(), Arc::clone(schema), None)?;
                Ok((Box::pin(stream), None))
            }
        }
    }
}

#[pymethods]
impl Frame {
    /// The pyarrow schema of the rows.
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let schema = match &self.prepared {
            Prepared::Query(plan) => Arc::new(plan.schema().as_arrow().clone()),
            Prepared::Done(schema, _) => Arc::clone(schema),
        };
        PySchema::new(schema).into_pyarrow(py)
    }

    /// Runs the statement; its record batches are read one at a time.
    fn execute(&self, py: Python<'_>) -> PyResult<Batches> {
        let started = block(py, &self.runtime, self.start())?;
        let (stream, scored) = started.map_err(|e| to_py(py, e))?;
        Ok(Batches {
            runtime: Arc::clone(&self.runtime),
            schema: stream.schema(),
            stream: Mutex::new(Some(stream)),
            scored,
        })
    }

    /// Runs the statement and writes its rows where `--output` writes (a file, an object
    /// store URL, `delta:LOCATION`): whole, or nothing on failure or Ctrl-C. `progress`
    /// is called with the rows scored so far (and the rows expected, or None) as it runs.
    /// Returns "wrote N row(s) to WHERE".
    #[pyo3(signature = (location, format=None, mode="error", progress=None))]
    fn write(
        &self,
        py: Python<'_>,
        location: String,
        format: Option<&str>,
        mode: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<String> {
        let format = format
            .map(|f| Format::from_str(f, true).map_err(PyValueError::new_err))
            .transpose()?;
        let delta_mode = mlfusion_engine::delta::save_mode(mode).map_err(PyValueError::new_err)?;
        let target = Target {
            location,
            format,
            delta_mode,
        };
        let scored: Mutex<Option<Arc<Scored>>> = Mutex::new(None);
        let run = async {
            let (stream, counters) = self.start().await?;
            *scored.lock().expect("not poisoned") = counters;
            target.write(&self.ctx, stream).await
        };
        let report = |py: Python<'_>| {
            let counters = scored.lock().expect("not poisoned").clone();
            match (&progress, counters) {
                (Some(report), Some(counters)) => report
                    .call1(py, (counters.rows(), counters.expected))
                    .map(drop),
                _ => Ok(()),
            }
        };
        let written = wait(py, &self.runtime, run, &report)?.map_err(|e| to_py(py, e))?;
        report(py)?; // the final count
        Ok(written)
    }
}

/// The record batches of a running statement, each a pyarrow RecordBatch.
#[pyclass(module = "mlfusion._engine", frozen)]
pub struct Batches {
    runtime: Arc<Threads>,
    schema: SchemaRef,
    /// `None` once the rows have ended or failed (the plan is then dropped).
    stream: Mutex<Option<SendableRecordBatchStream>>,
    scored: Option<Arc<Scored>>,
}

#[pymethods]
impl Batches {
    #[getter]
    fn schema<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        PySchema::new(Arc::clone(&self.schema)).into_pyarrow(py)
    }

    /// Rows the statement's models have scored so far; None when it calls no model.
    #[getter]
    fn rows_scored(&self) -> Option<u64> {
        self.scored.as_ref().map(|s| s.rows())
    }

    /// Rows the statement's models are expected to score, when the tables' metadata says.
    #[getter]
    fn rows_expected(&self) -> Option<u64> {
        self.scored.as_ref().and_then(|s| s.expected)
    }

    fn __iter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    fn __next__<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        let mut guard = self.stream.lock().expect("not poisoned");
        let Some(stream) = guard.as_mut() else {
            return Ok(None);
        };
        let next = block(py, &self.runtime, stream.next());
        match next {
            Ok(Some(Ok(batch))) => PyRecordBatch::new(batch).into_pyarrow(py).map(Some),
            Ok(Some(Err(e))) => {
                *guard = None;
                Err(to_py(py, Error::DataFusion(e)))
            }
            Ok(None) => {
                *guard = None;
                Ok(None)
            }
            Err(interrupted) => {
                *guard = None;
                Err(interrupted)
            }
        }
    }

    /// Stops the statement (its workers' calls are cancelled); later reads end.
    fn close(&self) {
        self.stream.lock().expect("not poisoned").take();
    }
}
