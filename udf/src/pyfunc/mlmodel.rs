//! The `MLmodel` file: the YAML manifest of an MLflow model directory.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::pyfunc::params::check_defaults;
use crate::pyfunc::signature::{ModelSignature, ParamSpec, Schema};

/// Name of the manifest inside a model directory.
pub const MLMODEL_FILE: &str = "MLmodel";

/// A parsed `MLmodel` manifest together with the directory it was read from.
#[derive(Debug, Clone)]
pub struct MlModel {
    /// The model directory (the parent of the `MLmodel` file).
    pub dir: PathBuf,
    /// The `python_function` flavor, which mlfusion loads the model through.
    pub pyfunc: PyFuncFlavor,
    /// Every flavor (`python_function`, `sklearn`, ...), kept as opaque maps.
    pub flavors: BTreeMap<String, serde_json::Value>,
    /// The model signature, if it was saved with one.
    pub signature: ModelSignature,
    /// `saved_input_example_info`, kept opaque.
    pub saved_input_example_info: Option<serde_json::Value>,
    /// Free-form `metadata`.
    pub metadata: Option<serde_json::Value>,
    /// `model_uuid`.
    pub model_uuid: Option<String>,
    /// The MLflow version that saved the model.
    pub mlflow_version: Option<String>,
}

/// The `flavors.python_function` block.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PyFuncFlavor {
    /// Module whose `_load_pyfunc(data_path[, model_config])` loads the model.
    pub loader_module: String,
    /// Directory (relative to the model) prepended to `sys.path`.
    #[serde(default)]
    pub code: Option<String>,
    /// Path (relative to the model) given to `_load_pyfunc`; defaults to the model directory.
    #[serde(default)]
    pub data: Option<String>,
    /// Environment files: `env` (a path or a map), legacy `conda_env` / `python_env`.
    #[serde(default)]
    pub env: Option<serde_json::Value>,
    #[serde(default)]
    pub conda_env: Option<String>,
    #[serde(default)]
    pub python_env: Option<String>,
    /// Configuration handed to `_load_pyfunc` as its second argument: MLflow writes it
    /// under `config` (`mlflow.models.model.MODEL_CONFIG`); `model_config` is read too.
    #[serde(default, rename = "config", alias = "model_config")]
    pub model_config: Option<serde_json::Value>,
    /// Extra artifacts of a `PythonModel`.
    #[serde(default)]
    pub artifacts: Option<serde_json::Value>,
    /// The pickled `PythonModel` (loaded by `mlflow.pyfunc.model`).
    #[serde(default)]
    pub python_model: Option<String>,
    /// Name of the predict method (default `predict`).
    #[serde(default)]
    pub predict_fn: Option<String>,
    /// Python version the model was saved with.
    #[serde(default)]
    pub python_version: Option<String>,
}

#[derive(Deserialize)]
struct RawMlModel {
    #[serde(default)]
    flavors: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(default)]
    signature: Option<RawSignature>,
    #[serde(default)]
    saved_input_example_info: Option<serde_json::Value>,
    #[serde(default)]
    metadata: Option<serde_json::Value>,
    #[serde(default)]
    model_uuid: Option<String>,
    #[serde(default)]
    mlflow_version: Option<String>,
    #[serde(default)]
    is_signature_from_type_hint: bool,
    #[serde(default)]
    type_hint_from_example: bool,
}

/// A part of `signature:` that holds something: not absent, empty or `null`.
fn written(text: &Option<String>) -> Option<&str> {
    text.as_deref()
        .filter(|t| !t.trim().is_empty() && t.trim() != "null")
}

/// A config `_load_pyfunc` would not be given (Python's falsy: null, `{}`).
fn is_empty_config(config: &serde_json::Value) -> bool {
    config.is_null() || config.as_object().is_some_and(serde_json::Map::is_empty)
}

/// The pyfunc flavor read typed straight from YAML: through an untyped value,
/// `python_version: 3.10` would become the float 3.1.
#[derive(Deserialize)]
struct RawPyFunc {
    #[serde(default)]
    flavors: Option<RawPyFuncFlavors>,
}

#[derive(Deserialize)]
struct RawPyFuncFlavors {
    #[serde(default)]
    python_function: Option<PyFuncFlavor>,
}

#[derive(Deserialize)]
struct RawSignature {
    #[serde(default)]
    inputs: Option<String>,
    #[serde(default)]
    outputs: Option<String>,
    #[serde(default)]
    params: Option<String>,
}

impl MlModel {
    /// Reads `<dir>/MLmodel`.
    pub fn from_path(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(MLMODEL_FILE);
        let text = std::fs::read_to_string(&path).map_err(|source| Error::ReadMlModel {
            path: path.clone(),
            source,
        })?;
        let model = Self::parse(&text, dir)?;
        model.check_links_stay_inside(&path)?;
        Ok(model)
    }

    /// `code` and `data` may be symlinks: what they point at must be inside the model
    /// directory too (the text check of [`MlModel::parse`] cannot see links).
    fn check_links_stay_inside(&self, path: &Path) -> Result<()> {
        let Ok(root) = self.dir.canonicalize() else {
            return Ok(()); // nothing to load from anyway: loading reports it
        };
        let fields = [
            ("code", &self.pyfunc.code, self.code_dir()),
            ("data", &self.pyfunc.data, Some(self.data_path())),
        ];
        for (field, value, target) in fields {
            let (Some(value), Some(target)) = (value, target) else {
                continue;
            };
            if let Ok(real) = target.canonicalize()
                && !real.starts_with(&root)
            {
                return Err(Error::PathEscapes {
                    path: path.to_owned(),
                    field,
                    value: format!("{value} -> {}", real.display()),
                });
            }
        }
        Ok(())
    }

    /// Parses manifest text; `dir` is the model directory it belongs to.
    pub fn parse(text: &str, dir: PathBuf) -> Result<Self> {
        let path = dir.join(MLMODEL_FILE);
        let malformed = |message: String| Error::MalformedMlModel {
            path: path.clone(),
            message,
        };
        let raw: RawMlModel = serde_saphyr::from_str(text).map_err(|e| malformed(e.to_string()))?;
        let flavors = raw
            .flavors
            .ok_or_else(|| malformed("missing field 'flavors'".into()))?;
        if !flavors.contains_key("python_function") {
            return Err(Error::NoPyFuncFlavor {
                path: dir.clone(),
                flavors: flavors.keys().cloned().collect::<Vec<_>>().join(", "),
            });
        }
        let typed: RawPyFunc = serde_saphyr::from_str(text)
            .map_err(|e| malformed(format!("field 'flavors.python_function': {e}")))?;
        let pyfunc = typed
            .flavors
            .and_then(|f| f.python_function)
            .ok_or_else(|| malformed("field 'flavors.python_function' is empty".into()))?;
        for (field, value) in [("code", &pyfunc.code), ("data", &pyfunc.data)] {
            if let Some(value) = value
                && escapes(value)
            {
                return Err(Error::PathEscapes {
                    path: path.clone(),
                    field,
                    value: value.clone(),
                });
            }
        }
        let signature = match raw.signature {
            None => ModelSignature::default(),
            Some(sig) => {
                let schema = |field: &str, text: &Option<String>| -> Result<Option<Schema>> {
                    written(text)
                        .map(|t| {
                            Schema::from_json(t).map_err(|message| Error::MalformedSignature {
                                path: path.clone(),
                                field: format!("signature.{field}"),
                                what: "schema",
                                message,
                            })
                        })
                        .transpose()
                };
                let params = written(&sig.params)
                    .map(|t| {
                        ParamSpec::list_from_json(t)
                            .and_then(|specs| check_defaults(&specs).map(|()| specs))
                            .map_err(|message| Error::MalformedSignature {
                                path: path.clone(),
                                field: "signature.params".into(),
                                what: "params schema",
                                message,
                            })
                    })
                    .transpose()?;
                ModelSignature {
                    inputs: schema("inputs", &sig.inputs)?,
                    inputs_json: written(&sig.inputs).map(str::to_owned),
                    outputs: schema("outputs", &sig.outputs)?,
                    params,
                    from_type_hints: raw.is_signature_from_type_hint,
                    from_example_type: raw.type_hint_from_example,
                }
            }
        };
        Ok(Self {
            dir,
            pyfunc,
            flavors,
            signature,
            saved_input_example_info: raw.saved_input_example_info,
            metadata: raw.metadata,
            model_uuid: raw.model_uuid,
            mlflow_version: raw.mlflow_version,
        })
    }

    /// The config `_load_pyfunc` gets: the saved config with `overrides` applied, as
    /// `mlflow.pyfunc.load_model(model_config=...)` applies them
    /// (`_get_overridden_pyfunc_model_config`): `inference_env` (the JSON of
    /// `MLFLOW_PYFUNC_INFERENCE_CONFIG` in the model's environment) first, then
    /// `overrides`; only keys the saved config has are taken, the others are ignored with
    /// a warning, and a model saved without config takes none.
    pub fn model_config_with(
        &self,
        name: &str,
        overrides: Option<&serde_json::Map<String, serde_json::Value>>,
        inference_env: Option<&str>,
    ) -> Result<Option<serde_json::Value>> {
        let mut merged = serde_json::Map::new();
        if let Some(text) = inference_env {
            let bad = |message: String| Error::Call {
                model: name.to_owned(),
                message: format!("MLFLOW_PYFUNC_INFERENCE_CONFIG is not a JSON object: {message}"),
            };
            match serde_json::from_str(text).map_err(|e| bad(e.to_string()))? {
                serde_json::Value::Object(map) => merged.extend(map),
                other => return Err(bad(format!("got {other}"))),
            }
        }
        merged.extend(
            overrides
                .into_iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let saved = self.pyfunc.model_config.as_ref();
        if merged.is_empty() {
            return Ok(saved.cloned());
        }
        let keys = |keys: Vec<&String>| {
            keys.iter()
                .map(|k| format!("'{k}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let Some(serde_json::Value::Object(saved)) = saved.filter(|c| !is_empty_config(c)) else {
            log::warn!(
                "model '{name}': model_config {} ignored: the model was saved without a config (save it with model_config to allow one)",
                keys(merged.keys().collect())
            );
            return Ok(None);
        };
        let mut config = saved.clone();
        let ignored: Vec<&String> = merged.keys().filter(|k| !saved.contains_key(*k)).collect();
        if !ignored.is_empty() {
            log::warn!(
                "model '{name}': model_config {} ignored: not keys of the model's saved config ({})",
                keys(ignored),
                keys(saved.keys().collect())
            );
        }
        for (k, v) in &merged {
            if saved.contains_key(k) {
                config.insert(k.clone(), v.clone());
            }
        }
        Ok(Some(serde_json::Value::Object(config)))
    }

    /// The directory prepended to `sys.path`, if the model has one.
    pub fn code_dir(&self) -> Option<PathBuf> {
        self.pyfunc.code.as_ref().map(|c| self.dir.join(c))
    }

    /// The path handed to `_load_pyfunc`.
    pub fn data_path(&self) -> PathBuf {
        match &self.pyfunc.data {
            Some(data) => self.dir.join(data),
            None => self.dir.clone(),
        }
    }
}

/// True when a relative path from the manifest could leave the model directory.
pub(crate) fn escapes(value: &str) -> bool {
    let path = Path::new(value);
    path.is_absolute()
        || path
            .components()
            .try_fold(0i32, |depth, c| {
                let depth = match c {
                    Component::ParentDir => depth - 1,
                    Component::Normal(_) => depth + 1,
                    _ => depth,
                };
                (depth >= 0).then_some(depth)
            })
            .is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pyfunc::signature::{ColType, MlflowType};

    const SKLEARN: &str = r#"
artifact_path: model
flavors:
  python_function:
    env:
      conda: conda.yaml
      virtualenv: python_env.yaml
    loader_module: mlflow.sklearn
    model_path: model.pkl
    predict_fn: predict
    python_version: 3.10
  sklearn:
    code: null
    pickled_model: model.pkl
    serialization_format: cloudpickle
    sklearn_version: 1.5.0
mlflow_version: 2.14.1
model_uuid: 3c1f
saved_input_example_info:
  artifact_path: input_example.json
  type: dataframe
signature:
  inputs: '[{"type": "double", "name": "f0", "required": true}, {"type": "long", "name": "f1", "required": false}]'
  outputs: '[{"type": "tensor", "tensor-spec": {"dtype": "float64", "shape": [-1]}}]'
  params: '[{"name": "k", "type": "long", "default": 3, "shape": null}]'
"#;

    fn parse(text: &str) -> Result<MlModel> {
        MlModel::parse(text, PathBuf::from("/models/m"))
    }

    #[test]
    fn parses_sklearn_manifest() {
        let m = parse(SKLEARN).expect("valid manifest");
        assert_eq!(m.pyfunc.loader_module, "mlflow.sklearn");
        assert_eq!(m.pyfunc.python_version.as_deref(), Some("3.10"));
        assert_eq!(m.pyfunc.predict_fn.as_deref(), Some("predict"));
        assert_eq!(m.data_path(), PathBuf::from("/models/m"));
        assert!(m.flavors.contains_key("sklearn"));
        assert_eq!(m.mlflow_version.as_deref(), Some("2.14.1"));
        assert_eq!(m.model_uuid.as_deref(), Some("3c1f"));
        assert!(m.saved_input_example_info.is_some());
        let inputs = m.signature.inputs.expect("inputs");
        let Schema::Columns(cols) = &inputs else {
            panic!("expected a column schema")
        };
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[0].name.as_deref(), Some("f0"));
        assert_eq!(cols[0].ty, ColType::Primitive(MlflowType::Double));
        assert!(!cols[1].required);
        let outputs = m.signature.outputs.expect("outputs");
        assert!(matches!(&outputs, Schema::Tensors(t) if t[0].shape == vec![-1]));
        let params = m.signature.params.expect("params");
        assert_eq!(params[0].name, "k");
        assert_eq!(params[0].default, serde_json::json!(3));
    }

    #[test]
    fn model_without_pyfunc_flavor_is_rejected() {
        let err = parse("flavors:\n  sklearn:\n    pickled_model: m.pkl\n").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("no python_function flavor"), "{text}");
        assert!(text.contains("sklearn"), "{text}");
    }

    #[test]
    fn malformed_yaml_names_the_file() {
        let err = parse("flavors: [\n  python_function: {").unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("malformed MLmodel file /models/m/MLmodel"),
            "{text}"
        );
    }

    #[test]
    fn malformed_signature_json_names_the_field() {
        let text = "flavors:\n  python_function:\n    loader_module: m\nsignature:\n  inputs: '[{\"type\": '\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("signature.inputs"), "{err}");
    }

    #[test]
    fn unknown_column_type_is_rejected() {
        let text = "flavors:\n  python_function:\n    loader_module: m\nsignature:\n  inputs: '[{\"type\": \"quaternion\", \"name\": \"q\"}]'\n";
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("quaternion"), "{err}");
    }

    #[test]
    fn code_path_escaping_the_model_is_rejected() {
        for bad in ["../outside", "/etc", "code/../../x"] {
            let text =
                format!("flavors:\n  python_function:\n    loader_module: m\n    code: {bad}\n");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("escapes the model directory"), "{bad}: {err}");
        }
        let ok = "flavors:\n  python_function:\n    loader_module: m\n    code: code/../code\n    data: data/x\n";
        let m = parse(ok).expect("stays inside");
        assert_eq!(m.data_path(), PathBuf::from("/models/m/data/x"));
    }

    #[test]
    fn code_and_data_links_pointing_outside_are_rejected() {
        let outside = tempfile::tempdir().expect("tempdir");
        let model = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(model.path().join("inside")).expect("mkdir");
        std::os::unix::fs::symlink(outside.path(), model.path().join("code")).expect("link");
        std::os::unix::fs::symlink("inside", model.path().join("data")).expect("link");
        let manifest = |field: &str| {
            format!("flavors:\n  python_function:\n    loader_module: m\n    {field}\n")
        };
        let write = |text: String| std::fs::write(model.path().join("MLmodel"), text);
        write(manifest("code: code")).expect("write");
        let err = MlModel::from_path(model.path()).unwrap_err().to_string();
        assert!(
            err.contains("field 'code'") && err.contains("escapes"),
            "{err}"
        );
        // A link that stays inside the model directory is fine.
        write(manifest("data: data")).expect("write");
        assert!(MlModel::from_path(model.path()).is_ok());
    }

    #[test]
    fn params_defaults_of_the_wrong_type_are_malformed() {
        let text = r#"
flavors:
  python_function:
    loader_module: m
signature:
  params: '[{"name": "k", "type": "long", "default": "abc", "shape": null}]'
"#;
        let err = parse(text).unwrap_err().to_string();
        assert!(err.contains("the default of param 'k'"), "{err}");
    }

    proptest::proptest! {
        /// Mutated manifests never panic: they parse or fail with a normal error.
        #[test]
        fn mutated_manifests_parse_or_fail_cleanly(
            at in 0usize..4096,
            with in proptest::char::any(),
            cut in proptest::bool::ANY,
        ) {
            let mut text: Vec<char> = SKLEARN.chars().collect();
            let at = at % text.len();
            if cut {
                text.truncate(at);
            } else {
                text[at] = with;
            }
            let text: String = text.into_iter().collect();
            if let Ok(m) = parse(&text) {
                let _ = (m.code_dir(), m.data_path(), m.signature.inputs.map(|s| s.to_string()));
            }
        }

        /// Random signature JSON never panics, however deep.
        #[test]
        fn random_signature_json_parses_or_fails_cleanly(
            depth in 0usize..400,
            kind in proptest::sample::select(vec!["array", "object", "map"]),
        ) {
            let mut ty = r#"{"type": "double"}"#.to_owned();
            for _ in 0..depth {
                ty = match kind {
                    "array" => format!(r#"{{"type": "array", "items": {ty}}}"#),
                    "map" => format!(r#"{{"type": "map", "values": {ty}}}"#),
                    _ => format!(r#"{{"type": "object", "properties": {{"p": {ty}}}}}"#),
                };
            }
            let json = format!(r#"[{{"name": "x", "required": true, "type": {}}}]"#, &ty[9..ty.len() - 1]);
            let _ = Schema::from_json(&json).map(|s| s.to_string());
        }
    }

    #[test]
    fn missing_file_names_the_path() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = MlModel::from_path(dir.path()).unwrap_err().to_string();
        assert!(err.contains("cannot read MLmodel file"), "{err}");
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
    }
}
