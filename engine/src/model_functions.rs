//! Models in SQL: `CREATE [OR REPLACE] FUNCTION ... LANGUAGE mlflow` (a DataFusion
//! [`FunctionFactory`]), `DROP FUNCTION` (DataFusion's own), and the `models()` listing.
//!
//! ```sql
//! CREATE FUNCTION churn() LANGUAGE mlflow AS 'models/churn';
//! CREATE OR REPLACE FUNCTION churn() RETURNS DOUBLE LANGUAGE mlflow AS 'models:/churn@champion';
//! CREATE FUNCTION churn_flag() LANGUAGE mlflow
//!   AS '{"uri": "runs:/<run>/model", "result_type": "double", "params": {"threshold": 0.5}}';
//! CREATE FUNCTION legacy() LANGUAGE mlflow AS '{"uri": "models/old", "env_manager": "uv"}';
//! CREATE FUNCTION shout() LANGUAGE mlflow
//!   AS '{"uri": "models/echo", "model_config": {"suffix": "!"}, "extra_env": {"LEVEL": "2"}}';
//! SELECT * FROM models();
//! DROP FUNCTION churn_flag;
//! ```

use std::str::FromStr;
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use async_trait::async_trait;
use datafusion::catalog::{Session, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::common::{ScalarValue, plan_err};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::context::{FunctionFactory, RegisterFunction, SessionState};
use datafusion::logical_expr::{CreateFunction, Expr};
use mlfusion_udf::python::interpreter::linked_version;
use mlfusion_udf::{EnvManager, ModelLoader, OnError, PyModelUdf, SparkType};
use serde_json::Value;

use crate::registration::{ModelRegistration, extra_env, model_udf};

/// The `LANGUAGE` of model functions.
pub const LANGUAGE: &str = "mlflow";

/// Creates model functions from `CREATE FUNCTION name() [RETURNS type] LANGUAGE mlflow AS
/// 'uri-or-json'`. The body is the model's path or URI, or a JSON object with `uri` and
/// optional `result_type` (Spark DDL), `params`, `on_error`, `env_manager`,
/// `model_config` and `extra_env`.
#[derive(Debug)]
pub struct ModelFunctionFactory {
    loader: ModelLoader,
}

impl ModelFunctionFactory {
    /// A factory loading models through `loader`.
    pub fn new(loader: ModelLoader) -> Self {
        Self { loader }
    }
}

/// The model a `CREATE FUNCTION name ... AS 'body'` registers: the body is a path or URI,
/// or a JSON object with `uri` and optional `result_type`, `params`, `on_error`,
/// `env_manager`, `model_config` and `extra_env`.
fn parse_body(name: &str, body: &str) -> Result<ModelRegistration> {
    let body = body.trim();
    let mut registration = ModelRegistration {
        name: name.to_owned(),
        uri: body.to_owned(),
        ..Default::default()
    };
    if !body.starts_with('{') {
        return Ok(registration);
    }
    let bad = |m: String| DataFusionError::Plan(format!("function '{name}': {m}"));
    let json: Value = serde_json::from_str(body).map_err(|e| {
        bad(format!(
            "the body is not valid JSON: {}",
            mlfusion_udf::limits::json_error(&e)
        ))
    })?;
    registration.uri = json
        .get("uri")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the JSON body needs a \"uri\" (a model path or URI)".into()))?
        .to_owned();
    registration.result_type = match json.get("result_type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(bad(format!(
                "\"result_type\" must be a DDL string, got {other}"
            )));
        }
    };
    registration.params = json.get("params").cloned();
    registration.on_error = match json.get("on_error") {
        None | Some(Value::Null) => OnError::Raise,
        Some(Value::String(s)) => s.parse().map_err(bad)?,
        Some(other) => {
            return Err(bad(format!(
                "\"on_error\" must be \"raise\", \"null\" or \"struct\", got {}",
                mlfusion_udf::limits::abbreviate(&other.to_string(), 200)
            )));
        }
    };
    registration.options.env_manager = match json.get("env_manager") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(EnvManager::from_str(s).map_err(bad)?),
        Some(other) => {
            return Err(bad(format!(
                "\"env_manager\" must be \"local\" or \"uv\", got {other}"
            )));
        }
    };
    registration.options.model_config = match json.get("model_config") {
        None | Some(Value::Null) => None,
        Some(Value::Object(map)) => Some(map.clone()),
        Some(other) => {
            return Err(bad(format!(
                "\"model_config\" must be an object, got {}",
                mlfusion_udf::limits::abbreviate(&other.to_string(), 200)
            )));
        }
    };
    if let Some(env) = json.get("extra_env").filter(|e| !e.is_null()) {
        registration.options.extra_env = extra_env(env).map_err(bad)?;
    }
    Ok(registration)
}

#[async_trait]
impl FunctionFactory for ModelFunctionFactory {
    async fn create(
        &self,
        state: &SessionState,
        statement: CreateFunction,
    ) -> Result<RegisterFunction> {
        let name = statement.name.clone();
        let language = statement
            .params
            .language
            .as_ref()
            .map(|l| l.value.to_ascii_lowercase());
        if language.as_deref() != Some(LANGUAGE) {
            return plan_err!(
                "function '{name}': only LANGUAGE {LANGUAGE} functions can be created (got {language:?})"
            );
        }
        if statement.args.as_ref().is_some_and(|a| !a.is_empty()) {
            return plan_err!(
                "function '{name}': a model function declares no arguments; they come from each call (positional, a struct, or none)"
            );
        }
        if !statement.or_replace && state.scalar_functions().contains_key(&name) {
            return plan_err!(
                "function '{name}' already exists\nhint: use CREATE OR REPLACE FUNCTION"
            );
        }
        let body = match &statement.params.function_body {
            Some(Expr::Literal(
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)),
                _,
            )) => s.clone(),
            _ => {
                return plan_err!("function '{name}': the body must be a string: AS 'path/or/uri'");
            }
        };
        let mut registration = parse_body(&name, &body)?;
        if let Some(returns) = &statement.return_type {
            if registration.result_type.is_some() {
                return plan_err!(
                    "function '{name}': give the result type once, in RETURNS or in the body"
                );
            }
            registration.result_type = Some(
                spark_type_of(returns)
                    .map_err(|m| DataFusionError::Plan(format!("function '{name}': {m}")))?
                    .to_string(),
            );
        }
        // Loading runs Python: keep it off the async workers.
        let loader = self.loader.clone();
        let udf = tokio::task::spawn_blocking(move || model_udf(&loader, &registration))
            .await
            .map_err(|e| DataFusionError::External(Box::new(e)))?
            .map_err(|e| DataFusionError::External(Box::new(e)))?;
        Ok(RegisterFunction::Scalar(Arc::new(udf)))
    }
}

/// The Spark type a SQL `RETURNS` type stands for.
fn spark_type_of(t: &DataType) -> Result<SparkType, String> {
    Ok(match t {
        DataType::Boolean => SparkType::Boolean,
        DataType::Int32 => SparkType::Int,
        DataType::Int64 => SparkType::Long,
        DataType::Float32 => SparkType::Float,
        DataType::Float64 => SparkType::Double,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 => SparkType::String,
        DataType::List(f) | DataType::LargeList(f) => {
            SparkType::Array(Box::new(spark_type_of(f.data_type())?))
        }
        DataType::Struct(fields) => SparkType::Struct(
            fields
                .iter()
                .map(|f| Ok((f.name().clone(), spark_type_of(f.data_type())?)))
                .collect::<Result<_, String>>()?,
        ),
        other => {
            return Err(format!(
                "RETURNS {other} is not a spark_udf result type (int, bigint, float, double, boolean, string, arrays and structs of those)"
            ));
        }
    })
}

/// `models()`: one row per model function of the session.
#[derive(Debug, Default)]
pub struct ModelsTable;

impl TableFunctionImpl for ModelsTable {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return plan_err!("models() takes no arguments");
        }
        let mut rows: Vec<[String; 12]> = Vec::new();
        let session: &dyn Session = args.session();
        for udf in session.scalar_functions().values() {
            let Some(model) = PyModelUdf::of(udf) else {
                continue;
            };
            let scorer = model.scorer();
            let mlmodel = scorer.model().mlmodel();
            let text = |s: Option<String>| s.unwrap_or_default();
            let model = scorer.model();
            rows.push([
                udf.name().to_owned(),
                model.uri().to_owned(),
                text(model.resolved().map(|r| r.resolved.clone())),
                mlmodel.dir.display().to_string(),
                mlmodel
                    .flavors
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                mlmodel.pyfunc.loader_module.clone(),
                text(mlmodel.signature.inputs.as_ref().map(ToString::to_string)),
                text(mlmodel.signature.outputs.as_ref().map(ToString::to_string)),
                scorer.result_type().to_string(),
                text(scorer.params().map(ToString::to_string)),
                model.env().map_or("local".into(), |e| e.key().to_owned()),
                model
                    .env()
                    .map_or_else(linked_version, |e| e.python_version().to_owned()),
            ]);
        }
        rows.sort();
        let names = [
            "name",
            "uri",
            "resolved_uri",
            "local_path",
            "flavors",
            "loader_module",
            "inputs",
            "outputs",
            "result_type",
            "params",
            "env",
            "python",
        ];
        let schema = Arc::new(Schema::new(
            names
                .iter()
                .map(|n| Field::new(*n, DataType::Utf8, false))
                .collect::<Vec<_>>(),
        ));
        let columns: Vec<ArrayRef> = (0..names.len())
            .map(|i| {
                Arc::new(StringArray::from_iter_values(
                    rows.iter().map(|r| r[i].as_str()),
                )) as ArrayRef
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_paths_or_json() {
        let plain = parse_body("m", " models/churn ").expect("path");
        assert_eq!(plain.uri, "models/churn");
        assert_eq!((plain.result_type, plain.params), (None, None));
        let json = parse_body(
            "m",
            r#"{"uri": "p", "result_type": "array<double>", "params": {"k": 1}}"#,
        )
        .expect("json");
        assert_eq!(json.uri, "p");
        assert_eq!(json.result_type.as_deref(), Some("array<double>"));
        assert_eq!(json.params, Some(serde_json::json!({"k": 1})));
        let tolerant = parse_body("m", r#"{"uri": "p", "on_error": "struct"}"#).expect("parses");
        assert_eq!(tolerant.on_error, OnError::Struct);
        assert!(parse_body("m", r#"{"uri": "p", "on_error": "skip"}"#).is_err());
        assert!(parse_body("m", r#"{"result_type": "double"}"#).is_err());
        assert!(parse_body("m", r#"{"uri": "p", "result_type": 3}"#).is_err());
    }

    #[test]
    fn returns_types_map_to_spark_types() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Float64, true)));
        assert_eq!(
            spark_type_of(&list).map(|t| t.to_string()),
            Ok("array<double>".into())
        );
        assert!(spark_type_of(&DataType::Date32).is_err());
    }
}
