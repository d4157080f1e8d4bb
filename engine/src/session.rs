//! A DataFusion session with models registered as functions and files as tables.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use datafusion::execution::FunctionRegistry;
use datafusion::execution::SessionStateBuilder;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions, SessionConfig, SessionContext};
use mlfusion_udf::{
    ModelBatchesRule, ModelCallRewrites, ModelCallsOnce, ModelMetricsRule, ModelStore, PyModelUdf,
};
use serde_json::Value;

use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::{SendableRecordBatchStream, execute_stream};

use crate::args::SessionArgs;
use crate::error::{Error, Result};
use crate::model_functions::{ModelFunctionFactory, ModelsTable};
use crate::progress;

/// One model to register: SQL name, path or URI, optional result type and params.
#[derive(Debug, Clone)]
pub struct ModelRegistration {
    pub name: String,
    pub uri: String,
    pub result_type: Option<String>,
    pub params: Option<Value>,
}

/// A session configured for scoring: file scans are not split and not round-robin
/// repartitioned, so the rows of one file keep their order through a plain projection;
/// model calls report metrics (`EXPLAIN ANALYZE`, progress bars).
pub fn new_context(settings: &SessionArgs) -> Result<SessionContext> {
    let partitions = settings
        .target_partitions
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = SessionConfig::new()
        .with_batch_size(settings.batch_size)
        .with_target_partitions(partitions)
        .with_repartition_file_scans(false)
        .with_round_robin_repartition(false);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_function_factory(Some(Arc::new(ModelFunctionFactory::new(
            settings.model_store(),
        ))))
        .with_optimizer_rule(Arc::new(ModelCallsOnce))
        .with_physical_optimizer_rules(physical_rules())
        .build();
    // URL tables: `SELECT ... FROM 'data/*.parquet'`, as in datafusion-cli.
    let mut ctx = SessionContext::new_with_state(state).enable_url_table();
    ctx.register_function_rewrite(Arc::new(ModelCallRewrites))?;
    ctx.register_udtf("models", Arc::new(ModelsTable));
    Ok(ctx)
}

/// DataFusion's physical optimizer rules, after [`ModelMetricsRule`].
fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    // First: with its coalescing input, a projection calling a model is not absorbed
    // into a Parquet scan (which would call the model on the scan's own batches).
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> =
        vec![Arc::new(ModelBatchesRule), Arc::new(ModelMetricsRule)];
    rules.extend(PhysicalOptimizer::new().rules);
    rules
}

/// Plans and runs `plan`, with a progress bar on stderr if it scores models and
/// `progress` (see [`progress::wanted`]).
pub async fn execute(
    ctx: &SessionContext,
    plan: LogicalPlan,
    progress: bool,
) -> Result<SendableRecordBatchStream> {
    let physical = ctx
        .execute_logical_plan(plan)
        .await?
        .create_physical_plan()
        .await?;
    let stream = execute_stream(Arc::clone(&physical), ctx.task_ctx())?;
    Ok(progress::watch(&physical, stream, progress))
}

/// Loads a model (once) and binds it as the SQL function `m.name`. Runs Python: call it
/// from a blocking context, not from an async task.
pub fn model_udf(store: &ModelStore, m: &ModelRegistration) -> mlfusion_udf::Result<ScalarUDF> {
    let model = Arc::new(store.load(&m.name, &m.uri)?);
    let scorer = Arc::new(model.scorer(m.result_type.as_deref(), m.params.as_ref())?);
    Ok(PyModelUdf::new(&m.name, scorer).into_udf())
}

/// Loads each model and registers it as a SQL function (blocking).
pub fn register_models(
    ctx: &SessionContext,
    store: &ModelStore,
    models: &[ModelRegistration],
) -> Result<()> {
    for m in models {
        ctx.register_udf(model_udf(store, m)?);
    }
    Ok(())
}

/// [`register_models`] from async code: the loading runs on a blocking thread.
pub async fn load_models(
    ctx: &SessionContext,
    store: &ModelStore,
    models: Vec<ModelRegistration>,
) -> Result<()> {
    let (ctx, store) = (ctx.clone(), store.clone());
    tokio::task::spawn_blocking(move || register_models(&ctx, &store, &models))
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
}

/// Registers a Parquet (default) or CSV file, directory or glob as table `name`.
pub async fn register_table(ctx: &SessionContext, name: &str, path: &str) -> Result<()> {
    let is_csv = Path::new(path)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    if is_csv {
        ctx.register_csv(name, path, CsvReadOptions::new()).await?;
    } else {
        let options = ParquetReadOptions::default();
        ctx.register_parquet(name, path, options).await?;
    }
    Ok(())
}

/// Splits `NAME=VALUE` flag values.
pub fn split_assignment<'a>(flag: &'static str, value: &'a str) -> Result<(&'a str, &'a str)> {
    match value.split_once('=') {
        Some((name, rest)) if !name.is_empty() && !rest.is_empty() => Ok((name, rest)),
        _ => Err(Error::BadArgument {
            flag,
            value: value.to_owned(),
            message: "expected NAME=VALUE".into(),
        }),
    }
}

/// Combines `--model`, `--result-type` and `--params` flags into registrations.
pub fn model_registrations(
    models: &[String],
    result_types: &[String],
    params: &[String],
) -> Result<Vec<ModelRegistration>> {
    let mut out: Vec<ModelRegistration> = Vec::new();
    let mut index = HashMap::new();
    for m in models {
        let (name, uri) = split_assignment("--model", m)?;
        if index.insert(name.to_owned(), out.len()).is_some() {
            return Err(Error::BadArgument {
                flag: "--model",
                value: m.clone(),
                message: format!("model '{name}' is given twice"),
            });
        }
        out.push(ModelRegistration {
            name: name.to_owned(),
            uri: uri.to_owned(),
            result_type: None,
            params: None,
        });
    }
    let lookup = |flag: &'static str, name: &str| -> Result<usize> {
        index.get(name).copied().ok_or_else(|| Error::UnknownModel {
            flag,
            model: name.to_owned(),
        })
    };
    for r in result_types {
        let (name, ddl) = split_assignment("--result-type", r)?;
        let i = lookup("--result-type", name)?;
        out[i].result_type = Some(ddl.to_owned());
    }
    for p in params {
        let (name, json) = split_assignment("--params", p)?;
        let i = lookup("--params", name)?;
        let value: Value = serde_json::from_str(json).map_err(|e| Error::BadArgument {
            flag: "--params",
            value: mlfusion_udf::limits::abbreviate(p, 200),
            message: mlfusion_udf::limits::json_error(&e),
        })?;
        out[i].params = Some(value);
    }
    Ok(out)
}
