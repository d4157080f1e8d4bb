//! Keeps model calls where mlfusion can observe them: in projections (and filters).
//!
//! DataFusion evaluates `count(m(x))` or `GROUP BY m(x)` inside the aggregate, where no
//! per-call metrics or progress can be attached. [`ModelCallsInProjections`] moves such
//! calls into a projection below the aggregate (as DataFusion's common subexpression
//! elimination does), so each call is evaluated once per row in a node that
//! [`crate::call_metrics::ModelMetricsRule`] instruments.

use std::any::Any;
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::{Aggregate, Expr, LogicalPlan, Projection};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::scalar::PyModelUdf;

/// The logical optimizer rule (see the module docs).
#[derive(Debug, Default)]
pub struct ModelCallsInProjections;

/// Whether `expr` is a call of a model function.
fn is_model_call(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(f)
        if (f.func.inner().as_ref() as &dyn Any).is::<PyModelUdf>())
}

impl OptimizerRule for ModelCallsInProjections {
    fn name(&self) -> &str {
        "mlfusion_model_calls_in_projections"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Aggregate(aggregate) = plan else {
            return Ok(Transformed::no(plan));
        };
        let mut calls: Vec<Expr> = Vec::new();
        for expr in aggregate.group_expr.iter().chain(&aggregate.aggr_expr) {
            expr.apply(|e| {
                if is_model_call(e) {
                    if !calls.contains(e) {
                        calls.push(e.clone());
                    }
                    return Ok(TreeNodeRecursion::Jump);
                }
                Ok(TreeNodeRecursion::Continue)
            })?;
        }
        if calls.is_empty() {
            return Ok(Transformed::no(LogicalPlan::Aggregate(aggregate)));
        }
        let names: Vec<String> = (0..calls.len())
            .map(|i| format!("__mlfusion_model_call_{i}"))
            .collect();
        let mut projected: Vec<Expr> = aggregate
            .input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        projected.extend(calls.iter().zip(&names).map(|(c, n)| c.clone().alias(n)));
        let input = Projection::try_new(projected, Arc::clone(&aggregate.input))?;
        let replace = |expr: &Expr| -> Result<Expr> {
            let name = expr.schema_name().to_string();
            expr.clone()
                .transform_down(|e| match calls.iter().position(|c| c == &e) {
                    Some(i) => Ok(Transformed::new(
                        Expr::Column(Column::from_name(&names[i])),
                        true,
                        TreeNodeRecursion::Jump,
                    )),
                    None => Ok(Transformed::no(e)),
                })?
                .data
                .alias_if_changed(name)
        };
        let group = aggregate
            .group_expr
            .iter()
            .map(replace)
            .collect::<Result<_>>()?;
        let aggr = aggregate
            .aggr_expr
            .iter()
            .map(replace)
            .collect::<Result<_>>()?;
        let rewritten = Aggregate::try_new(Arc::new(LogicalPlan::Projection(input)), group, aggr)?;
        Ok(Transformed::yes(LogicalPlan::Aggregate(rewritten)))
    }
}
