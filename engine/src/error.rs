//! The engine's error type.

use std::error::Error as _;
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
    #[error("{flag} names model '{model}', but no --model {model}=URI was given")]
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
    #[error("invalid {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("cannot listen on {address}")]
    Listen {
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the Flight server failed")]
    Serve(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
    #[error("interrupted by {}: the statement was cancelled and its partial output removed", signal_name(*.0))]
    Interrupted(i32),
    #[error("cannot prepare the demo in {path}")]
    Demo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGINT => "SIGINT (Ctrl-C)",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

impl Error {
    /// The signal that stopped the command, if one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            Error::Interrupted(signal) => Some(*signal),
            _ => None,
        }
    }

    /// The error and its causes, once each, as the CLI prints them. DataFusion errors
    /// are reported by their root (the planning error or our model error), without
    /// DataFusion's wrapping.
    pub fn report(&self) -> String {
        let mut text = match self {
            Error::DataFusion(e) => {
                let root = e.find_root().to_string();
                root.strip_prefix("External error: ")
                    .unwrap_or(&root)
                    .to_owned()
            }
            other => other.to_string(),
        };
        let mut source = self.source();
        while let Some(cause) = source {
            let line = cause.to_string();
            if !text.contains(&line) {
                text.push_str(&format!("\n  caused by: {line}"));
            }
            source = cause.source();
        }
        text
    }
}
