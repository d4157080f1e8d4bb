//! `mlfusion serve`: loads the models once, then serves them over Arrow Flight until
//! Ctrl-C or SIGTERM (protocol: [`mlfusion_flight::protocol`], README "Flight server").

mod refresh;

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use mlfusion_flight::metrics::{EndpointLimits, serve_metrics};
use mlfusion_flight::{Access, FlightServer, Limits, ServedModels};
use mlfusion_udf::{EnvManager, LoadOptions, ModelLoader, OnError, PyModel};
use serde::Deserialize;
use tokio::net::TcpListener;

use crate::args::{LimitArgs, LoadFlags, ServeArgs, model_loader, worker_count};
use crate::error::{Error, Result};
use crate::registration::{ModelRegistration, apply_load_flags, extra_env, model_registrations};
use crate::units::{parse_duration, parse_size};

/// The `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeConfig {
    models: BTreeMap<String, ConfigModel>,
    /// The limits of the command line's flags, by the flags' names; a flag wins.
    #[serde(default)]
    limits: ConfigLimits,
}

/// `limits:` of the `--config` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct ConfigLimits {
    stream_idle_timeout: Option<String>,
    shutdown_grace: Option<String>,
    max_bindings: Option<usize>,
    max_type_depth: Option<usize>,
    predict_timeout: Option<String>,
    worker_max_calls: Option<u64>,
    worker_max_rss: Option<String>,
}

impl ConfigLimits {
    /// `args` with every limit it leaves unset taken from the config file at `path`.
    fn fill(self, path: &Path, args: &mut ServeArgs) -> Result<()> {
        let bad = |message: String| Error::Config {
            path: path.to_owned(),
            message: format!("limits: {message}"),
        };
        let duration =
            |d: Option<String>| d.as_deref().map(parse_duration).transpose().map_err(bad);
        args.stream_idle_timeout = args
            .stream_idle_timeout
            .or(duration(self.stream_idle_timeout)?);
        args.shutdown_grace = args.shutdown_grace.or(duration(self.shutdown_grace)?);
        args.max_bindings = args.max_bindings.or(self.max_bindings);
        let limits: &mut LimitArgs = &mut args.limits;
        limits.max_type_depth = limits.max_type_depth.or(self.max_type_depth);
        limits.predict_timeout = limits.predict_timeout.or(duration(self.predict_timeout)?);
        limits.worker_max_calls = limits.worker_max_calls.or(self.worker_max_calls);
        let rss = self
            .worker_max_rss
            .as_deref()
            .map(parse_size)
            .transpose()
            .map_err(bad)?;
        limits.worker_max_rss = limits.worker_max_rss.or(rss);
        Ok(())
    }
}

/// One model of the `--config` file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigModel {
    uri: String,
    #[serde(default)]
    result_type: Option<String>,
    /// What calls that do not say do with rows that fail: raise, null or struct.
    #[serde(default)]
    on_error: Option<OnError>,
    /// `local` or `uv`: this model's env manager instead of `--env-manager`.
    #[serde(default)]
    env_manager: Option<String>,
    /// Overrides of the model's saved config (as `--model-config`).
    #[serde(default)]
    model_config: Option<serde_json::Map<String, serde_json::Value>>,
    /// Environment variables of the model's workers (as `--extra-env`).
    #[serde(default)]
    extra_env: Option<serde_json::Value>,
}

/// Serves until a shutdown signal; returns the closing summary.
pub async fn run(mut args: ServeArgs) -> Result<String> {
    let config = read_config(&args)?;
    let config_path = args.config.clone().unwrap_or_default();
    config.limits.fill(&config_path, &mut args)?;
    let registrations = registrations(&args, config.models)?;
    args.limits.apply(worker_count(args.workers))?;
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
    let loader = model_loader(
        args.model_cache.as_deref(),
        args.workers,
        &args.limits,
        &args.envs,
    );
    let max_bindings = args
        .max_bindings
        .unwrap_or(mlfusion_flight::models::DEFAULT_MAX_BINDINGS);
    let (loader, models) = tokio::task::spawn_blocking(move || {
        load(&loader, &registrations, max_bindings).map(|models| {
            let followed = refresh::followed(&models, &registrations);
            (loader, (Arc::new(models), followed))
        })
    })
    .await
    .map_err(|e| Error::Serve(Box::new(e)))??;
    let (models, followed) = models;
    let names = models.names().join(", ");
    let unbound: Vec<String> = models
        .iter()
        .filter_map(|(_, m)| m.default_error().map(|e| e.replace('\n', " ")))
        .collect();
    let listener = listen(&format!("{}:{}", args.host, args.port)).await?;
    let metrics = match &args.metrics_addr {
        Some(address) => Some(listen(address).await?),
        None => None,
    };
    let defaults = Limits::default();
    let limits = Limits {
        stream_idle_timeout: args
            .stream_idle_timeout
            .unwrap_or(defaults.stream_idle_timeout),
        shutdown_grace: args.shutdown_grace.unwrap_or(defaults.shutdown_grace),
    };
    let token_required = access.token.is_some();
    // TLS is set up (and a bad certificate refused) before the server is announced.
    let server = FlightServer::new(Arc::clone(&models), listener, access, limits)
        .map_err(|e| Error::Serve(Box::new(e)))?;
    let location = server.location().to_owned();
    if let Some(listener) = metrics {
        let defaults = EndpointLimits::default();
        let limits = EndpointLimits {
            max_connections: args
                .metrics_max_connections
                .unwrap_or(defaults.max_connections),
            timeout: args.metrics_timeout.unwrap_or(defaults.timeout),
        };
        if let Ok(address) = listener.local_addr() {
            announce(&format!("mlfusion: metrics at http://{address}/metrics"));
        }
        tokio::spawn(serve_metrics(listener, limits));
    }
    let refreshing = match args.refresh_interval {
        Some(interval) if followed.is_empty() => {
            announce(&format!(
                "mlfusion: --refresh-interval {} s: no model is served from a registry alias, stage or 'latest'",
                interval.as_secs_f64()
            ));
            None
        }
        Some(interval) => Some(tokio::spawn(refresh::follow(
            Arc::clone(&models),
            loader,
            followed,
            interval,
        ))),
        None => None,
    };
    for error in unbound {
        announce(&format!(
            "mlfusion: warning: {error} (calls must pass a result_type)"
        ));
    }
    announce(&format!(
        "mlfusion: serving {names} at {location}{}",
        if token_required {
            " (token required)"
        } else {
            ""
        }
    ));
    server
        .run(async {
            super::stop_signal().await;
        })
        .await
        .map_err(|e| Error::Serve(Box::new(e)))?;
    // The models are unloaded here (workers stopped), not by whatever thread drops the
    // refresher after the process has moved on.
    if let Some(refreshing) = refreshing {
        refreshing.abort();
        let _ = refreshing.await;
    }
    drop(models);
    Ok(format!("mlfusion: stopped serving {names} at {location}"))
}

/// A listener on `address`, or an error naming it.
async fn listen(address: &str) -> Result<TcpListener> {
    TcpListener::bind(address)
        .await
        .map_err(|source| Error::Listen {
            address: address.to_owned(),
            source,
        })
}

/// The `--config` file, or an empty one.
fn read_config(args: &ServeArgs) -> Result<ServeConfig> {
    let Some(path) = &args.config else {
        return Ok(ServeConfig::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: path.clone(),
        source,
    })?;
    serde_saphyr::from_str(&text).map_err(|e| Error::Config {
        path: path.clone(),
        message: e.to_string(),
    })
}

/// Models from `--config`, then `--model` flags; a name given twice is an error.
fn registrations(
    args: &ServeArgs,
    config: BTreeMap<String, ConfigModel>,
) -> Result<Vec<ModelRegistration>> {
    let mut out: Vec<ModelRegistration> = Vec::new();
    for (name, m) in config {
        let bad = |message: String| Error::Config {
            path: args.config.clone().unwrap_or_default(),
            message: format!("models: {name}: {message}"),
        };
        let env_manager = m
            .env_manager
            .as_deref()
            .map(EnvManager::from_str)
            .transpose()
            .map_err(|message| bad(format!("env_manager: {message}")))?;
        let extra_env = m
            .extra_env
            .as_ref()
            .map(extra_env)
            .transpose()
            .map_err(bad)?
            .unwrap_or_default();
        out.push(ModelRegistration {
            uri: m.uri,
            result_type: m.result_type,
            on_error: m.on_error.unwrap_or_default(),
            options: LoadOptions {
                env_manager,
                model_config: m.model_config,
                extra_env,
            },
            name,
            ..Default::default()
        });
    }
    let flags = model_registrations(
        &args.models,
        &args.result_types,
        &[],
        &args.on_errors,
        &LoadFlags::default(),
    )?;
    for m in flags {
        if out.iter().any(|o| o.name == m.name) {
            return Err(Error::BadArgument {
                flag: "--model",
                value: format!("{}={}", m.name, m.uri),
                message: format!("model '{}' is also in --config", m.name),
            });
        }
        out.push(m);
    }
    apply_load_flags(&mut out, &args.load)?;
    if out.is_empty() {
        return Err(Error::BadArgument {
            flag: "--model",
            value: String::new(),
            message: "nothing to serve: give --model NAME=URI or --config FILE".into(),
        });
    }
    Ok(out)
}

/// Loads every model, as many at once as there are cores, and binds its default result
/// type, so a bad model or result type fails at start rather than on a client's first
/// call (blocking: runs Python). The first failure, in the order given, is reported.
fn load(
    loader: &ModelLoader,
    registrations: &[ModelRegistration],
    max_bindings: usize,
) -> Result<ServedModels> {
    let loaders = std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(registrations.len())
        .max(1);
    let queue = Mutex::new(registrations.iter().enumerate());
    let loaded: Vec<Mutex<Option<mlfusion_udf::Result<PyModel>>>> =
        registrations.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|scope| {
        for _ in 0..loaders {
            scope.spawn(|| {
                loop {
                    let next = queue.lock().unwrap_or_else(|e| e.into_inner()).next();
                    let Some((i, r)) = next else { break };
                    let model = loader.load_in(&r.name, &r.uri, &r.options);
                    let failed = model.is_err();
                    *loaded[i].lock().unwrap_or_else(|e| e.into_inner()) = Some(model);
                    if failed {
                        break; // the server will not start: load nothing more
                    }
                }
            });
        }
    });
    let mut models = ServedModels::default().with_max_bindings(max_bindings);
    for (r, model) in registrations.iter().zip(loaded) {
        let model = model.into_inner().unwrap_or_else(|e| e.into_inner());
        // A model not loaded comes after one that failed, which is reported first.
        let Some(model) = model else { continue };
        models.insert(model?, r.result_type.clone(), r.on_error)?;
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
