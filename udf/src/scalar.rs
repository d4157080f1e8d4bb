//! The DataFusion side: a bound model as a [`ScalarUDFImpl`], and the analyzer rewrites
//! of its Spark call forms ([`ModelCallRewrites`]).

use std::any::Any;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, DFSchema, DataFusionError, plan_err};
use datafusion::error::Result;
use datafusion::functions::core::named_struct;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::FunctionRewrite;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility, lit,
};

use crate::call_metrics::ModelMetrics;
use crate::enforce::{build_input, missing_required_message, schema_labels};
use crate::model::Scorer;
use crate::signature::Schema;

/// A model bound to a result type and params, callable from SQL as `name(...)`.
///
/// Call forms: positional columns `m(a, b)`; one struct `m(named_struct('a', x, ...))`
/// whose field names become the model's column names; and `m()` for a model whose
/// signature names its inputs (see [`ModelCallRewrites`]).
#[derive(Debug)]
pub struct PyModelUdf {
    name: String,
    scorer: Arc<Scorer>,
    signature: Signature,
    metrics: ModelMetrics,
}

impl PyModelUdf {
    /// A UDF called `name` that scores with `scorer`.
    pub fn new(name: impl Into<String>, scorer: Arc<Scorer>) -> Self {
        Self {
            name: name.into(),
            scorer,
            // Volatile, though models are deterministic: DataFusion then never copies a
            // call into a second place (nor runs it while planning), and
            // `ModelCallsOnce` evaluates each call once per row.
            signature: Signature::one_of(
                vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
                Volatility::Volatile,
            ),
            metrics: ModelMetrics::default(),
        }
    }

    /// The same function, counting its calls into `metrics` (see [`crate::call_metrics`]).
    pub fn with_metrics(&self, metrics: ModelMetrics) -> Self {
        Self {
            name: self.name.clone(),
            scorer: Arc::clone(&self.scorer),
            signature: self.signature.clone(),
            metrics,
        }
    }

    /// Wraps it as a [`ScalarUDF`] ready for `SessionContext::register_udf`.
    pub fn into_udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }

    /// The bound model.
    pub fn scorer(&self) -> &Arc<Scorer> {
        &self.scorer
    }

    fn inputs(&self) -> Option<&Schema> {
        self.scorer.model().mlmodel().signature.inputs.as_ref()
    }
}

impl PartialEq for PyModelUdf {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.scorer, &other.scorer)
    }
}

impl Eq for PyModelUdf {}

impl Hash for PyModelUdf {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        Arc::as_ptr(&self.scorer).hash(state);
    }
}

impl ScalarUDFImpl for PyModelUdf {
    fn name(&self) -> &str {
        &self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.scorer.return_type().clone())
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        let struct_form =
            matches!(args.arg_fields, [f] if matches!(f.data_type(), DataType::Struct(_)));
        if !struct_form
            && !args.arg_fields.is_empty()
            && let Some(schema) = self.inputs()
            && args.arg_fields.len() < schema.required_count()
        {
            let labels = schema_labels(schema);
            return plan_err!(
                "model '{}': {}",
                self.name,
                missing_required_message(&labels, args.arg_fields.len())
            );
        }
        Ok(Arc::new(Field::new(
            &self.name,
            self.scorer.return_type().clone(),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if args.args.is_empty() {
            return plan_err!(
                "model '{}' was called without arguments and no columns were bound to it",
                self.name
            );
        }
        let arrays = args
            .args
            .iter()
            .map(|a| a.to_array(args.number_rows))
            .collect::<Result<Vec<_>>>()?;
        let frame = {
            let _timer = self.metrics.convert_time.timer();
            build_input(&self.name, self.inputs(), &arrays, args.number_rows)
        }
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let predictions = self
            .scorer
            .predict(&frame, &self.metrics)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(predictions))
    }
}

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
