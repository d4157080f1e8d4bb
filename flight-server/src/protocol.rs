//! The command a client puts in a `FlightDescriptor` (`cmd`, UTF-8 JSON):
//!
//! ```json
//! {"model": "churn", "result_type": "double", "params": {"threshold": 0.5},
//!  "call": "columns"}
//! ```
//!
//! `model` names a model the server serves (never a path or URI); `result_type` (Spark
//! DDL, default: the model's) and `params` are `spark_udf`'s; `call` is how the batch's
//! columns reach the model: `"columns"` (default) passes them positionally, as
//! `udf(col_a, col_b)`; `"struct"` passes them as one struct, as `udf(struct(a, b))`, so
//! the model sees the column names. `model_config` and `extra_env` (`spark_udf`'s) are
//! checked against how the server loaded the model: a server loads each model once.

use std::collections::BTreeMap;

use mlfusion_udf::OnError;
use serde::Deserialize;
use serde_json::Value;
use tonic::Status;

/// How a batch's columns are passed to the model.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallForm {
    /// Each column is one positional argument.
    #[default]
    Columns,
    /// All columns form one struct argument.
    Struct,
}

/// A parsed descriptor command.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    pub model: String,
    #[serde(default)]
    pub result_type: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default)]
    pub call: CallForm,
    /// What the call does with rows whose prediction fails (the served default if absent).
    #[serde(default, deserialize_with = "on_error")]
    pub on_error: Option<OnError>,
    /// `spark_udf`'s `model_config`: must load the model as the server loaded it.
    #[serde(default)]
    pub model_config: Option<serde_json::Map<String, Value>>,
    /// `spark_udf`'s `extra_env`: must be the env the server gave the model.
    #[serde(default)]
    pub extra_env: Option<BTreeMap<String, String>>,
}

/// `on_error` by name, refused naming the field and the modes.
fn on_error<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<OnError>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|mode| mode.parse().map_err(serde::de::Error::custom))
        .transpose()
}

impl Command {
    /// Parses `cmd` bytes.
    pub fn parse(cmd: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(cmd).map_err(|e| {
            Status::invalid_argument(format!(
                "the descriptor command must be JSON like {{\"model\": \"name\", \"result_type\": \"double\"}}: {}",
                mlfusion_udf::limits::json_error(&e)
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_with_defaults_and_reject_unknown_keys() {
        let c = Command::parse(br#"{"model": "m"}"#).unwrap();
        assert_eq!((c.model.as_str(), c.call), ("m", CallForm::Columns));
        let c = Command::parse(br#"{"model": "m", "call": "struct", "params": {"k": 1}}"#).unwrap();
        assert_eq!(c.call, CallForm::Struct);
        let c = Command::parse(br#"{"model": "m", "on_error": "null"}"#).unwrap();
        assert_eq!(c.on_error, Some(OnError::Null));
        assert!(Command::parse(br#"{"model": "m", "on_error": "skip"}"#).is_err());
        assert!(Command::parse(br#"{"model": "m", "path": "/etc"}"#).is_err());
        assert!(Command::parse(b"not json").is_err());
        let deep = format!(
            r#"{{"model": "m", "params": {}1{}}}"#,
            "[".repeat(1000),
            "]".repeat(1000)
        );
        let err = Command::parse(deep.as_bytes()).expect_err("too deep");
        assert!(
            err.message().contains("deeper than 128 levels"),
            "{}",
            err.message()
        );
    }

    proptest::proptest! {
        /// Random and mutated commands never panic.
        #[test]
        fn any_bytes_parse_or_fail_cleanly(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = Command::parse(&bytes);
        }

        #[test]
        fn mutated_commands_parse_or_fail_cleanly(at in 0usize..80, with in proptest::num::u8::ANY) {
            let mut cmd = br#"{"model": "m", "result_type": "array<double>", "params": {"k": [1, 2.5]}, "call": "struct"}"#.to_vec();
            let at = at % cmd.len();
            cmd[at] = with;
            if let Ok(c) = Command::parse(&cmd) {
                let _ = c.result_type.map(|t| mlfusion_udf::SparkType::parse(&t));
            }
        }
    }
}
