//! Which models a session or server loads (from `--model`, `--result-type` and
//! `--params`, a config file or a `CREATE FUNCTION` body), and loading them as SQL
//! functions.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;
use datafusion::prelude::SessionContext;
use mlfusion_udf::{EnvManager, ModelLoader, PyModelUdf};
use serde_json::Value;

use crate::args::split_assignment;
use crate::error::{Error, Result};

/// One model to register: SQL name, path or URI, optional result type, params and
/// env manager (the session's when `None`).
#[derive(Debug, Clone, Default)]
pub struct ModelRegistration {
    pub name: String,
    pub uri: String,
    pub result_type: Option<String>,
    pub params: Option<Value>,
    pub env_manager: Option<EnvManager>,
}

/// Loads a model (once) and binds it as the SQL function `m.name`. Runs Python: call it
/// from a blocking context, not from an async task.
pub fn model_udf(loader: &ModelLoader, m: &ModelRegistration) -> mlfusion_udf::Result<ScalarUDF> {
    let model = Arc::new(loader.load_in(&m.name, &m.uri, m.env_manager)?);
    let scorer = Arc::new(model.scorer(m.result_type.as_deref(), m.params.as_ref())?);
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

/// Combines `--model`, `--result-type` and `--params` flags into registrations.
pub fn model_registrations(
    models: &[String],
    result_types: &[String],
    params: &[String],
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
    Ok(out)
}
