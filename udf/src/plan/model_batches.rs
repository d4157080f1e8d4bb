//! Model calls get full batches: each call pays a fixed cost (a pandas frame, `predict`
//! dispatch, a round trip to a worker), so a filter's or a small file's short batches are
//! coalesced to the session batch size first.
//!
//! [`ModelBatchesRule`] (a physical optimizer rule, registered before DataFusion's own)
//! puts a [`ModelBatchesExec`] below every projection that calls a model. It only
//! concatenates rows, in order, so every prediction still lands on its own row; batches
//! that already have the target size pass without a copy. DataFusion's pushdowns do not
//! cross it, so the projection is not absorbed into a scan.

use std::fmt;
use std::sync::Arc;

use arrow::compute::BatchCoalescer;
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
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::statistics::{ChildStats, StatisticsArgs};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, Statistics,
};
use futures::StreamExt;

use crate::plan::scalar::PyModelUdf;

/// The physical optimizer rule (see the module docs).
#[derive(Debug, Default)]
pub struct ModelBatchesRule;

impl PhysicalOptimizerRule for ModelBatchesRule {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        config: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let target = usize::from(config.execution.batch_size);
        plan.transform_up(|node| {
            let Some(projection) = node.downcast_ref::<ProjectionExec>() else {
                return Ok(Transformed::no(node));
            };
            let calls_model = projection
                .expr()
                .iter()
                .any(|e| contains_model_call(&e.expr));
            let input = projection.input();
            if !calls_model || input.downcast_ref::<ModelBatchesExec>().is_some() {
                return Ok(Transformed::no(node));
            }
            let coalesced = Arc::new(ModelBatchesExec::new(Arc::clone(input), target));
            replace_children_if_necessary(node, vec![coalesced]).map(Transformed::yes)
        })
        .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "mlfusion_model_batches"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

fn contains_model_call(expr: &Arc<dyn PhysicalExpr>) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found = ScalarFunctionExpr::try_downcast_func::<PyModelUdf>(e.as_ref()).is_some();
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// Concatenates its input's batches, in order, into batches of `target` rows (the last
/// one of each partition may be shorter).
#[derive(Debug)]
pub struct ModelBatchesExec {
    input: Arc<dyn ExecutionPlan>,
    target: usize,
}

impl ModelBatchesExec {
    /// Coalesces `input` to `target`-row batches.
    pub fn new(input: Arc<dyn ExecutionPlan>, target: usize) -> Self {
        Self {
            input,
            target: target.max(1),
        }
    }
}

impl DisplayAs for ModelBatchesExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "ModelBatchesExec: target_rows={}", self.target)
    }
}

impl ExecutionPlan for ModelBatchesExec {
    fn name(&self) -> &str {
        "ModelBatchesExec"
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
        Ok(Arc::new(Self::new(children.swap_remove(0), self.target)))
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
        let input = self.input.execute(partition, context)?;
        let schema = input.schema();
        // Batches of the target size or more bypass the buffer when it is empty.
        let coalescer = BatchCoalescer::new(Arc::clone(&schema), self.target)
            .with_biggest_coalesce_batch_size(Some(self.target - 1));
        let batches = futures::stream::unfold(
            (input, coalescer, false),
            |(mut input, mut coalescer, mut ended)| async move {
                loop {
                    if let Some(batch) = coalescer.next_completed_batch() {
                        return Some((Ok(batch), (input, coalescer, ended)));
                    }
                    if ended {
                        return None;
                    }
                    let pushed = match input.next().await {
                        Some(Ok(batch)) => coalescer.push_batch(batch),
                        Some(Err(e)) => return Some((Err(e), (input, coalescer, true))),
                        None => {
                            ended = true;
                            coalescer.finish_buffered_batch()
                        }
                    };
                    if let Err(e) = pushed {
                        return Some((Err(e.into()), (input, coalescer, true)));
                    }
                }
            },
        );
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, batches)))
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
}
