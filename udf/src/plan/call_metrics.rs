//! Per-query model metrics: rows, batches, and where the time of each model call went.
//!
//! [`ModelMetricsRule`] (a physical optimizer rule) gives every projection and filter
//! that calls a model its own [`ModelMetrics`] and wraps it in a [`ModelCallsExec`],
//! which shows them in `EXPLAIN ANALYZE` and lets a progress bar read them while the
//! query runs.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use arrow::array::{RecordBatch, RecordBatchOptions};
use arrow::datatypes::{Schema, SchemaRef};
use datafusion::common::DataFusionError;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::execution_plan::{
    CardinalityEffect, ChildrenPropertiesMode, ReplaceChildrenOptions,
    replace_children_if_necessary,
};
use datafusion::physical_plan::filter::{FilterExec, FilterExecBuilder};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterDescription, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::metrics::{
    ExecutionPlanMetricsSet, MetricBuilder, MetricValue, MetricsSet,
};
use datafusion::physical_plan::projection::{ProjectionExec, ProjectionExpr};
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use futures::StreamExt;

use crate::plan::scalar::PyModelUdf;
use crate::python::ModelMetrics;

/// Instruments model calls in projections and filters (see the module docs). Runs
/// before DataFusion's own rules: the counting calls then travel with the expressions
/// wherever projection and filter pushdown move them (e.g. into a Parquet scan), and
/// [`ModelCallsExec`] is transparent to those pushdowns.
#[derive(Debug, Default)]
pub struct ModelMetricsRule;

impl PhysicalOptimizerRule for ModelMetricsRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        plan.transform_up(|node| {
            let set = ExecutionPlanMetricsSet::new();
            let mut models = BTreeMap::new();
            let instrumented: Arc<dyn ExecutionPlan> =
                if let Some(p) = node.downcast_ref::<ProjectionExec>() {
                    let exprs = p
                        .expr()
                        .iter()
                        .map(|e| {
                            Ok(ProjectionExpr {
                                expr: instrument(&e.expr, &set, &mut models)?,
                                alias: e.alias.clone(),
                            })
                        })
                        .collect::<Result<Vec<_>>>()?;
                    if models.is_empty() {
                        return Ok(Transformed::no(node));
                    }
                    Arc::new(ProjectionExec::try_new(exprs, Arc::clone(p.input()))?)
                } else if let Some(f) = node.downcast_ref::<FilterExec>() {
                    let predicate = instrument(f.predicate(), &set, &mut models)?;
                    if models.is_empty() {
                        return Ok(Transformed::no(node));
                    }
                    Arc::new(
                        FilterExecBuilder::from(f)
                            .with_predicate(predicate)
                            .build()?,
                    )
                } else {
                    return Ok(Transformed::no(node));
                };
            let models = models.into_iter().collect();
            Ok(Transformed::yes(Arc::new(ModelCallsExec::new(
                instrumented,
                set,
                models,
            ))))
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "mlfusion_model_metrics"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// Fresh counters, registered in `set` as `rows_scored[<model>]`, ... (`EXPLAIN ANALYZE`
/// shows metrics by name, so the name carries the model).
fn register(set: &ExecutionPlanMetricsSet, model: &str) -> ModelMetrics {
    let metrics = ModelMetrics::default();
    let name = |metric: &str| -> Cow<'static, str> { format!("{metric}[{model}]").into() };
    let add = |value: MetricValue| MetricBuilder::new(set).build(value);
    add(MetricValue::Count {
        name: name("rows_scored"),
        count: metrics.rows.clone(),
    });
    for (metric, count) in [
        ("batches_scored", &metrics.batches),
        ("failed_calls", &metrics.failed_calls),
        ("failed_rows", &metrics.failed_rows),
    ] {
        add(MetricValue::Count {
            name: name(metric),
            count: count.clone(),
        });
    }
    for (metric, time) in [
        ("predict_time", &metrics.predict_time),
        ("convert_time", &metrics.convert_time),
        ("queued_time", &metrics.queued_time),
    ] {
        add(MetricValue::Time {
            name: name(metric),
            time: time.clone(),
        });
    }
    metrics
}

/// Evaluates a projection's expressions on one batch.
fn project(
    batch: &RecordBatch,
    exprs: &[Arc<dyn PhysicalExpr>],
    schema: SchemaRef,
) -> Result<RecordBatch> {
    let columns = exprs
        .iter()
        .map(|e| e.evaluate(batch)?.into_array(batch.num_rows()))
        .collect::<Result<Vec<_>>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    Ok(RecordBatch::try_new_with_options(
        schema, columns, &options,
    )?)
}

/// Replaces each model call in `expr` by one that counts into metrics of `set`
/// (one set of counters per model).
fn instrument(
    expr: &Arc<dyn PhysicalExpr>,
    set: &ExecutionPlanMetricsSet,
    models: &mut BTreeMap<String, ModelMetrics>,
) -> Result<Arc<dyn PhysicalExpr>> {
    Arc::clone(expr)
        .transform_up(|e| {
            let Some(call) = ScalarFunctionExpr::try_downcast_func::<PyModelUdf>(e.as_ref()) else {
                return Ok(Transformed::no(e));
            };
            let Some(udf) = call.fun().inner().downcast_ref::<PyModelUdf>() else {
                return Ok(Transformed::no(e));
            };
            let name = call.name();
            let metrics = models
                .entry(name.to_owned())
                .or_insert_with(|| register(set, name))
                .clone();
            let counted = udf.with_metrics(metrics).into_udf();
            Ok(Transformed::yes(Arc::new(ScalarFunctionExpr::new(
                name,
                Arc::new(counted),
                call.args().to_vec(),
                call.return_field(&Schema::empty())?,
                Arc::new(call.config_options().clone()),
            )) as Arc<dyn PhysicalExpr>))
        })
        .map(|t| t.data)
}

/// A node above a projection or filter that calls models: it owns the metrics of those
/// calls, so `EXPLAIN ANALYZE` shows them. Above a projection it also evaluates it, with
/// several batches in flight (on blocking threads) and results in input order: while a
/// batch is being scored, the next ones are read and sent to other workers, so one
/// partition (a single file) keeps every worker busy.
#[derive(Debug, Clone)]
pub struct ModelCallsExec {
    input: Arc<dyn ExecutionPlan>,
    metrics: ExecutionPlanMetricsSet,
    models: Vec<(String, ModelMetrics)>,
}

impl ModelCallsExec {
    fn new(
        input: Arc<dyn ExecutionPlan>,
        metrics: ExecutionPlanMetricsSet,
        models: Vec<(String, ModelMetrics)>,
    ) -> Self {
        Self {
            input,
            metrics,
            models,
        }
    }

    /// The models called below this node, with their counters.
    pub fn models(&self) -> &[(String, ModelMetrics)] {
        &self.models
    }

    /// The input's row count as its statistics know it (exact or estimated), e.g.
    /// from Parquet metadata: how many rows the models here are expected to score.
    pub fn expected_rows(&self) -> Option<usize> {
        let stats = StatisticsContext::new()
            .compute(self.input.as_ref(), &StatisticsArgs::new())
            .ok()?;
        stats.num_rows.get_value().copied()
    }
}

impl DisplayAs for ModelCallsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let names: Vec<_> = self.models.iter().map(|(n, _)| n.as_str()).collect();
        write!(f, "ModelCallsExec: models=[{}]", names.join(", "))
    }
}

impl ExecutionPlan for ModelCallsExec {
    fn name(&self) -> &str {
        "ModelCallsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        self.input.properties()
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        datafusion::common::assert_eq_or_internal_err!(children.len(), 1);
        Ok(Arc::new(Self {
            input: children.swap_remove(0),
            ..Self::clone(&self)
        }))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let Some(projection) = self.input.downcast_ref::<ProjectionExec>() else {
            return self.input.execute(partition, context);
        };
        let exprs: Arc<[Arc<dyn PhysicalExpr>]> = projection
            .expr()
            .iter()
            .map(|e| Arc::clone(&e.expr))
            .collect();
        let schema = projection.schema();
        let in_flight = std::thread::available_parallelism().map_or(2, usize::from) + 1;
        let batches = projection
            .input()
            .execute(partition, context)?
            .map(move |batch| {
                let (exprs, schema) = (Arc::clone(&exprs), Arc::clone(&schema));
                tokio::task::spawn_blocking(move || project(&batch?, &exprs, schema))
            })
            .buffered(in_flight)
            .map(|joined| joined.map_err(|e| DataFusionError::External(Box::new(e)))?);
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            projection.schema(),
            batches,
        )))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        Some(self.metrics.clone_inner())
    }

    fn child_stats_requests(&self, partition: Option<usize>) -> Vec<ChildStats> {
        vec![ChildStats::At(partition)]
    }

    fn statistics_from_inputs(
        &self,
        input_stats: &[Arc<Statistics>],
        _args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        Ok(Arc::clone(&input_stats[0]))
    }

    fn cardinality_effect(&self) -> CardinalityEffect {
        CardinalityEffect::Equal
    }

    // Transparent for DataFusion's pushdowns, which run after this node is added.

    fn supports_limit_pushdown(&self) -> bool {
        true
    }

    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        // A projection over the instrumented projection stays where it is: the two are not
        // merged (that could evaluate a model call twice), and a "swap" would only nest
        // them again below this node, forever.
        if self.input.downcast_ref::<ProjectionExec>().is_some() {
            return Ok(None);
        }
        match self.input.try_swapping_with_projection(projection)? {
            Some(input) => Ok(Some(replace_children_if_necessary(
                Arc::new(self.clone()),
                vec![input],
            )?)),
            None => Ok(None),
        }
    }

    fn gather_filters_for_pushdown(
        &self,
        _phase: FilterPushdownPhase,
        parent_filters: Vec<Arc<dyn PhysicalExpr>>,
        _config: &ConfigOptions,
    ) -> Result<FilterDescription> {
        FilterDescription::from_children(parent_filters, &self.children())
    }

    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::if_all(child_pushdown_result))
    }
}
