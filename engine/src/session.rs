//! A DataFusion session with models registered as functions and files as tables.

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{FunctionRegistry, SessionStateBuilder};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::prelude::{SessionConfig, SessionContext};
use mlfusion_udf::{
    ModelBatchesRule, ModelCallRewrites, ModelCallsOnce, ModelMetricsRule, ParamsArgument,
};

use datafusion::logical_expr::{LogicalPlan, ScalarUDF};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};

use crate::args::SessionArgs;
use crate::delta::{self, DeltaTables, SpreadFiles};
use crate::error::Result;
use crate::model_functions::{ModelFunctionFactory, ModelsTable};
use crate::progress;
use crate::stores::Stores;
use crate::tables::enable_url_tables;

/// A session configured for scoring: file scans are not split and not round-robin
/// repartitioned, so the rows of one file keep their order through a plain projection;
/// model calls report metrics (`EXPLAIN ANALYZE`, progress bars); URLs of object stores
/// are tables (see [`crate::stores`]).
pub fn new_context(settings: &SessionArgs) -> Result<SessionContext> {
    let partitions = settings
        .target_partitions
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let config = SessionConfig::new()
        .with_batch_size(settings.batch_size)
        .with_target_partitions(partitions)
        .with_repartition_file_scans(false)
        .with_round_robin_repartition(false);
    let runtime = RuntimeEnvBuilder::new()
        .with_object_store_registry(Arc::new(Stores::default()))
        .build_arc()?;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime)
        .with_default_features()
        .with_table_factory(delta::FORMAT.into(), Arc::new(DeltaTables))
        .with_function_factory(Some(Arc::new(ModelFunctionFactory::new(
            settings.model_loader(),
        ))))
        .with_optimizer_rule(Arc::new(ModelCallsOnce))
        .with_physical_optimizer_rules(physical_rules())
        .build();
    // URL tables: `SELECT ... FROM 'data/*.parquet'`, as in datafusion-cli.
    let mut ctx = enable_url_tables(SessionContext::new_with_state(state));
    ctx.register_function_rewrite(Arc::new(ModelCallRewrites))?;
    ctx.register_udf(ScalarUDF::new_from_impl(ParamsArgument::default()));
    ctx.register_udtf("models", Arc::new(ModelsTable));
    Ok(ctx)
}

/// DataFusion's physical optimizer rules, after [`SpreadFiles`] and [`ModelMetricsRule`].
fn physical_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    // First: with its coalescing input, a projection calling a model is not absorbed
    // into a Parquet scan (which would call the model on the scan's own batches).
    let mut rules: Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> = vec![
        Arc::new(SpreadFiles),
        Arc::new(ModelBatchesRule),
        Arc::new(ModelMetricsRule),
    ];
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
    let (physical, stream) = start(ctx, plan).await?;
    Ok(progress::watch(&physical, stream, progress))
}

/// Plans and runs `plan`: its physical plan (whose model calls count the rows they
/// score, see [`progress::Scored`]) and its output.
pub async fn start(
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> Result<(Arc<dyn ExecutionPlan>, SendableRecordBatchStream)> {
    let physical = ctx
        .execute_logical_plan(plan)
        .await?
        .create_physical_plan()
        .await?;
    let stream = execute_stream(Arc::clone(&physical), ctx.task_ctx())?;
    Ok((physical, stream))
}
