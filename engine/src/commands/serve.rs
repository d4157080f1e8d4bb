//! `mlfusion serve`: loads the models once, then serves them over Arrow Flight until
//! Ctrl-C or SIGTERM (protocol: [`mlfusion_flight::protocol`], README "Flight server").

use std::collections::BTreeMap;
use std::path::Path;

use mlfusion_flight::{Access, ServedModels};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::args::{ServeArgs, model_store};
use crate::error::{Error, Result};
use crate::session::{ModelRegistration, model_registrations};

/// The `--config` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeConfig {
    models: BTreeMap<String, ConfigModel>,
}

/// One model of the `--config` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigModel {
    uri: String,
    #[serde(default)]
    result_type: Option<String>,
}

/// Serves until a shutdown signal; returns the closing summary.
pub async fn run(args: ServeArgs) -> Result<String> {
    let registrations = registrations(&args)?;
    let access = Access {
        token: args
            .auth_token_file
            .as_deref()
            .map(read_token)
            .transpose()?,
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some((read(cert)?, read(key)?)),
            _ => None,
        },
    };
    let store = model_store(args.model_cache.as_deref(), args.workers);
    let models = tokio::task::spawn_blocking(move || load(&store, registrations))
        .await
        .map_err(|e| Error::Serve(Box::new(e)))??;
    let names = models.names().join(", ");
    let address = format!("{}:{}", args.host, args.port);
    let listener = TcpListener::bind(&address)
        .await
        .map_err(|source| Error::Listen { address, source })?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Serve(Box::new(e)))?;
    let location = mlfusion_flight::location(local, access.tls.is_some());
    announce(&format!(
        "mlfusion: serving {names} at {location}{}",
        if access.token.is_some() {
            " (token required)"
        } else {
            ""
        }
    ));
    mlfusion_flight::serve(models, listener, access, shutdown_signal())
        .await
        .map_err(|e| Error::Serve(Box::new(e)))?;
    Ok(format!("mlfusion: stopped serving {names} at {location}"))
}

/// Models from `--config`, then `--model` flags; a name given twice is an error.
fn registrations(args: &ServeArgs) -> Result<Vec<ModelRegistration>> {
    let mut out = Vec::new();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        let config: ServeConfig = serde_saphyr::from_str(&text).map_err(|e| Error::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        out.extend(
            config
                .models
                .into_iter()
                .map(|(name, m)| ModelRegistration {
                    name,
                    uri: m.uri,
                    result_type: m.result_type,
                    params: None,
                }),
        );
    }
    for m in model_registrations(&args.models, &args.result_types, &[])? {
        if out.iter().any(|o| o.name == m.name) {
            return Err(Error::BadArgument {
                flag: "--model",
                value: format!("{}={}", m.name, m.uri),
                message: format!("model '{}' is also in --config", m.name),
            });
        }
        out.push(m);
    }
    if out.is_empty() {
        return Err(Error::BadArgument {
            flag: "--model",
            value: String::new(),
            message: "nothing to serve: give --model NAME=URI or --config FILE".into(),
        });
    }
    Ok(out)
}

/// Loads every model and binds its default result type, so a bad model or result type
/// fails at start rather than on a client's first call (blocking: runs Python).
fn load(
    store: &mlfusion_udf::ModelStore,
    registrations: Vec<ModelRegistration>,
) -> Result<ServedModels> {
    let mut models = ServedModels::default();
    for r in registrations {
        models.insert(store.load(&r.name, &r.uri)?, r.result_type)?;
    }
    Ok(models)
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Read {
        path: path.to_owned(),
        source,
    })
}

/// The token in `path`, without surrounding whitespace; an empty file is an error.
fn read_token(path: &Path) -> Result<String> {
    let token = String::from_utf8_lossy(&read(path)?).trim().to_owned();
    if token.is_empty() {
        return Err(Error::Config {
            path: path.to_owned(),
            message: "the token file is empty".into(),
        });
    }
    Ok(token)
}

/// Tells the operator (and scripts waiting for the port) where the server listens.
#[allow(clippy::print_stderr)]
fn announce(line: &str) {
    eprintln!("{line}");
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(s) => { s.recv().await; }
                None => std::future::pending().await,
            }
        } => {}
    }
}
