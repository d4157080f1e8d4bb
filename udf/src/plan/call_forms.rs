//! The call forms of `spark_udf` in SQL, rewritten (an analyzer [`FunctionRewrite`])
//! into the ones a [`PyModelUdf`] evaluates.

use std::any::Any;
use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, ScalarValue, plan_err};
use datafusion::error::Result;
use datafusion::functions::core::named_struct;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

use crate::plan::scalar::PyModelUdf;
use crate::pyfunc::signature::Schema;

/// `params('{"threshold": 0.7}')`: as the last argument of a model call, the params of
/// that call instead of the function's (validated against the model's params schema when
/// the query is planned; different params are different bindings of the model). It is
/// rewritten away ([`ModelCallRewrites`]); anywhere else it fails.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ParamsArgument {
    signature: Signature,
}

impl Default for ParamsArgument {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ParamsArgument {
    fn name(&self) -> &str {
        "params"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, _args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        plan_err!(
            "params(...) is only the last argument of a model call\nhint: m(x, y, params('{{\"threshold\": 0.7}}'))"
        )
    }
}

/// Rewrites model calls into the forms the UDF evaluates, as Spark binds them:
/// - `m()` becomes `m(x, y, ...)` for a model whose signature names its inputs:
///   `spark_udf`'s zero-argument form, which takes the signature's columns by name;
/// - `m(struct(a, b + 1))` becomes `m(named_struct('a', a, 'col2', b + 1))`: Spark names
///   struct fields after their columns (`colN` otherwise), DataFusion names them `cN`;
/// - `m(a, b, params('{...}'))` becomes `m'(a, b)`, `m'` the model bound to those params.
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
        let Some(udf) = PyModelUdf::of(func) else {
            return Ok(Transformed::no(expr));
        };
        let (func, args, rebound) = match args.split_last() {
            Some((Expr::ScalarFunction(last), rest))
                if (last.func.inner().as_ref() as &dyn Any).is::<ParamsArgument>() =>
            {
                let params = call_params(udf.name(), &last.args)?;
                (Arc::new(udf.with_params(&params)?), rest.to_vec(), true)
            }
            _ => (Arc::clone(func), args.clone(), false),
        };
        let rewritten = match args.as_slice() {
            [] => bind_signature_columns(udf, &func, schema)?,
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
                Expr::ScalarFunction(ScalarFunction::new_udf(func, vec![call]))
            }
            _ if rebound => Expr::ScalarFunction(ScalarFunction::new_udf(func, args)),
            _ => return Ok(Transformed::no(expr)),
        };
        Ok(Transformed::yes(rewritten))
    }
}

/// The params of a `params('{...}')` argument of model `name`'s call.
fn call_params(name: &str, args: &[Expr]) -> Result<serde_json::Value> {
    let [Expr::Literal(ScalarValue::Utf8(Some(json)), _)] = args else {
        return plan_err!(
            "model '{name}': params(...) takes a JSON object as a string literal, e.g. params('{{\"threshold\": 0.7}}')"
        );
    };
    serde_json::from_str(json).map_err(|e| {
        datafusion::error::DataFusionError::Plan(format!(
            "model '{name}': params(...) is not valid JSON: {}",
            crate::limits::json_error(&e)
        ))
    })
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
