//! The engine's error type.

use std::path::PathBuf;

/// Result alias of the engine.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can fail in a session or a command.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Model(#[from] mlfusion_udf::Error),
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("invalid {flag} '{value}': {message}")]
    BadArgument {
        flag: &'static str,
        value: String,
        message: String,
    },
    #[error("{flag} names model '{model}', but no --model {model}=PATH was given")]
    UnknownModel { flag: &'static str, model: String },
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {message}")]
    Encode { path: PathBuf, message: String },
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot prepare the demo in {path}")]
    Demo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}
