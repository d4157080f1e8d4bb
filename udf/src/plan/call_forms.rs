//! The call forms of `spark_udf` in SQL, rewritten (an analyzer [`FunctionRewrite`])
//! into the ones a [`PyModelUdf`] evaluates.

use std::any::Any;
use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, plan_err};
use datafusion::error::Result;
use datafusion::functions::core::named_struct;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{Expr, ScalarUDF, ScalarUDFImpl, lit};

use crate::plan::scalar::PyModelUdf;
use crate::pyfunc::signature::Schema;

/// Rewrites model calls into the forms the UDF evaluates, as Spark binds them:
/// - `m()` becomes `m(x, y, ...)` for a model whose signature names its inputs:
///   `spark_udf`'s zero-argument form, which takes the signature's columns by name;
/// - `m(struct(a, b + 1))` becomes `m(named_struct('a', a, 'col2', b + 1))`: Spark names
///   struct fields after their columns (`colN` otherwise), DataFusion names them `cN`.
#[derive(Debug, Default)]
pub struct ModelCallRewrites;

impl FunctionRewrite for ModelCallRewrites {
    fn name(&self) -> &str {
        "mlfusion_model_call_rewrites"
    }

    fn rewrite(
        &self,
        expr: Expr,
        schema: &DFSchema,
        _config: &ConfigOptions,
    ) -> Result<Transformed<Expr>> {
        let Expr::ScalarFunction(ScalarFunction { func, args }) = &expr else {
            return Ok(Transformed::no(expr));
        };
        let Some(udf) = (func.inner().as_ref() as &dyn Any).downcast_ref::<PyModelUdf>() else {
            return Ok(Transformed::no(expr));
        };
        match args.as_slice() {
            [] => bind_signature_columns(udf, func, schema).map(Transformed::yes),
            [Expr::ScalarFunction(inner)] if inner.func.name() == "struct" => {
                let mut named = Vec::with_capacity(inner.args.len() * 2);
                for (i, arg) in inner.args.iter().enumerate() {
                    let field = match arg {
                        Expr::Column(c) => c.name.clone(),
                        Expr::Alias(a) => a.name.clone(),
                        _ => format!("col{}", i + 1),
                    };
                    named.extend([lit(field), arg.clone()]);
                }
                let call = Expr::ScalarFunction(ScalarFunction::new_udf(named_struct(), named));
                Ok(Transformed::yes(Expr::ScalarFunction(
                    ScalarFunction::new_udf(Arc::clone(func), vec![call]),
                )))
            }
            _ => Ok(Transformed::no(expr)),
        }
    }
}

/// The zero-argument form: the signature's input columns, by name, from `schema`.
fn bind_signature_columns(
    udf: &PyModelUdf,
    func: &Arc<ScalarUDF>,
    schema: &DFSchema,
) -> Result<Expr> {
    let name = udf.name();
    let columns: Vec<&str> = match udf.inputs() {
        None => {
            return plan_err!(
                "model '{name}' was called with zero columns, but it has no input signature to take column names from\nhint: pass the input columns explicitly: {name}(col1, col2, ...)"
            );
        }
        Some(Schema::Columns(cols)) if cols.iter().any(|c| !c.required) => {
            return plan_err!(
                "model '{name}' cannot be called without column names because its signature contains optional columns\nhint: pass the input columns explicitly"
            );
        }
        Some(schema) if !schema.has_names() => {
            return plan_err!(
                "model '{name}' cannot be called without arguments because its signature names no columns\nhint: pass the input columns explicitly"
            );
        }
        Some(schema) => schema.names().into_iter().flatten().collect(),
    };
    let mut bound = Vec::with_capacity(columns.len());
    for column in columns {
        match schema.qualified_field_with_unqualified_name(column) {
            Ok((qualifier, field)) => {
                bound.push(Expr::Column(Column::new(qualifier.cloned(), field.name())))
            }
            Err(_) => {
                return plan_err!(
                    "model '{name}' takes its input column '{column}' from its signature, but the query has no column '{column}'"
                );
            }
        }
    }
    Ok(Expr::ScalarFunction(ScalarFunction::new_udf(
        Arc::clone(func),
        bound,
    )))
}
