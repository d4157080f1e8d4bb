//! Which models a session or server loads (from `--model`, `--result-type`,
//! `--params`, `--model-config` and `--extra-env`, a config file or a `CREATE FUNCTION`
//! body), and loading them as SQL functions.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use mlfusion_udf::{LoadOptions, ModelLoader, OnError, PyModelUdf};
use serde_json::{Map, Value};

use crate::args::{LoadFlags, split_assignment};
use crate::error::{Error, Result};

/// One model to register: SQL name, path or URI, optional result type and params, and
/// how it loads (env manager, config overrides, extra env).
#[derive(Debug, Clone, Default)]
pub struct ModelRegistration {
    pub name: String,
    pub uri: String,
    pub result_type: Option<String>,
    pub params: Option<Value>,
    pub on_error: OnError,
    pub options: LoadOptions,
}

/// Loads a model (once) and binds it as the SQL function `m.name`. Runs Python: call it
/// from a blocking context, not from an async task.
pub fn model_udf(loader: &ModelLoader, m: &ModelRegistration) -> mlfusion_udf::Result<ScalarUDF> {
    let model = Arc::new(loader.load_in(&m.name, &m.uri, &m.options)?);
    let binding = model
        .binding(m.result_type.as_deref(), m.params.as_ref())?
        .with_on_error(m.on_error);
    let scorer = Arc::new(model.bind(binding)?);
    Ok(PyModelUdf::new(&m.name, scorer).into_udf())
}

/// Loads each model and registers it as a SQL function (blocking).
pub fn register_models(
    ctx: &SessionContext,
    loader: &ModelLoader,
    models: &[ModelRegistration],
) -> Result<()> {
    for m in models {
        ctx.register_udf(model_udf(loader, m)?);
    }
    Ok(())
}

/// [`register_models`] from async code: the loading runs on a blocking thread.
pub async fn load_models(
    ctx: &SessionContext,
    loader: &ModelLoader,
    models: Vec<ModelRegistration>,
) -> Result<()> {
    let (ctx, loader) = (ctx.clone(), loader.clone());
    tokio::task::spawn_blocking(move || register_models(&ctx, &loader, &models))
        .await
        .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))?
}

/// Combines `--model`, `--result-type`, `--params`, `--on-error`, `--model-config` and
/// `--extra-env` flags into registrations.
pub fn model_registrations(
    models: &[String],
    result_types: &[String],
    params: &[String],
    on_errors: &[String],
    load: &LoadFlags,
) -> Result<Vec<ModelRegistration>> {
    let mut out: Vec<ModelRegistration> = Vec::new();
    let mut index = HashMap::new();
    for m in models {
        let (name, uri) = split_assignment("--model", m)?;
        if index.insert(name.to_owned(), out.len()).is_some() {
            return Err(Error::BadArgument {
                flag: "--model",
                value: m.clone(),
                message: format!("model '{name}' is given twice"),
            });
        }
        out.push(ModelRegistration {
            name: name.to_owned(),
            uri: uri.to_owned(),
            ..Default::default()
        });
    }
    let lookup = |flag: &'static str, name: &str| -> Result<usize> {
        index.get(name).copied().ok_or_else(|| Error::UnknownModel {
            flag,
            model: name.to_owned(),
        })
    };
    for r in result_types {
        let (name, ddl) = split_assignment("--result-type", r)?;
        let i = lookup("--result-type", name)?;
        out[i].result_type = Some(ddl.to_owned());
    }
    for p in params {
        let (name, json) = split_assignment("--params", p)?;
        let i = lookup("--params", name)?;
        let value: Value = serde_json::from_str(json).map_err(|e| Error::BadArgument {
            flag: "--params",
            value: mlfusion_udf::limits::abbreviate(p, 200),
            message: mlfusion_udf::limits::json_error(&e),
        })?;
        out[i].params = Some(value);
    }
    for o in on_errors {
        let (name, mode) = split_assignment("--on-error", o)?;
        let i = lookup("--on-error", name)?;
        out[i].on_error = mode.parse().map_err(|message| Error::BadArgument {
            flag: "--on-error",
            value: o.clone(),
            message,
        })?;
    }
    apply_load_flags(&mut out, load)?;
    Ok(out)
}

/// Applies `--model-config` and `--extra-env` to the registrations they name.
pub fn apply_load_flags(out: &mut [ModelRegistration], load: &LoadFlags) -> Result<()> {
    let position = |out: &[ModelRegistration], flag: &'static str, name: &str| {
        out.iter()
            .position(|m| m.name == name)
            .ok_or_else(|| Error::UnknownModel {
                flag,
                model: name.to_owned(),
            })
    };
    for c in &load.model_configs {
        let (name, value) = split_assignment("--model-config", c)?;
        let i = position(out, "--model-config", name)?;
        out[i].options.model_config =
            Some(model_config(value).map_err(|message| Error::BadArgument {
                flag: "--model-config",
                value: mlfusion_udf::limits::abbreviate(c, 200),
                message,
            })?);
    }
    for e in &load.extra_envs {
        let (name, assignment) = split_assignment("--extra-env", e)?;
        let i = position(out, "--extra-env", name)?;
        let (var, value) = assignment
            .split_once('=')
            .filter(|(var, _)| !var.is_empty())
            .ok_or_else(|| Error::BadArgument {
                flag: "--extra-env",
                value: e.clone(),
                message: "expected NAME=VAR=VALUE".into(),
            })?;
        out[i]
            .options
            .extra_env
            .insert(var.to_owned(), value.to_owned());
    }
    Ok(())
}

/// A `--model-config` value, as `spark_udf`'s `model_config` takes it: a JSON object, or
/// the path of a YAML (or JSON) file holding one.
pub fn model_config(value: &str) -> std::result::Result<Map<String, Value>, String> {
    let parsed: Value = if value.trim_start().starts_with(['{', '[']) {
        serde_json::from_str(value).map_err(|e| mlfusion_udf::limits::json_error(&e))?
    } else {
        let path = Path::new(value);
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the config file {}: {e}", path.display()))?;
        serde_saphyr::from_str(&text)
            .map_err(|e| format!("the config file {} is not valid YAML: {e}", path.display()))?
    };
    match parsed {
        Value::Object(map) => Ok(map),
        other => Err(format!(
            "a model config must be an object of keys to values, got {}",
            mlfusion_udf::limits::abbreviate(&other.to_string(), 200)
        )),
    }
}

/// An `extra_env` object (of a config file or a `CREATE FUNCTION` body): names to strings.
pub fn extra_env(value: &Value) -> std::result::Result<BTreeMap<String, String>, String> {
    let Value::Object(map) = value else {
        return Err(format!(
            "\"extra_env\" must be an object of names to strings, got {value}"
        ));
    };
    map.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), s.clone())),
            other => Err(format!("\"extra_env\": {k} must be a string, got {other}")),
        })
        .collect()
}
