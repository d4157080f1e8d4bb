//! Each model call evaluated once per row, in a projection where mlfusion observes it.
//!
//! Model UDFs are volatile, so DataFusion neither folds nor duplicates them (it would
//! otherwise push a filter's call below a projection computing the same call). This rule
//! then places every call: a call in a filter, sort or aggregate, or used more than once
//! (or inside an expression) by a projection, is computed by a projection inserted below
//! that node as a column `__mlfusion_call_N`, and the node reads the column. A node above
//! that needs the same call reads the same column when only filters, sorts, limits and
//! column lists lie in between, so `SELECT m(x) AS p FROM t WHERE m(x) > 0.5` or
//! `SELECT m(x)['a'], m(x)['b']` score every row once. Calls then run only in
//! projections, which [`crate::plan::call_metrics::ModelMetricsRule`] instruments.
//!
//! A filter above such a projection runs below it when it reads only columns the
//! projection passes through, so the model scores only the rows that pass: DataFusion's
//! `push_down_leaf_projections` moves a projection computing a call's struct field
//! (`sum(m(x)['a']) ... WHERE id < 10`) below the filter.

use std::any::Any;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, Projection};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

use crate::plan::scalar::PyModelUdf;

/// The logical optimizer rule (see the module docs); register it after DataFusion's rules.
#[derive(Debug, Default)]
pub struct ModelCallsOnce;

/// Makes the names of inserted columns unique across plans and optimizer passes.
static NEXT_CALL: AtomicUsize = AtomicUsize::new(0);

const PREFIX: &str = "__mlfusion_call_";

impl OptimizerRule for ModelCallsOnce {
    fn name(&self) -> &str {
        "mlfusion_model_calls_once"
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // Calls already computed as a column, by the column's name.
        let mut computed: Vec<(Expr, String)> = Vec::new();
        plan.transform_down_with_subqueries(filter_before_calls)?
            .transform_data(|plan| {
                plan.transform_up_with_subqueries(|node| place_calls(node, &mut computed))
            })
    }
}

/// Whether `expr` is a call of a model function.
fn is_model_call(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(f)
        if (f.func.inner().as_ref() as &dyn Any).is::<PyModelUdf>())
}

/// The outermost model calls in `exprs`, each once, with how often they occur.
fn model_calls(exprs: &[Expr]) -> Result<Vec<(Expr, usize)>> {
    let mut calls: Vec<(Expr, usize)> = Vec::new();
    for expr in exprs {
        expr.apply(|e| {
            if !is_model_call(e) {
                return Ok(TreeNodeRecursion::Continue);
            }
            match calls.iter_mut().find(|(c, _)| c == e) {
                Some((_, count)) => *count += 1,
                None => calls.push((e.clone(), 1)),
            }
            Ok(TreeNodeRecursion::Jump)
        })?;
    }
    Ok(calls)
}

/// A filter above a projection with model calls, with the conjuncts that read only columns
/// the projection passes through moved below it.
fn filter_before_calls(node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Filter(filter) = &node else {
        return Ok(Transformed::no(node));
    };
    let LogicalPlan::Projection(projection) = filter.input.as_ref() else {
        return Ok(Transformed::no(node));
    };
    if model_calls(&projection.expr)?.is_empty() {
        return Ok(Transformed::no(node));
    }
    // The projection's output columns that are input columns, renamed or not.
    let passed: Vec<(Column, Expr)> = projection
        .schema
        .columns()
        .into_iter()
        .zip(&projection.expr)
        .filter_map(|(output, expr)| match expr.clone().unalias() {
            input @ Expr::Column(_) => Some((output, input)),
            _ => None,
        })
        .collect();
    let (below, above): (Vec<Expr>, Vec<Expr>) = split_conjunction_owned(filter.predicate.clone())
        .into_iter()
        .partition(|conjunct| {
            !conjunct.is_volatile()
                && conjunct
                    .column_refs()
                    .iter()
                    .all(|c| passed.iter().any(|(output, _)| output == *c))
        });
    let Some(below) = conjunction(below) else {
        return Ok(Transformed::no(node));
    };
    let below = below
        .transform(|e| match &e {
            Expr::Column(c) => match passed.iter().find(|(output, _)| output == c) {
                Some((_, input)) => Ok(Transformed::yes(input.clone())),
                None => Ok(Transformed::no(e)),
            },
            _ => Ok(Transformed::no(e)),
        })?
        .data;
    let filtered = Filter::try_new(below, Arc::clone(&projection.input))?;
    let projection = LogicalPlan::Projection(Projection::try_new_with_schema(
        projection.expr.clone(),
        Arc::new(LogicalPlan::Filter(filtered)),
        Arc::clone(&projection.schema),
    )?);
    Ok(Transformed::yes(match conjunction(above) {
        Some(above) => LogicalPlan::Filter(Filter::try_new(above, Arc::new(projection))?),
        None => projection,
    }))
}

fn place_calls(
    node: LogicalPlan,
    computed: &mut Vec<(Expr, String)>,
) -> Result<Transformed<LogicalPlan>> {
    if !matches!(
        node,
        LogicalPlan::Projection(_)
            | LogicalPlan::Filter(_)
            | LogicalPlan::Sort(_)
            | LogicalPlan::Aggregate(_)
    ) {
        return Ok(Transformed::no(node));
    }
    let exprs = node.expressions();
    let calls = model_calls(&exprs)?;
    if calls.is_empty() {
        return Ok(Transformed::no(node));
    }
    let mut input = node.inputs()[0].clone();
    let mut columns: Vec<(Expr, String)> = Vec::new();
    let mut fresh: Vec<(Expr, usize)> = Vec::new();
    for (call, count) in calls {
        let exposed = match computed.iter().find(|(c, _)| c == &call) {
            Some((_, name)) => expose(&input, name)?.map(|plan| (plan, name.clone())),
            None => None,
        };
        match exposed {
            Some((plan, name)) => {
                input = plan;
                columns.push((call, name));
            }
            None => fresh.push((call, count)),
        }
    }
    // A projection using a call once already evaluates it once per row.
    let in_place = matches!(node, LogicalPlan::Projection(_));
    if columns.is_empty() && in_place && fresh.iter().all(|(_, count)| *count == 1) {
        return Ok(Transformed::no(node));
    }
    if !fresh.is_empty() {
        let mut projected: Vec<Expr> = input
            .schema()
            .columns()
            .into_iter()
            .map(Expr::Column)
            .collect();
        for (call, _) in fresh {
            let name = format!("{PREFIX}{}", NEXT_CALL.fetch_add(1, Ordering::Relaxed));
            projected.push(call.clone().alias(&name));
            computed.push((call.clone(), name.clone()));
            columns.push((call, name));
        }
        input = LogicalPlan::Projection(Projection::try_new(projected, Arc::new(input))?);
    }
    let keeps_names = matches!(node, LogicalPlan::Projection(_) | LogicalPlan::Aggregate(_));
    let exprs = exprs
        .into_iter()
        .map(|expr| {
            let name = expr.schema_name().to_string();
            let replaced = expr
                .transform_down(|e| match columns.iter().find(|(c, _)| c == &e) {
                    Some((_, name)) => Ok(Transformed::new(
                        Expr::Column(Column::from_name(name)),
                        true,
                        TreeNodeRecursion::Jump,
                    )),
                    None => Ok(Transformed::no(e)),
                })?
                .data;
            if keeps_names {
                replaced.alias_if_changed(name)
            } else {
                Ok(replaced)
            }
        })
        .collect::<Result<Vec<_>>>()?;
    let original = Arc::clone(node.schema());
    let rewritten = node.with_new_exprs(exprs, vec![input])?;
    if keeps_names {
        return Ok(Transformed::yes(rewritten));
    }
    // Filters and sorts pass their input's columns on: keep the inserted ones to ourselves
    // (a node above that reads them widens this list again, see `expose`).
    let restored = original.columns().into_iter().map(Expr::Column).collect();
    Ok(Transformed::yes(LogicalPlan::Projection(
        Projection::try_new(restored, Arc::new(rewritten))?,
    )))
}

/// `plan`, rewritten so its output carries the column `name` computed below it, when only
/// filters, sorts, limits and column lists lie in between; `None` otherwise.
fn expose(plan: &LogicalPlan, name: &str) -> Result<Option<LogicalPlan>> {
    if plan.schema().has_column_with_unqualified_name(name) {
        return Ok(Some(plan.clone()));
    }
    let column_list = matches!(plan, LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))));
    let passes_columns = matches!(
        plan,
        LogicalPlan::Filter(_) | LogicalPlan::Sort(_) | LogicalPlan::Limit(_)
    );
    if !(column_list || passes_columns) {
        return Ok(None);
    }
    let Some(child) = expose(plan.inputs()[0], name)? else {
        return Ok(None);
    };
    let mut exprs = plan.expressions();
    if column_list {
        exprs.push(Expr::Column(Column::from_name(name)));
    }
    plan.with_new_exprs(exprs, vec![child]).map(Some)
}
