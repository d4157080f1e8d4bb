//! Command-line arguments.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use mlfusion_udf::{EnvCache, EnvManager, ModelLoader, ModelStore, WorkerLimits, WorkerStart};

use crate::error::Error;
use crate::output::Format;
use crate::units::{parse_duration, parse_size};

/// Batch inference for MLflow models in SQL.
#[derive(Debug, Parser)]
#[command(name = "mlfusion", version, about)]
pub struct Cli {
    /// The Python venv models run in (default: MLFUSION_VENV, VIRTUAL_ENV, then the venv
    /// mlfusion was built with).
    #[arg(long, global = true, env = "MLFUSION_VENV")]
    pub venv: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run SQL over Parquet/CSV tables with MLflow models registered as functions.
    Query(QueryArgs),
    /// Score a generated dataset with the bundled example model.
    Demo(DemoArgs),
    /// Serve models over Arrow Flight (DoExchange) to PySpark and other Flight clients.
    Serve(ServeArgs),
    /// Models' own environments (--env-manager uv): list, build ahead, collect, remove.
    Env(EnvCommandArgs),
}

/// `mlfusion query`.
#[derive(Debug, Args)]
pub struct QueryArgs {
    /// Register the model at URI (a directory, runs:/, models:/name/1, models:/name@alias,
    /// s3://, ...) as the SQL function NAME (repeatable).
    #[arg(long = "model", value_name = "NAME=URI")]
    pub models: Vec<String>,
    /// The spark_udf result type of model NAME as a Spark DDL string, e.g. 'array<double>'.
    #[arg(long = "result-type", value_name = "NAME=DDL")]
    pub result_types: Vec<String>,
    /// Inference params of model NAME as a JSON object.
    #[arg(long = "params", value_name = "NAME=JSON")]
    pub params: Vec<String>,
    /// What calls of model NAME do with rows whose prediction fails: raise (the query
    /// fails, as spark_udf's job does), null (those rows are NULL) or struct (each row
    /// is struct<value, error>); failing batches are re-scored in halves to find the rows.
    #[arg(long = "on-error", value_name = "NAME=MODE")]
    pub on_errors: Vec<String>,
    #[command(flatten)]
    pub load: LoadFlags,
    /// Register a Parquet (or .csv) file, directory or glob as table NAME, local or in an
    /// object store (s3://, gs://, az://, https://); a Delta table for delta:LOCATION
    /// (@vN or @TIMESTAMP for an older version) or a location holding a _delta_log/
    /// (repeatable).
    #[arg(long = "table", value_name = "NAME=PATH")]
    pub tables: Vec<String>,
    /// Run SQL statements (repeatable; before --file and SQL).
    #[arg(short = 'c', long = "command", value_name = "SQL")]
    pub commands: Vec<String>,
    /// Run the SQL statements of a file (repeatable).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Write the last statement's result to FILE (.parquet, .csv, .json/.jsonl/.ndjson),
    /// local or an object store URL, or to the Delta table delta:LOCATION, instead of
    /// printing results.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// For --output delta:LOCATION, when the table exists: error, append or overwrite.
    #[arg(long, value_name = "MODE", default_value = "error", value_parser = crate::delta::save_mode)]
    pub output_mode: deltalake::protocol::SaveMode,
    /// How results are printed, or the --output format when its extension says nothing.
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Print on stderr how long loading the models and each statement took.
    #[arg(long)]
    pub timing: bool,
    #[command(flatten)]
    pub session: SessionArgs,
    /// SQL statements to run (after -c and -f).
    pub sql: Option<String>,
}

/// Execution settings shared by the commands.
#[derive(Debug, Args, Clone)]
pub struct SessionArgs {
    /// Rows per batch read from the tables, and so per model call: large batches spread
    /// each call's fixed cost (pandas frames, `predict` dispatch) over more rows.
    #[arg(long, env = "MLFUSION_BATCH_SIZE", default_value_t = 65536)]
    pub batch_size: usize,
    /// Partitions scanned in parallel (default: available cores).
    #[arg(long, env = "MLFUSION_TARGET_PARTITIONS")]
    pub target_partitions: Option<usize>,
    /// No progress bar (it is drawn only when stderr is a terminal anyway).
    #[arg(long, short)]
    pub quiet: bool,
    /// Where models fetched from URIs (runs:/, models:/, s3://, ...) are cached
    /// [default: ~/.cache/mlfusion/models].
    #[arg(long, env = "MLFUSION_MODEL_CACHE", value_name = "DIR")]
    pub model_cache: Option<PathBuf>,
    /// Python worker processes per model, each loading it once; 0 runs models in the
    /// engine's own interpreter [default: available cores].
    #[arg(long, env = "MLFUSION_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub envs: EnvArgs,
}

impl SessionArgs {
    /// The model loader of `--model-cache`, `--workers`, the worker limits and the envs.
    pub fn model_loader(&self) -> ModelLoader {
        model_loader(
            self.model_cache.as_deref(),
            self.workers,
            &self.limits,
            &self.envs,
        )
    }
}

/// Where models' Python environments come from, shared by `query`, `serve` and `env`
/// (README "Model environments").
#[derive(Debug, Args, Clone, Default)]
pub struct EnvArgs {
    /// Each model's Python: `local`, the engine's venv; `uv`, an env of the model's own,
    /// built by uv from its requirements once and cached [default: local].
    #[arg(long, env = "MLFUSION_ENV_MANAGER", value_name = "MANAGER", value_parser = EnvManager::from_str)]
    pub env_manager: Option<EnvManager>,
    #[command(flatten)]
    pub cache: EnvCacheArgs,
}

/// The env cache and how envs are built.
#[derive(Debug, Args, Clone, Default)]
pub struct EnvCacheArgs {
    /// Where models' own envs are kept [default: ~/.cache/mlfusion/envs].
    #[arg(long, env = "MLFUSION_ENV_CACHE", value_name = "DIR", global = true)]
    pub env_cache: Option<PathBuf>,
    /// Let uv download a Python the machine does not have, for a model that needs it.
    #[arg(long, env = "MLFUSION_PYTHON_DOWNLOADS", global = true)]
    pub python_downloads: bool,
}

/// `mlfusion env`.
#[derive(Debug, Args)]
pub struct EnvCommandArgs {
    #[command(subcommand)]
    pub action: EnvAction,
    #[command(flatten)]
    pub cache: EnvCacheArgs,
}

/// What `mlfusion env` does.
#[derive(Debug, Subcommand)]
pub enum EnvAction {
    /// The cached envs: key, Python, size, when last used, the models that used them.
    List,
    /// Builds (or finds) the env of each model, e.g. on every node before a job.
    Build {
        /// Model paths or URIs (runs:/, models:/, ...).
        #[arg(required = true, value_name = "URI")]
        uris: Vec<String>,
        /// Where models fetched from URIs are cached [default: ~/.cache/mlfusion/models].
        #[arg(long, env = "MLFUSION_MODEL_CACHE", value_name = "DIR")]
        model_cache: Option<PathBuf>,
    },
    /// Removes envs no running process uses, least recently used first.
    Gc {
        /// Every env unused for longer than this (e.g. `7d`, `12h`).
        #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_duration)]
        older_than: Duration,
        /// Then more, until the cache holds at most SIZE (e.g. `20GiB`).
        #[arg(long, value_name = "SIZE", value_parser = parse_size)]
        max_size: Option<u64>,
    },
    /// Removes the envs KEY... (refused for an env a running process uses).
    Rm {
        #[arg(required = true, value_name = "KEY")]
        keys: Vec<String>,
    },
}

impl EnvCacheArgs {
    /// The env cache of `--env-cache` and `--python-downloads`.
    pub fn env_cache(&self) -> EnvCache {
        let dir = self
            .env_cache
            .clone()
            .unwrap_or_else(|| mlfusion_cache_dir().join("envs"));
        EnvCache::new(dir).with_python_downloads(self.python_downloads)
    }
}

/// `cache`, else `~/.cache/mlfusion/models`: where models fetched from URIs are kept.
pub fn model_cache_dir(cache: Option<&Path>) -> PathBuf {
    cache
        .map(Path::to_path_buf)
        .unwrap_or_else(|| mlfusion_cache_dir().join("models"))
}

/// `~/.cache/mlfusion` (or the platform's cache directory).
fn mlfusion_cache_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("mlfusion")
}

/// Limits on models and their input, shared by `query` and `serve` (README "Limits").
#[derive(Debug, Args, Clone, Default)]
pub struct LimitArgs {
    /// Fail a predict call that runs longer than this (e.g. `90s`, `10m`); its worker
    /// process is killed and replaced. Needs worker processes [default: no limit].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub predict_timeout: Option<Duration>,
    /// Replace a worker process after it has answered N calls [default: never].
    #[arg(long, value_name = "N")]
    pub worker_max_calls: Option<u64>,
    /// Replace a worker process whose resident memory exceeds SIZE after a call (e.g.
    /// `2GiB`, `800MB`) [default: never].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub worker_max_rss: Option<u64>,
    /// How deeply array<>, map<> and struct<> may nest in a result type [default: 64].
    #[arg(long, value_name = "N")]
    pub max_type_depth: Option<usize>,
    /// How worker processes start: `fork` them from a template process that loaded the
    /// model once (the default; a model whose load starts threads is started instead), or
    /// `spawn` each as its own Python that loads the model.
    #[arg(
        long,
        value_enum,
        env = "MLFUSION_WORKER_START",
        default_value = "fork"
    )]
    pub worker_start: WorkerStartArg,
}

/// `--worker-start`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WorkerStartArg {
    #[default]
    Fork,
    Spawn,
}

impl LimitArgs {
    /// The limits of each worker process.
    pub fn worker_limits(&self) -> WorkerLimits {
        WorkerLimits {
            start: match self.worker_start {
                WorkerStartArg::Fork => WorkerStart::Fork,
                WorkerStartArg::Spawn => WorkerStart::Spawn,
            },
            predict_timeout: self.predict_timeout,
            max_calls: self.worker_max_calls,
            max_rss: self.worker_max_rss,
        }
    }

    /// Applies the process-wide limits and checks that the others can be enforced with
    /// `workers` worker processes per model.
    pub fn apply(&self, workers: usize) -> Result<(), Error> {
        mlfusion_udf::limits::set_max_type_depth(
            self.max_type_depth
                .unwrap_or(mlfusion_udf::limits::DEFAULT_MAX_TYPE_DEPTH),
        );
        if workers == 0 && self.predict_timeout.is_some() {
            return Err(Error::BadArgument {
                flag: "--predict-timeout",
                value: format!("{:?}", self.predict_timeout.unwrap_or_default()),
                message: "a call in the engine's own interpreter (--workers 0) cannot be stopped\nhint: run models in worker processes (--workers 1 or more)".into(),
            });
        }
        Ok(())
    }
}

/// The number of worker processes per model: `workers`, else one per available core.
pub fn worker_count(workers: Option<usize>) -> usize {
    workers.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The model loader caching downloads in `cache` (by default `~/.cache/mlfusion/models`),
/// loading models into `workers` processes (by default one per available core) bounded
/// by `limits`, in the environments of `envs`.
pub fn model_loader(
    cache: Option<&Path>,
    workers: Option<usize>,
    limits: &LimitArgs,
    envs: &EnvArgs,
) -> ModelLoader {
    ModelLoader::new(ModelStore::new(model_cache_dir(cache)))
        .with_workers(worker_count(workers))
        .with_worker_limits(limits.worker_limits())
        .with_envs(envs.env_manager.unwrap_or_default(), envs.cache.env_cache())
}

/// Splits `NAME=VALUE` flag values.
pub fn split_assignment<'a>(
    flag: &'static str,
    value: &'a str,
) -> Result<(&'a str, &'a str), Error> {
    match value.split_once('=') {
        Some((name, rest)) if !name.is_empty() && !rest.is_empty() => Ok((name, rest)),
        _ => Err(Error::BadArgument {
            flag,
            value: value.to_owned(),
            message: "expected NAME=VALUE".into(),
        }),
    }
}

/// How models load, per model: `spark_udf`'s `model_config` and `extra_env`.
#[derive(Debug, Default, Args)]
pub struct LoadFlags {
    /// Config overrides of model NAME, as `spark_udf(model_config=...)`: a JSON object, or a
    /// YAML file holding one. Only keys of the model's saved config are taken.
    #[arg(long = "model-config", value_name = "NAME=JSON|FILE")]
    pub model_configs: Vec<String>,
    /// An environment variable of model NAME's worker processes, as
    /// `spark_udf(extra_env=...)` (repeatable).
    #[arg(long = "extra-env", value_name = "NAME=VAR=VALUE")]
    pub extra_envs: Vec<String>,
}

/// `mlfusion demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where the example model, input and output go.
    #[arg(long, default_value = "demo-data")]
    pub dir: PathBuf,
    /// Rows in the generated input (made once; delete the file to regenerate).
    #[arg(long, default_value_t = 1_000_000)]
    pub rows: usize,
    #[command(flatten)]
    pub session: SessionArgs,
}

/// `mlfusion serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve the model at URI under NAME (repeatable).
    #[arg(long = "model", value_name = "NAME=URI")]
    pub models: Vec<String>,
    /// The result type clients of model NAME get unless they ask for another.
    #[arg(long = "result-type", value_name = "NAME=DDL")]
    pub result_types: Vec<String>,
    /// What calls of model NAME do with rows that fail unless they ask otherwise: raise,
    /// null or struct (see `mlfusion query --on-error`).
    #[arg(long = "on-error", value_name = "NAME=MODE")]
    pub on_errors: Vec<String>,
    #[command(flatten)]
    pub load: LoadFlags,
    /// A YAML file of models: `models: {NAME: {uri: URI, result_type: DDL, on_error: null,
    /// env_manager: uv, model_config: {...}, extra_env: {VAR: VALUE}}}`.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// The port to listen on (0: any free port).
    #[arg(long, default_value_t = 8815)]
    pub port: u16,
    /// A file holding the token every client must send (`authorization: Bearer <token>`).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// A PEM certificate chain: serve TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Where models fetched from URIs are cached [default: ~/.cache/mlfusion/models].
    #[arg(long, env = "MLFUSION_MODEL_CACHE", value_name = "DIR")]
    pub model_cache: Option<PathBuf>,
    /// Python worker processes per model (shared by all streams); 0 runs models in the
    /// server's own interpreter [default: available cores].
    #[arg(long, env = "MLFUSION_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
    /// End a stream whose client neither sends nor takes a message for this long
    /// (DEADLINE_EXCEEDED) [default: 10m].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stream_idle_timeout: Option<Duration>,
    /// On SIGTERM or Ctrl-C, let open streams finish for this long, then cancel them
    /// [default: 30s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub shutdown_grace: Option<Duration>,
    /// Bindings (result type and params) kept per model; the least recently used goes
    /// first [default: 64].
    #[arg(long, value_name = "N")]
    pub max_bindings: Option<usize>,
    /// Re-resolve models served from registry aliases, stages and `latest`
    /// (`models:/name@alias`) this often; a new version is loaded beside the old and new
    /// streams switch to it [default: off].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub refresh_interval: Option<Duration>,
    /// Serve Prometheus metrics at http://HOST:PORT/metrics, e.g. 127.0.0.1:9090
    /// [default: off].
    #[arg(long, value_name = "HOST:PORT")]
    pub metrics_addr: Option<String>,
    /// Metrics connections answered at once; more are closed [default: 16].
    #[arg(long, value_name = "N", requires = "metrics_addr")]
    pub metrics_max_connections: Option<usize>,
    /// A metrics connection ends this long after it opened [default: 10s].
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, requires = "metrics_addr")]
    pub metrics_timeout: Option<Duration>,
    #[command(flatten)]
    pub limits: LimitArgs,
    #[command(flatten)]
    pub envs: EnvArgs,
}
