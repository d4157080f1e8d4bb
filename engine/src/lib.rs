//! # mlfusion-engine
//!
//! The SQL engine of mlfusion: a DataFusion session in which MLflow pyfunc models are
//! scalar functions, and the `mlfusion` command line (`query`, `demo`, `serve`).
//!
//! ```no_run
//! use mlfusion_engine::args::SessionArgs;
//! use mlfusion_engine::registration::{ModelRegistration, register_models};
//! use mlfusion_engine::session::new_context;
//!
//! # async fn example() -> mlfusion_engine::error::Result<()> {
//! mlfusion_udf::start_python(None)?; // once, before the tokio runtime starts
//! let settings = SessionArgs {
//!     batch_size: 65536, target_partitions: None, quiet: true, model_cache: None,
//!     workers: None, // one Python worker process per core
//!     limits: Default::default(), envs: Default::default(),
//! };
//! let ctx = new_context(&settings)?;
//! register_models(&ctx, &settings.model_loader(), &[ModelRegistration {
//!     name: "churn".into(), uri: "models:/churn@champion".into(), ..Default::default()
//! }])?;
//! let df = ctx.sql("SELECT churn(tenure_months, monthly_charges, support_calls) FROM 'customers.parquet'").await?;
//! # let _ = df; Ok(()) }
//! ```

pub mod args;
pub mod commands;
pub mod delta;
pub mod error;
pub mod logger;
pub mod model_functions;
pub mod output;
pub mod progress;
pub mod registration;
pub mod session;
pub mod staging;
pub mod statements;
pub mod stores;
pub mod tables;
pub mod units;

use std::ffi::OsString;

use args::{Cli, Command};
use clap::Parser;

/// The `mlfusion` command: parses `args` (the program name first), runs them and prints
/// the result or the error; returns the exit code. The binary's `main`, and the console
/// command of the Python wheel.
#[allow(clippy::print_stderr)]
pub fn main<I, T>(args: I) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version (on stdout, exit code 0) or a usage error.
            let _ = e.print();
            return u8::try_from(e.exit_code()).unwrap_or(2);
        }
    };
    match run(cli) {
        Ok(out) => {
            output::print_result(&out);
            0
        }
        Err(err) => {
            eprintln!("error: {}", err.report());
            // 128 + the signal for a run a signal stopped, as shells report it.
            err.signal().map_or(1, |s| 128 + s as u8)
        }
    }
}

/// Runs a parsed command line: starts Python (before any async runtime), then the command
/// on a multi-threaded runtime. Returns what to print on stdout.
/// Standard output is kept for results ([`output::print_result`]): anything else that
/// writes to it, such as a model in the engine's own interpreter, goes to stderr.
pub fn run(cli: Cli) -> error::Result<String> {
    output::keep_stdout_for_results().map_err(|source| error::Error::Write {
        path: "<stdout>".into(),
        source,
    })?;
    logger::install();
    // Two rustls crypto providers are linked (ring, and aws-lc-rs through delta-rs), so
    // neither is the default: TLS (serve's, HTTPS to stores) would panic without one.
    let _ = rustls::crypto::ring::default_provider().install_default();
    mlfusion_udf::start_python(cli.venv.as_deref())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(error::Error::Runtime)?;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Query(args) => commands::query::run(args).await,
            Command::Demo(args) => commands::demo::run(args).await,
            Command::Serve(args) => commands::serve::run(args).await,
            Command::Env(args) => commands::env::run(args).await,
        }
    });
    // A cancelled run may leave a model call on a blocking thread: don't wait for it.
    runtime.shutdown_background();
    result
}
