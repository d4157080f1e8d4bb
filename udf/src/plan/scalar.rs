//! A bound model as a DataFusion [`ScalarUDFImpl`]: argument arrays in, the input
//! frame built and enforced, the scorer called, predictions out.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, FieldRef};
use datafusion::common::{DataFusionError, plan_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TypeSignature, Volatility,
};

use crate::pyfunc::enforce::{build_input, missing_required_message, schema_labels};
use crate::pyfunc::signature::Schema;
use crate::python::{ModelMetrics, Scorer};

/// Scorers of calls with params of their own (`params(...)`) kept per model function:
/// repeating the same params reuses the binding, so the call is scored once per row.
const MAX_CALL_PARAMS: usize = 64;

/// Scorers bound to the params of `params(...)` arguments, by those params.
type CallParams = Mutex<Vec<(serde_json::Value, Arc<Scorer>)>>;

/// A model bound to a result type and params, callable from SQL as `name(...)`.
///
/// Call forms: positional columns `m(a, b)`; one struct `m(named_struct('a', x, ...))`
/// whose field names become the model's column names; and `m()` for a model whose
/// signature names its inputs (see [`ModelCallRewrites`](crate::plan::call_forms::ModelCallRewrites)).
#[derive(Debug)]
pub struct PyModelUdf {
    name: String,
    scorer: Arc<Scorer>,
    signature: Signature,
    metrics: ModelMetrics,
    call_params: Arc<CallParams>,
}

impl PyModelUdf {
    /// The model UDF `udf` is, if it is one.
    pub fn of(udf: &ScalarUDF) -> Option<&Self> {
        (udf.inner().as_ref() as &dyn std::any::Any).downcast_ref()
    }

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
            call_params: Arc::default(),
        }
    }

    /// The same function, counting its calls into `metrics` (see [`crate::plan::call_metrics`]).
    pub fn with_metrics(&self, metrics: ModelMetrics) -> Self {
        Self {
            name: self.name.clone(),
            scorer: Arc::clone(&self.scorer),
            signature: self.signature.clone(),
            metrics,
            call_params: Arc::clone(&self.call_params),
        }
    }

    /// The function bound to `params` instead of its own (a call's `params(...)`),
    /// validated against the model's params schema now.
    pub(crate) fn with_params(&self, params: &serde_json::Value) -> Result<ScalarUDF> {
        let mut cached = self.call_params.lock().expect("not poisoned");
        let scorer = match cached.iter().find(|(p, _)| p == params) {
            Some((_, scorer)) => Arc::clone(scorer),
            None => {
                let model = self.scorer.model();
                let external = |e| DataFusionError::External(Box::new(e));
                let binding = model
                    .with_params(self.scorer.binding(), Some(params))
                    .map_err(external)?;
                let scorer = Arc::new(model.bind(binding).map_err(external)?);
                if cached.len() < MAX_CALL_PARAMS {
                    cached.push((params.clone(), Arc::clone(&scorer)));
                }
                scorer
            }
        };
        Ok(Self {
            name: self.name.clone(),
            scorer,
            signature: self.signature.clone(),
            metrics: ModelMetrics::default(),
            call_params: Arc::default(),
        }
        .into_udf())
    }

    /// Wraps it as a [`ScalarUDF`] ready for `SessionContext::register_udf`.
    pub fn into_udf(self) -> ScalarUDF {
        ScalarUDF::new_from_impl(self)
    }

    /// The bound model.
    pub fn scorer(&self) -> &Arc<Scorer> {
        &self.scorer
    }

    /// The model's input schema, if its signature has one.
    pub(crate) fn inputs(&self) -> Option<&Schema> {
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
            build_input(
                &self.name,
                &self.scorer.model().mlmodel().signature,
                &arrays,
                args.number_rows,
            )
        }
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
        let predictions = self
            .scorer
            .predict(&frame, &self.metrics)
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(ColumnarValue::Array(predictions))
    }
}
