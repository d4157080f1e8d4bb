//! MLflow model signatures: column and tensor schemas, and the params schema.
//!
//! In `MLmodel` each part of the signature is a JSON string holding a list of specs;
//! see <https://mlflow.org/docs/latest/model/signatures.html>.

use std::fmt;

use serde_json::Value;

/// `signature:` of an MLmodel file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelSignature {
    pub inputs: Option<Schema>,
    /// The inputs as written in `MLmodel` (MLflow's own enforcement of nested types reads it).
    pub inputs_json: Option<String>,
    pub outputs: Option<Schema>,
    pub params: Option<Vec<ParamSpec>>,
    /// The inputs were inferred from `predict`'s type hints (`is_signature_from_type_hint`):
    /// MLflow enforces no input schema then, the model's wrapper converts the frame itself.
    pub from_type_hints: bool,
    /// The input's Python type was taken from the input example (`type_hint_from_example`):
    /// after enforcement, MLflow converts the frame to the example's form.
    pub from_example_type: bool,
}

/// An input or output schema: all columns or all tensors.
#[derive(Debug, Clone, PartialEq)]
pub enum Schema {
    Columns(Vec<ColSpec>),
    Tensors(Vec<TensorSpec>),
}

/// The primitive MLflow data types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MlflowType {
    Boolean,
    Integer,
    Long,
    Float,
    Double,
    String,
    Binary,
    Datetime,
}

/// The type of a column: a primitive or one of the nested MLflow types.
#[derive(Debug, Clone, PartialEq)]
pub enum ColType {
    Primitive(MlflowType),
    Array(Box<ColType>),
    Object(Vec<Property>),
    Map(Box<ColType>),
    Any,
}

/// A field of an `object` column type.
#[derive(Debug, Clone, PartialEq)]
pub struct Property {
    pub name: String,
    pub ty: ColType,
    pub required: bool,
}

/// One column of a column-based schema.
#[derive(Debug, Clone, PartialEq)]
pub struct ColSpec {
    pub name: Option<String>,
    pub ty: ColType,
    pub required: bool,
}

/// One tensor of a tensor-based schema.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorSpec {
    pub name: Option<String>,
    /// numpy dtype name, e.g. `float32`.
    pub dtype: String,
    /// Shape; `-1` marks a variable dimension.
    pub shape: Vec<i64>,
}

/// One declared inference parameter.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSpec {
    pub name: String,
    pub ty: MlflowType,
    pub default: Value,
    /// `None` for a scalar, `Some([-1])` for a 1-D list.
    pub shape: Option<Vec<i64>>,
}

impl MlflowType {
    /// Parses an MLflow type name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "boolean" => Self::Boolean,
            "integer" => Self::Integer,
            "long" => Self::Long,
            "float" => Self::Float,
            "double" => Self::Double,
            "string" => Self::String,
            "binary" => Self::Binary,
            "datetime" => Self::Datetime,
            _ => return None,
        })
    }

    /// The MLflow name of the type.
    pub fn name(self) -> &'static str {
        match self {
            Self::Boolean => "boolean",
            Self::Integer => "integer",
            Self::Long => "long",
            Self::Float => "float",
            Self::Double => "double",
            Self::String => "string",
            Self::Binary => "binary",
            Self::Datetime => "datetime",
        }
    }

    /// The MLflow type of a numpy dtype name (as TensorSpec dtypes are written).
    pub fn from_numpy(dtype: &str) -> Option<Self> {
        Some(match dtype {
            "bool" => Self::Boolean,
            "int32" => Self::Integer,
            "int64" => Self::Long,
            "float32" => Self::Float,
            "float64" => Self::Double,
            "str" => Self::String,
            "bytes" => Self::Binary,
            "datetime64[ns]" => Self::Datetime,
            _ => return None,
        })
    }
}

impl Schema {
    /// Parses the JSON list MLflow stores in `signature.inputs` / `signature.outputs`.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let items: Vec<Value> =
            serde_json::from_str(text).map_err(|e| crate::limits::json_error(&e))?;
        let tensors = items
            .iter()
            .filter(|i| i.get("type").and_then(Value::as_str) == Some("tensor"))
            .count();
        if tensors > 0 && tensors != items.len() {
            return Err("a schema must be all ColSpecs or all TensorSpecs".into());
        }
        let schema = if tensors > 0 {
            Schema::Tensors(items.iter().map(parse_tensor).collect::<Result<_, _>>()?)
        } else {
            Schema::Columns(items.iter().map(parse_column).collect::<Result<_, _>>()?)
        };
        let named = schema.names().iter().filter(|n| n.is_some()).count();
        if named != 0 && named != schema.len() {
            return Err("a schema must be all named or all unnamed".into());
        }
        Ok(schema)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        match self {
            Schema::Columns(c) => c.len(),
            Schema::Tensors(t) => t.len(),
        }
    }

    /// True when the schema declares nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The entries' names in order (`None` for unnamed entries).
    pub fn names(&self) -> Vec<Option<&str>> {
        match self {
            Schema::Columns(c) => c.iter().map(|c| c.name.as_deref()).collect(),
            Schema::Tensors(t) => t.iter().map(|t| t.name.as_deref()).collect(),
        }
    }

    /// True when every entry is named.
    pub fn has_names(&self) -> bool {
        !self.is_empty() && self.names().iter().all(Option::is_some)
    }

    /// Number of required entries (tensors are always required).
    pub fn required_count(&self) -> usize {
        match self {
            Schema::Columns(c) => c.iter().filter(|c| c.required).count(),
            Schema::Tensors(t) => t.len(),
        }
    }
}

fn parse_column(item: &Value) -> Result<ColSpec, String> {
    Ok(ColSpec {
        name: item.get("name").and_then(Value::as_str).map(str::to_owned),
        ty: parse_col_type(item)?,
        required: item
            .get("required")
            .and_then(Value::as_bool)
            .unwrap_or(true),
    })
}

fn parse_col_type(item: &Value) -> Result<ColType, String> {
    let ty = item
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| format!("spec without a 'type': {item}"))?;
    Ok(match ty {
        "array" => ColType::Array(Box::new(parse_col_type(
            item.get("items").ok_or("array spec without 'items'")?,
        )?)),
        "map" => ColType::Map(Box::new(parse_col_type(
            item.get("values").ok_or("map spec without 'values'")?,
        )?)),
        "object" => {
            let props = item
                .get("properties")
                .and_then(Value::as_object)
                .ok_or("object spec without 'properties'")?;
            ColType::Object(
                props
                    .iter()
                    .map(|(name, p)| {
                        Ok(Property {
                            name: name.clone(),
                            ty: parse_col_type(p)?,
                            required: p.get("required").and_then(Value::as_bool).unwrap_or(true),
                        })
                    })
                    .collect::<Result<_, String>>()?,
            )
        }
        "any" => ColType::Any,
        other => ColType::Primitive(
            MlflowType::from_name(other).ok_or_else(|| format!("unknown MLflow type '{other}'"))?,
        ),
    })
}

fn parse_tensor(item: &Value) -> Result<TensorSpec, String> {
    let spec = item
        .get("tensor-spec")
        .ok_or_else(|| format!("tensor without 'tensor-spec': {item}"))?;
    let dtype = spec
        .get("dtype")
        .and_then(Value::as_str)
        .ok_or("tensor-spec without 'dtype'")?;
    let shape = spec
        .get("shape")
        .and_then(Value::as_array)
        .ok_or("tensor-spec without 'shape'")?
        .iter()
        .map(|d| {
            d.as_i64()
                .ok_or_else(|| format!("bad tensor dimension {d}"))
        })
        .collect::<Result<_, _>>()?;
    Ok(TensorSpec {
        name: item.get("name").and_then(Value::as_str).map(str::to_owned),
        dtype: dtype.to_owned(),
        shape,
    })
}

impl ParamSpec {
    /// Parses the JSON list MLflow stores in `signature.params`.
    pub fn list_from_json(text: &str) -> Result<Vec<Self>, String> {
        let items: Vec<Value> =
            serde_json::from_str(text).map_err(|e| crate::limits::json_error(&e))?;
        items
            .iter()
            .map(|item| {
                let name = item
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("param without a 'name': {item}"))?;
                // `dtype` is the key older MLflow versions wrote.
                let ty = item
                    .get("type")
                    .or_else(|| item.get("dtype"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("param '{name}' without a 'type'"))?;
                let ty = MlflowType::from_name(ty)
                    .ok_or_else(|| format!("param '{name}' has unsupported type '{ty}'"))?;
                let shape = match item.get("shape") {
                    None | Some(Value::Null) => None,
                    Some(Value::Array(dims)) => Some(
                        dims.iter()
                            .map(|d| d.as_i64().ok_or_else(|| format!("bad dimension {d}")))
                            .collect::<Result<_, _>>()?,
                    ),
                    Some(other) => return Err(format!("param '{name}' has bad shape {other}")),
                };
                Ok(ParamSpec {
                    name: name.to_owned(),
                    ty,
                    default: item.get("default").cloned().unwrap_or(Value::Null),
                    shape,
                })
            })
            .collect()
    }
}

impl fmt::Display for ColType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColType::Primitive(t) => f.write_str(t.name()),
            ColType::Array(e) => write!(f, "array<{e}>"),
            ColType::Map(v) => write!(f, "map<string, {v}>"),
            ColType::Any => f.write_str("any"),
            ColType::Object(props) => {
                let props: Vec<String> = props
                    .iter()
                    .map(|p| format!("{}: {}", p.name, p.ty))
                    .collect();
                write!(f, "object<{}>", props.join(", "))
            }
        }
    }
}

/// MLflow's readable form: `[x: double, y: long (optional)]`, `[t: tensor float32 (-1, 2)]`.
impl fmt::Display for Schema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let types: Vec<String> = match self {
            Schema::Columns(cols) => cols
                .iter()
                .map(|c| {
                    let optional = if c.required { "" } else { " (optional)" };
                    format!("{}{optional}", c.ty)
                })
                .collect(),
            Schema::Tensors(tensors) => tensors
                .iter()
                .map(|t| {
                    let dims: Vec<String> = t.shape.iter().map(i64::to_string).collect();
                    format!("tensor {} ({})", t.dtype, dims.join(", "))
                })
                .collect(),
        };
        let entries: Vec<String> = self
            .names()
            .into_iter()
            .zip(types)
            .map(|(name, ty)| match name {
                Some(name) => format!("{name}: {ty}"),
                None => ty,
            })
            .collect();
        write!(f, "[{}]", entries.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_column_types() {
        let s = Schema::from_json(
            r#"[{"type": "array", "items": {"type": "double"}, "name": "a"},
                {"type": "object", "name": "o", "properties": {"x": {"type": "long", "required": false}}},
                {"type": "map", "values": {"type": "string"}, "name": "m"},
                {"type": "any", "name": "z", "required": false}]"#,
        )
        .expect("valid");
        let Schema::Columns(c) = s else { panic!() };
        assert_eq!(
            c[0].ty,
            ColType::Array(Box::new(ColType::Primitive(MlflowType::Double)))
        );
        assert!(matches!(&c[1].ty, ColType::Object(p) if p[0].name == "x" && !p[0].required));
        assert_eq!(
            c[2].ty,
            ColType::Map(Box::new(ColType::Primitive(MlflowType::String)))
        );
        assert!(!c[3].required);
    }

    #[test]
    fn mixed_or_partly_named_schemas_are_rejected() {
        let mixed = r#"[{"type": "double"}, {"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1]}}]"#;
        assert!(Schema::from_json(mixed).is_err());
        let partly = r#"[{"type": "double", "name": "a"}, {"type": "double"}]"#;
        assert!(Schema::from_json(partly).is_err());
    }

    #[test]
    fn schemas_print_readably() {
        let s = Schema::from_json(
            r#"[{"type": "double", "name": "x"}, {"type": "array", "items": {"type": "long"}, "name": "y", "required": false}]"#,
        )
        .expect("valid");
        assert_eq!(s.to_string(), "[x: double, y: array<long> (optional)]");
        let t = Schema::from_json(
            r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2]}}]"#,
        )
        .expect("valid");
        assert_eq!(t.to_string(), "[tensor float32 (-1, 2)]");
    }

    #[test]
    fn tensor_specs_keep_dtype_and_shape() {
        let s = Schema::from_json(
            r#"[{"type": "tensor", "tensor-spec": {"dtype": "float32", "shape": [-1, 2, 3]}, "name": "t"}]"#,
        )
        .expect("valid");
        assert_eq!(s.names(), vec![Some("t")]);
        let Schema::Tensors(t) = s else { panic!() };
        assert_eq!(t[0].dtype, "float32");
        assert_eq!(t[0].shape, vec![-1, 2, 3]);
    }

    #[test]
    fn params_accept_the_legacy_dtype_key() {
        let p = ParamSpec::list_from_json(
            r#"[{"name": "a", "dtype": "double", "default": 1.5, "shape": null},
                {"name": "b", "type": "boolean", "default": [true], "shape": [-1]}]"#,
        )
        .expect("valid");
        assert_eq!(p[0].ty, MlflowType::Double);
        assert_eq!(p[1].shape, Some(vec![-1]));
    }
}
