//! The one error type of the crate.

use std::path::PathBuf;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading, loading or calling a pyfunc model.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read MLmodel file {path}")]
    ReadMlModel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed MLmodel file {path}: {message}")]
    MalformedMlModel { path: PathBuf, message: String },
    #[error(
        "malformed MLmodel file {path}: field '{field}' is not valid JSON for an MLflow {what}: {message}"
    )]
    MalformedSignature {
        path: PathBuf,
        field: String,
        what: &'static str,
        message: String,
    },
    #[error(
        "model {path} has no python_function flavor (flavors: {flavors})\nhint: only models saved with a pyfunc flavor can be scored"
    )]
    NoPyFuncFlavor { path: PathBuf, flavors: String },
    #[error("MLmodel file {path}: field '{field}' = '{value}' escapes the model directory")]
    PathEscapes {
        path: PathBuf,
        field: &'static str,
        value: String,
    },
    /// A model's files (MLmodel, environment) could not be read: the model's name and why.
    #[error("model '{model}': {source}")]
    InModel {
        model: String,
        #[source]
        source: Box<Error>,
    },
    #[error("model environment file {path}: {message}")]
    MalformedEnv { path: PathBuf, message: String },
    #[error("cannot parse result type '{ddl}': {message}")]
    ResultTypeSyntax { ddl: String, message: String },
    #[error(
        "invalid 'spark_udf' result type: {ddl}; it must be built from int, bigint (long), float, double, string, boolean, array<...>, struct<...> and map<string, ...>"
    )]
    UnsupportedResultType { ddl: String },
    #[error(
        "cannot infer a result type from the model's output schema: {message}\nhint: pass a result type explicitly"
    )]
    OutputSchema { message: String },
    #[error("model '{model}': invalid parameters found: {}", format_invalid_params(.invalid))]
    InvalidParams {
        model: String,
        invalid: Vec<(String, String)>,
    },
    #[error("model '{model}': params must be a JSON object, got {found}")]
    ParamsNotObject { model: String, found: String },
    #[error("model '{model}': {message}")]
    Call { model: String, message: String },
    #[error("model '{model}': failed to enforce the input schema: {message}")]
    InputSchema { model: String, message: String },
    #[error("model '{model}': {stage} raised {exception}\n{traceback}{notes}")]
    Python {
        model: String,
        stage: String,
        exception: String,
        traceback: String,
        /// The exception's notes (`__notes__`), e.g. what loading printed, after the cause.
        notes: String,
    },
    #[error(
        "model '{model}': the number of output rows ({found}) must match the number of input rows ({expected})"
    )]
    RowCount {
        model: String,
        expected: usize,
        found: usize,
    },
    #[error("model '{model}': cannot convert the prediction to {expected}: {message}")]
    Output {
        model: String,
        expected: String,
        message: String,
    },
    #[error("model '{model}': cannot resolve model URI '{uri}': {message}")]
    ModelUri {
        model: String,
        uri: String,
        message: String,
    },
    #[error("model '{model}': environment {key}: {message}")]
    Env {
        model: String,
        key: String,
        message: String,
    },
    #[error("python interpreter: {message}")]
    Interpreter { message: String },
    #[error(transparent)]
    Arrow(#[from] arrow::error::ArrowError),
}

fn format_invalid_params(invalid: &[(String, String)]) -> String {
    invalid
        .iter()
        .map(|(name, reason)| format!("'{name}': {reason}"))
        .collect::<Vec<_>>()
        .join("; ")
}
