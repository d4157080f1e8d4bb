//! Inference parameters: validation against the signature's params schema, with
//! `spark_udf`'s rules (`mlflow.models.utils._enforce_params_schema`).

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::pyfunc::signature::{MlflowType, ParamSpec};

/// Validates `given` against `schema` and returns what the model's `predict` receives:
/// - no params schema: `None` when nothing was given, else `{}` (given params are ignored);
/// - a params schema: every declared param, given values (converted) or defaults.
pub fn validate_params(
    model: &str,
    given: Option<&Value>,
    schema: Option<&[ParamSpec]>,
) -> Result<Option<Value>> {
    let Some(schema) = schema else {
        return Ok(given.map(|_| Value::Object(Map::new())));
    };
    let given = match given {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(map)) => map.clone(),
        Some(other) => {
            return Err(Error::ParamsNotObject {
                model: model.to_owned(),
                found: crate::limits::abbreviate(&other.to_string(), 200),
            });
        }
    };
    let mut out = Map::new();
    let mut invalid = Vec::new();
    for spec in schema {
        match given.get(&spec.name) {
            None => {
                out.insert(spec.name.clone(), spec.default.clone());
            }
            Some(value) => match validate_param(value, spec) {
                Ok(v) => {
                    out.insert(spec.name.clone(), v);
                }
                Err(reason) => invalid.push((spec.name.clone(), reason)),
            },
        }
    }
    if !invalid.is_empty() {
        return Err(Error::InvalidParams {
            model: model.to_owned(),
            invalid,
        });
    }
    Ok(Some(Value::Object(out)))
}

/// Checks that each param's default has its declared type and shape, as MLflow's
/// `ParamSpec` does when a params schema is read.
pub fn check_defaults(schema: &[ParamSpec]) -> Result<(), String> {
    for spec in schema {
        validate_param(&spec.default, spec).map_err(|reason| {
            format!(
                "the default of param '{}' does not fit its type {}: {reason}",
                spec.name,
                spec.ty.name()
            )
        })?;
    }
    Ok(())
}

fn validate_param(value: &Value, spec: &ParamSpec) -> Result<Value, String> {
    match spec.shape.as_deref() {
        None => scalar(value, spec.ty),
        Some([-1]) => match value {
            Value::Array(items) if !items.iter().any(|v| v.is_array() || v.is_object()) => items
                .iter()
                .map(|v| scalar(v, spec.ty))
                .collect::<Result<Vec<_>, _>>()
                .map(Value::Array),
            other => Err(format!(
                "value must be a 1D array with shape (-1,) for param '{}', received {}",
                spec.name,
                crate::limits::abbreviate(&other.to_string(), 200)
            )),
        },
        Some(shape) => Err(format!("unsupported param shape {shape:?}")),
    }
}

/// One scalar: the exact declared type, or a widening int -> long/float/double, float -> double.
fn scalar(value: &Value, ty: MlflowType) -> Result<Value, String> {
    let shown = || crate::limits::abbreviate(&value.to_string(), 200);
    let mismatch = || {
        format!(
            "can not safely convert {} to {} for value {}",
            json_kind(value),
            ty.name(),
            shown()
        )
    };
    match (ty, value) {
        (_, Value::Null) => Ok(Value::Null),
        (_, Value::Array(_) | Value::Object(_)) => Err(format!(
            "value must be a scalar for type {}, got {}",
            ty.name(),
            shown()
        )),
        (MlflowType::Boolean, Value::Bool(_)) => Ok(value.clone()),
        (MlflowType::String, Value::String(_)) => Ok(value.clone()),
        (MlflowType::Integer | MlflowType::Long, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Ok(value.clone())
        }
        (MlflowType::Float | MlflowType::Double, Value::Number(n)) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(mismatch),
        // Converted to a datetime by the bridge; anything numpy can parse is accepted.
        (MlflowType::Datetime, Value::String(_)) => Ok(value.clone()),
        _ => Err(mismatch()),
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float",
        Value::Number(_) => "int",
        Value::String(_) => "str",
        Value::Array(_) => "list",
        Value::Object(_) => "dict",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Vec<ParamSpec> {
        ParamSpec::list_from_json(
            r#"[{"name": "scale", "type": "double", "default": 1.0, "shape": null},
                {"name": "label", "type": "string", "default": "dflt", "shape": null},
                {"name": "k", "type": "long", "default": 3, "shape": null},
                {"name": "flags", "type": "boolean", "default": [true], "shape": [-1]}]"#,
        )
        .expect("valid")
    }

    #[test]
    fn defaults_fill_missing_params_and_ints_widen_to_double() {
        let got = validate_params("m", Some(&json!({"scale": 2})), Some(&schema())).expect("ok");
        assert_eq!(
            got,
            Some(json!({"scale": 2.0, "label": "dflt", "k": 3, "flags": [true]}))
        );
        assert!(got.expect("some")["scale"].is_f64());
    }

    #[test]
    fn unknown_params_are_dropped() {
        let got =
            validate_params("m", Some(&json!({"zzz": 1, "k": 9})), Some(&schema())).expect("ok");
        assert_eq!(got.expect("some")["k"], json!(9));
    }

    #[test]
    fn wrong_types_are_collected_with_names() {
        let err = validate_params(
            "m",
            Some(&json!({"scale": "abc", "k": true, "flags": false, "label": 3})),
            Some(&schema()),
        )
        .expect_err("invalid")
        .to_string();
        assert!(
            err.starts_with("model 'm': invalid parameters found"),
            "{err}"
        );
        for name in ["'scale'", "'k'", "'flags'", "'label'"] {
            assert!(err.contains(name), "{name} missing in {err}");
        }
    }

    #[test]
    fn list_params_validate_each_element() {
        let ok = validate_params("m", Some(&json!({"flags": [false, true]})), Some(&schema()));
        assert!(ok.is_ok());
        let bad = validate_params("m", Some(&json!({"flags": [1]})), Some(&schema()));
        assert!(bad.is_err());
    }

    #[test]
    fn without_a_params_schema_the_model_sees_empty_or_none() {
        assert_eq!(validate_params("m", None, None).expect("ok"), None);
        assert_eq!(
            validate_params("m", Some(&json!({"scale": 2.0})), None).expect("ok"),
            Some(json!({}))
        );
    }

    #[test]
    fn defaults_of_the_wrong_type_are_refused() {
        assert!(check_defaults(&schema()).is_ok());
        for bad in [
            r#"[{"name": "k", "type": "long", "default": "abc", "shape": null}]"#,
            r#"[{"name": "k", "type": "boolean", "default": 1, "shape": null}]"#,
            r#"[{"name": "k", "type": "double", "default": [1.0], "shape": null}]"#,
            r#"[{"name": "k", "type": "long", "default": 3, "shape": [-1]}]"#,
        ] {
            let specs = ParamSpec::list_from_json(bad).expect("parses");
            let err = check_defaults(&specs).expect_err(bad);
            assert!(err.contains("the default of param 'k'"), "{err}");
        }
    }

    #[test]
    fn params_must_be_an_object() {
        assert!(validate_params("m", Some(&json!([1])), Some(&schema())).is_err());
    }
}
