//! The input side of a model call on Arrow: naming the frame's columns by call form and
//! enforcing a ColSpec signature (casts, required and optional columns) before Python
//! sees the data, with the rules of `spark_udf` and `mlflow.models.utils._enforce_schema`.
//!
//! The rules are stated in pandas dtypes (what Spark shows a pandas UDF); [`PandasDtype`]
//! is that view of an Arrow column.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, Int64Array, StructArray, make_array, new_null_array,
};
use arrow::buffer::NullBuffer;
use arrow::compute::{CastOptions, cast, cast_with_options};
use arrow::datatypes::{DataType, Field, Float64Type, Int64Type, TimeUnit};

use crate::error::{Error, Result};
use crate::pyfunc::signature::{ColSpec, ColType, MlflowType, ModelSignature, Schema};

/// The label of a frame column: a name, or an integer for an unnamed signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Label {
    Name(String),
    Index(i64),
}

impl fmt::Display for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Label::Name(n) => f.write_str(n),
            Label::Index(i) => write!(f, "{i}"),
        }
    }
}

/// How Python turns the columns into pandas (see `bridge.build_frame`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameMode {
    /// Columns from positional arguments.
    Args,
    /// The fields of one struct argument, all of simple types.
    Struct,
    /// The fields of one struct argument with a complex field: Spark's legacy conversion,
    /// where integer columns with nulls become pandas nullable extension dtypes.
    StructLegacy,
}

impl FrameMode {
    /// The name `bridge.build_frame` takes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Args => "args",
            Self::Struct => "struct",
            Self::StructLegacy => "struct_legacy",
        }
    }
}

/// The model input for one batch: labelled Arrow columns (`None` = an absent optional
/// signature column, which pandas fills with NaN objects).
#[derive(Debug, Clone)]
pub struct InputFrame {
    pub labels: Vec<Label>,
    pub arrays: Vec<Option<ArrayRef>>,
    pub mode: FrameMode,
    pub num_rows: usize,
}

impl InputFrame {
    /// The rows `offset..offset + len` of the frame.
    pub fn slice(&self, offset: usize, len: usize) -> Self {
        Self {
            labels: self.labels.clone(),
            arrays: self
                .arrays
                .iter()
                .map(|a| a.as_ref().map(|a| a.slice(offset, len)))
                .collect(),
            mode: self.mode,
            num_rows: len,
        }
    }
}

/// Builds the frame `spark_udf` passes to `predict` for UDF arguments `args`, then
/// enforces the model's ColSpec input schema on it (unless the schema came from type
/// hints: `PyFuncModel` leaves the input to the model's wrapper then).
pub fn build_input(
    model: &str,
    signature: &ModelSignature,
    args: &[ArrayRef],
    num_rows: usize,
) -> Result<InputFrame> {
    let inputs = signature.inputs.as_ref();
    let args: Vec<ArrayRef> = args.iter().map(normalize).collect::<Result<_>>()?;
    let frame = match args.as_slice() {
        [single] if matches!(single.data_type(), DataType::Struct(_)) => {
            struct_frame(model, single, num_rows)?
        }
        _ => positional_frame(model, inputs, args, num_rows)?,
    };
    match inputs {
        Some(Schema::Columns(cols)) if !signature.from_type_hints => enforce_columns(frame, cols)
            .map_err(|message| Error::InputSchema {
                model: model.to_owned(),
                message,
            }),
        _ => Ok(frame),
    }
}

fn struct_frame(model: &str, array: &ArrayRef, num_rows: usize) -> Result<InputFrame> {
    let s = array.as_struct();
    let names: Vec<&String> = s.fields().iter().map(|f| f.name()).collect();
    if let Some(dup) = names
        .iter()
        .enumerate()
        .find(|(i, n)| names[..*i].contains(n))
    {
        return Err(Error::Call {
            model: model.to_owned(),
            message: format!(
                "the struct argument has the field name '{}' twice; a model's input columns must be unique",
                dup.1
            ),
        });
    }
    let mut arrays = Vec::with_capacity(s.num_columns());
    for child in s.columns() {
        arrays.push(Some(with_parent_nulls(child, s)?));
    }
    let simple = s.fields().iter().all(|f| is_simple(f.data_type()));
    Ok(InputFrame {
        labels: s
            .fields()
            .iter()
            .map(|f| Label::Name(f.name().clone()))
            .collect(),
        arrays,
        mode: if simple {
            FrameMode::Struct
        } else {
            FrameMode::StructLegacy
        },
        num_rows,
    })
}

/// A struct field where the struct row itself is null is null too.
fn with_parent_nulls(child: &ArrayRef, parent: &StructArray) -> Result<ArrayRef> {
    let nulls = NullBuffer::union(parent.nulls(), child.nulls());
    if nulls.as_ref() == child.nulls() {
        return Ok(Arc::clone(child));
    }
    let data = child.to_data().into_builder().nulls(nulls).build()?;
    Ok(make_array(data))
}

fn positional_frame(
    model: &str,
    inputs: Option<&Schema>,
    args: Vec<ArrayRef>,
    num_rows: usize,
) -> Result<InputFrame> {
    let Some(schema) = inputs else {
        return Ok(InputFrame {
            labels: (0..args.len())
                .map(|i| Label::Name(i.to_string()))
                .collect(),
            arrays: args.into_iter().map(Some).collect(),
            mode: FrameMode::Args,
            num_rows,
        });
    };
    let labels = schema_labels(schema);
    if args.len() < schema.required_count() {
        return Err(Error::Call {
            model: model.to_owned(),
            message: missing_required_message(&labels, args.len()),
        });
    }
    // Extra arguments are dropped; absent trailing (optional) ones become NaN columns.
    let mut arrays: Vec<Option<ArrayRef>> = args.into_iter().take(labels.len()).map(Some).collect();
    arrays.resize(labels.len(), None);
    Ok(InputFrame {
        labels,
        arrays,
        mode: FrameMode::Args,
        num_rows,
    })
}

/// The frame labels a signature gives positional arguments: its input names, or the
/// integers 0, 1, ... for an unnamed signature.
pub fn schema_labels(schema: &Schema) -> Vec<Label> {
    schema
        .names()
        .iter()
        .enumerate()
        .map(|(i, n)| n.map_or(Label::Index(i as i64), |n| Label::Name(n.to_owned())))
        .collect()
}

/// The text of `spark_udf`'s error for too few positional arguments.
pub fn missing_required_message(labels: &[Label], given: usize) -> String {
    let names: Vec<String> = labels.iter().map(|l| format!("'{l}'")).collect();
    format!(
        "model input is missing required columns: expected {} input columns [{}], but the model received only {given} unnamed input columns (since the columns were passed unnamed they are expected to be in the order specified by the schema)",
        labels.len(),
        names.join(", ")
    )
}

fn enforce_columns(frame: InputFrame, specs: &[ColSpec]) -> Result<InputFrame, String> {
    let legacy = frame.mode == FrameMode::StructLegacy;
    let named = specs.iter().all(|s| s.name.is_some());
    let mut labels = Vec::new();
    let mut arrays = Vec::new();
    if named {
        let missing: Vec<&str> = specs
            .iter()
            .filter(|s| s.required)
            .filter_map(|s| s.name.as_deref())
            .filter(|n| !frame.labels.contains(&Label::Name((*n).to_owned())))
            .collect();
        if !missing.is_empty() {
            let extra: Vec<String> = frame
                .labels
                .iter()
                .filter(|l| {
                    !specs
                        .iter()
                        .any(|s| matches!(l, Label::Name(n) if s.name.as_ref() == Some(n)))
                })
                .map(|l| format!("'{l}'"))
                .collect();
            let mut message = format!("Model is missing inputs {missing:?}.");
            if !extra.is_empty() {
                message.push_str(&format!(
                    " Note that there were extra inputs: [{}].",
                    extra.join(", ")
                ));
            }
            return Err(message);
        }
        for spec in specs {
            let label = Label::Name(spec.name.clone().expect("named schema"));
            let Some(pos) = frame.labels.iter().position(|l| *l == label) else {
                continue; // an absent optional input
            };
            arrays.push(enforce_column(
                &label,
                frame.arrays[pos].as_ref(),
                &spec.ty,
                legacy,
                frame.num_rows,
            )?);
            labels.push(label);
        }
    } else {
        if frame.labels.len() < specs.len() {
            return Err(format!(
                "Model inference is missing inputs. The model signature declares {} inputs but the provided value only has {} inputs. Note: the inputs were not named in the signature so we can only verify their count.",
                specs.len(),
                frame.labels.len()
            ));
        }
        for (i, spec) in specs.iter().enumerate() {
            let label = frame.labels[i].clone();
            arrays.push(enforce_column(
                &label,
                frame.arrays[i].as_ref(),
                &spec.ty,
                legacy,
                frame.num_rows,
            )?);
            labels.push(label);
        }
    }
    Ok(InputFrame {
        labels,
        arrays,
        ..frame
    })
}

/// The pandas dtype Spark gives a column (before MLflow's `infer_objects`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PandasDtype {
    Bool,
    Int(u8),
    UInt(u8),
    Float(u8),
    /// pandas `Int64`-style extension dtype (legacy struct conversion with nulls).
    NullableInt {
        signed: bool,
        bytes: u8,
    },
    Datetime,
    Object,
    /// An object column of NaN (an absent optional input); `infer_objects` makes it float64.
    ObjectNan,
}

impl PandasDtype {
    fn of(dt: &DataType, has_nulls: bool, legacy: bool) -> Self {
        let int = |signed: bool, bytes: u8| match (has_nulls, legacy, signed) {
            (false, _, true) => Self::Int(bytes),
            (false, _, false) => Self::UInt(bytes),
            (true, true, _) => Self::NullableInt { signed, bytes },
            (true, false, _) => Self::Float(8),
        };
        match dt {
            DataType::Boolean if has_nulls => Self::Object,
            DataType::Boolean => Self::Bool,
            DataType::Int8 => int(true, 1),
            DataType::Int16 => int(true, 2),
            DataType::Int32 => int(true, 4),
            DataType::Int64 => int(true, 8),
            DataType::UInt8 => int(false, 1),
            DataType::UInt16 => int(false, 2),
            DataType::UInt32 => int(false, 4),
            DataType::UInt64 => int(false, 8),
            DataType::Float16 | DataType::Float32 => Self::Float(4),
            DataType::Float64 => Self::Float(8),
            DataType::Timestamp(_, _) => Self::Datetime,
            _ => Self::Object,
        }
    }

    /// numpy kind character and item size.
    fn kind(self) -> (char, u8) {
        match self {
            Self::Bool => ('b', 1),
            Self::Int(b) => ('i', b),
            Self::UInt(b) => ('u', b),
            Self::Float(b) => ('f', b),
            Self::NullableInt {
                signed: true,
                bytes,
            } => ('i', bytes),
            Self::NullableInt {
                signed: false,
                bytes,
            } => ('u', bytes),
            Self::Datetime => ('M', 8),
            Self::Object | Self::ObjectNan => ('O', 8),
        }
    }
}

impl fmt::Display for PandasDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bool => f.write_str("bool"),
            Self::Int(b) => write!(f, "int{}", *b as u32 * 8),
            Self::UInt(b) => write!(f, "uint{}", *b as u32 * 8),
            Self::Float(b) => write!(f, "float{}", *b as u32 * 8),
            Self::NullableInt { signed, bytes } => {
                write!(
                    f,
                    "{}Int{}",
                    if *signed { "" } else { "U" },
                    *bytes as u32 * 8
                )
            }
            Self::Datetime => f.write_str("datetime64[ns]"),
            Self::Object | Self::ObjectNan => f.write_str("object"),
        }
    }
}

/// numpy dtype of an MLflow type: (name, kind, item size, Arrow type it casts to).
fn numpy_target(t: MlflowType) -> (&'static str, char, u8, DataType) {
    match t {
        MlflowType::Boolean => ("bool", 'b', 1, DataType::Boolean),
        MlflowType::Integer => ("int32", 'i', 4, DataType::Int32),
        MlflowType::Long => ("int64", 'i', 8, DataType::Int64),
        MlflowType::Float => ("float32", 'f', 4, DataType::Float32),
        MlflowType::Double => ("float64", 'f', 8, DataType::Float64),
        MlflowType::String => ("<U0", 'U', 0, DataType::Utf8),
        MlflowType::Binary => ("|S0", 'S', 0, DataType::Binary),
        MlflowType::Datetime => (
            "datetime64[ns]",
            'M',
            8,
            DataType::Timestamp(TimeUnit::Nanosecond, None),
        ),
    }
}

/// `_enforce_mlflow_datatype` for one column. Nested ColSpec types (array, object, map,
/// any) are passed through unchanged.
fn enforce_column(
    label: &Label,
    array: Option<&ArrayRef>,
    ty: &ColType,
    legacy: bool,
    num_rows: usize,
) -> Result<Option<ArrayRef>, String> {
    let ColType::Primitive(t) = ty else {
        return Ok(array.cloned());
    };
    let t = *t;
    let text_like = matches!(t, MlflowType::String | MlflowType::Binary);
    let mut src = match array {
        Some(a) => PandasDtype::of(a.data_type(), a.null_count() > 0, legacy),
        None => PandasDtype::ObjectNan,
    };
    // `infer_objects`: an all-NaN object column becomes float64.
    let mut array = array.cloned();
    if src == PandasDtype::ObjectNan && !text_like {
        src = PandasDtype::Float(8);
        array = Some(new_null_array(&DataType::Float64, num_rows));
    }
    let (np_name, np_kind, np_size, target) = numpy_target(t);
    let keep = Ok(array.clone());
    // Strict: a value that does not convert is an error, never a silent NULL (as pandas'
    // `astype(..., errors="raise")`).
    let strict = CastOptions {
        safe: false,
        ..Default::default()
    };
    let cast_to = |to: &DataType| -> Result<Option<ArrayRef>, String> {
        let a = array.as_ref().expect("present column");
        cast_with_options(a, to, &strict).map(Some).map_err(|e| {
            format!(
                "Failed to convert column {label} from type {src} to {}: {e}",
                t.name()
            )
        })
    };
    let is_object = matches!(src, PandasDtype::Object | PandasDtype::ObjectNan);
    if text_like && is_object {
        return keep;
    }
    let (kind, size) = src.kind();
    if !text_like
        && kind == np_kind
        && (src != PandasDtype::Object)
        && size == np_size
        && !matches!(src, PandasDtype::NullableInt { .. })
    {
        return keep;
    }
    if t == MlflowType::Datetime && kind == 'M' {
        return keep;
    }
    if t == MlflowType::Datetime && is_object {
        return cast_to(&target);
    }
    // MLflow's decimal branch: numpy says `dtype('O') == decimal.Decimal`, so every object
    // column bound for double goes through `pandas.to_numeric`.
    if t == MlflowType::Double && is_object {
        return to_numeric(array.as_ref().expect("present column"))
            .map(Some)
            .map_err(|e| {
                format!("Failed to convert column {label} from type object to double: {e}")
            });
    }
    if t == MlflowType::Boolean && is_object {
        return keep;
    }
    let upcast = if kind == np_kind {
        size <= np_size
    } else if kind == 'u' && np_kind == 'i' {
        size < np_size
    } else if matches!(kind, 'i' | 'u') && t == MlflowType::Double {
        size <= 6
    } else {
        false
    };
    if upcast {
        if matches!(src, PandasDtype::NullableInt { .. }) && np_kind != 'f' {
            return Err(format!(
                "Failed to convert column {label} from type {src} to {np_name}: cannot convert NA to integer"
            ));
        }
        return cast_to(&target);
    }
    let values = array.as_ref();
    if src == PandasDtype::Int(8)
        && matches!(t, MlflowType::Float | MlflowType::Double)
        && values.is_some_and(|a| {
            a.as_primitive::<Int64Type>()
                .iter()
                .all(|v| matches!(v, None | Some(0 | 1)))
        })
    {
        return cast_to(&target);
    }
    let hint = if src == PandasDtype::Float(8)
        && matches!(np_kind, 'i' | 'u')
        && values.is_some_and(has_missing_integral_values)
    {
        " Hint: the type mismatch is likely caused by missing values. Integer columns in python can not represent missing values and are therefore encoded as floats. Declare integer columns that may have missing values as doubles (float64) in the model signature."
    } else {
        ""
    };
    Err(format!(
        "Incompatible input types for column {label}. Can not safely convert {src} to {np_name}.{hint}"
    ))
}

/// `pandas.to_numeric(errors="raise")` of the object column Spark makes of `array`:
/// bools and decimals become float64; strings parse (all integers and no missing values
/// give int64; "" is missing; "nan" is refused); anything else fails.
fn to_numeric(array: &ArrayRef) -> Result<ArrayRef, String> {
    match array.data_type() {
        DataType::Boolean
        | DataType::Null
        | DataType::Decimal128(_, _)
        | DataType::Decimal256(_, _) => cast(array, &DataType::Float64).map_err(|e| e.to_string()),
        DataType::Utf8 => parse_numbers(array.as_string::<i32>().iter()),
        DataType::Binary => parse_numbers(
            array
                .as_binary::<i32>()
                .iter()
                .map(|b| b.map(|b| std::str::from_utf8(b).unwrap_or("\u{fffd}"))),
        ),
        other => Err(format!("values of type {other} are not numbers")),
    }
}

fn parse_numbers<'a>(values: impl Iterator<Item = Option<&'a str>>) -> Result<ArrayRef, String> {
    let mut ints: Vec<Option<i64>> = Vec::new();
    let mut floats: Vec<Option<f64>> = Vec::new();
    let mut all_ints = true;
    for (i, v) in values.enumerate() {
        let text = v.map(str::trim).filter(|t| !t.is_empty());
        let Some(text) = text else {
            all_ints = false;
            ints.push(None);
            floats.push(None);
            continue;
        };
        let int = text.parse::<i64>().ok();
        let float = text
            .parse::<f64>()
            .ok()
            .filter(|_| !text.to_ascii_lowercase().contains("nan"))
            .ok_or_else(|| format!("Unable to parse string \"{text}\" at position {i}"))?;
        all_ints &= int.is_some();
        ints.push(int);
        floats.push(Some(float));
    }
    Ok(if all_ints {
        Arc::new(Int64Array::from(ints))
    } else {
        Arc::new(Float64Array::from(floats))
    })
}

/// True for a float64-presented column with missing values whose other values are integral.
fn has_missing_integral_values(array: &ArrayRef) -> bool {
    if array.data_type().is_integer() {
        return array.null_count() > 0;
    }
    let Ok(floats) = cast(array, &DataType::Float64) else {
        return false;
    };
    let floats = floats.as_primitive::<Float64Type>();
    let mut missing = floats.null_count() > 0;
    for v in floats.iter().flatten() {
        if v.is_nan() {
            missing = true;
        } else if v.fract() != 0.0 {
            return false;
        }
    }
    missing
}

/// Types PySpark converts to pandas with its numpy path.
fn is_simple(dt: &DataType) -> bool {
    dt.is_integer()
        || dt.is_floating()
        || matches!(
            dt,
            DataType::Null
                | DataType::Boolean
                | DataType::Binary
                | DataType::Date32
                | DataType::Date64
                | DataType::Timestamp(_, _)
        )
}

/// Arrow layouts DataFusion produces but Spark never shows Python (views, large offsets,
/// dictionaries) are cast to the plain ones, so Python sees what Spark would give it.
fn normalize(array: &ArrayRef) -> Result<ArrayRef> {
    let plain = plain_type(array.data_type());
    if &plain == array.data_type() {
        return Ok(Arc::clone(array));
    }
    Ok(cast(array, &plain)?)
}

fn plain_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary | DataType::FixedSizeBinary(_) => {
            DataType::Binary
        }
        DataType::Dictionary(_, value) => plain_type(value),
        DataType::List(f)
        | DataType::LargeList(f)
        | DataType::ListView(f)
        | DataType::LargeListView(f)
        | DataType::FixedSizeList(f, _) => DataType::List(Arc::new(Field::new(
            f.name(),
            plain_type(f.data_type()),
            true,
        ))),
        DataType::Struct(fields) => DataType::Struct(
            fields
                .iter()
                .map(|f| Field::new(f.name(), plain_type(f.data_type()), true))
                .collect(),
        ),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{
        BooleanArray, Float32Array, Float64Array, Int32Array, Int64Array, StringArray,
    };

    fn cols(json: &str) -> Schema {
        Schema::from_json(json).expect("valid schema")
    }

    fn signature(inputs: Schema) -> ModelSignature {
        ModelSignature {
            inputs: Some(inputs),
            ..Default::default()
        }
    }

    fn arr<A: Array + 'static>(a: A) -> ArrayRef {
        Arc::new(a)
    }

    fn xyz() -> Schema {
        cols(
            r#"[{"type": "double", "name": "x"}, {"type": "long", "name": "y"}, {"type": "string", "name": "z", "required": false}]"#,
        )
    }

    #[test]
    fn positional_args_take_signature_names_and_upcast() {
        let args = [
            arr(Float32Array::from(vec![0.5f32])),
            arr(Int32Array::from(vec![1])),
            arr(StringArray::from(vec!["a"])),
        ];
        let f = build_input("m", &signature(xyz()), &args, 1).expect("enforced");
        assert_eq!(
            f.labels,
            vec![
                Label::Name("x".into()),
                Label::Name("y".into()),
                Label::Name("z".into())
            ]
        );
        let types: Vec<_> = f
            .arrays
            .iter()
            .map(|a| a.as_ref().expect("present").data_type().clone())
            .collect();
        assert_eq!(
            types,
            vec![DataType::Float64, DataType::Int64, DataType::Utf8]
        );
    }

    #[test]
    fn long_to_double_is_refused_unless_zero_or_one() {
        let bad = [
            arr(Int64Array::from(vec![5])),
            arr(Int64Array::from(vec![1])),
        ];
        let err = build_input("m", &signature(xyz()), &bad, 1)
            .expect_err("unsafe")
            .to_string();
        assert!(
            err.contains(
                "Incompatible input types for column x. Can not safely convert int64 to float64"
            ),
            "{err}"
        );
        let ok = [
            arr(Int64Array::from(vec![0, 1])),
            arr(Int64Array::from(vec![1, 2])),
        ];
        let f = build_input("m", &signature(xyz()), &ok, 2).expect("0/1 allowed");
        assert_eq!(
            f.arrays[0].as_ref().expect("x").data_type(),
            &DataType::Float64
        );
    }

    #[test]
    fn nullable_int_to_long_fails_with_a_hint() {
        let args = [
            arr(Float64Array::from(vec![1.0])),
            arr(Int64Array::from(vec![Some(1), None])),
        ];
        let err = build_input("m", &signature(xyz()), &args, 2)
            .expect_err("nulls")
            .to_string();
        assert!(
            err.contains("Can not safely convert float64 to int64"),
            "{err}"
        );
        assert!(err.contains("missing values"), "{err}");
    }

    #[test]
    fn too_few_positional_args_is_an_error_naming_the_columns() {
        let args = [arr(Float64Array::from(vec![1.0]))];
        let err = build_input("m", &signature(xyz()), &args, 1)
            .expect_err("missing")
            .to_string();
        assert!(err.contains("missing required columns"), "{err}");
        assert!(err.contains("'y'"), "{err}");
    }

    #[test]
    fn absent_optional_string_column_stays_a_nan_object_column() {
        let args = [
            arr(Float64Array::from(vec![1.0])),
            arr(Int64Array::from(vec![1])),
        ];
        let f = build_input("m", &signature(xyz()), &args, 1).expect("optional");
        assert_eq!(f.labels.len(), 3);
        assert!(f.arrays[2].is_none());
    }

    #[test]
    fn struct_form_reorders_drops_extras_and_reports_missing() {
        let s = StructArray::from(vec![
            (
                Arc::new(Field::new("z", DataType::Utf8, true)),
                arr(StringArray::from(vec!["a"])),
            ),
            (
                Arc::new(Field::new("extra", DataType::Boolean, true)),
                arr(BooleanArray::from(vec![true])),
            ),
            (
                Arc::new(Field::new("y", DataType::Int64, true)),
                arr(Int64Array::from(vec![2])),
            ),
            (
                Arc::new(Field::new("x", DataType::Float64, true)),
                arr(Float64Array::from(vec![1.0])),
            ),
        ]);
        let f = build_input("m", &signature(xyz()), &[arr(s)], 1).expect("struct");
        assert_eq!(
            f.labels.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["x", "y", "z"]
        );
        let s = StructArray::from(vec![(
            Arc::new(Field::new("x", DataType::Float64, true)),
            arr(Float64Array::from(vec![1.0])),
        )]);
        let err = build_input("m", &signature(xyz()), &[arr(s)], 1)
            .expect_err("missing y")
            .to_string();
        assert!(err.contains("Model is missing inputs [\"y\"]"), "{err}");
    }

    #[test]
    fn unnamed_signature_uses_integer_labels() {
        let s = cols(r#"[{"type": "double"}, {"type": "long"}]"#);
        let args = [
            arr(Int32Array::from(vec![1])),
            arr(Int64Array::from(vec![2])),
            arr(Int64Array::from(vec![3])),
        ];
        let f = build_input("m", &signature(s), &args, 1).expect("unnamed");
        assert_eq!(f.labels, vec![Label::Index(0), Label::Index(1)]);
        assert_eq!(
            f.arrays[0].as_ref().expect("0").data_type(),
            &DataType::Float64
        );
    }

    #[test]
    fn int_column_for_string_input_is_refused() {
        let s = cols(r#"[{"type": "string", "name": "s"}]"#);
        let err = build_input("m", &signature(s), &[arr(Int32Array::from(vec![1]))], 1)
            .expect_err("int")
            .to_string();
        assert!(err.contains("Can not safely convert int32 to <U0"), "{err}");
    }

    #[test]
    fn object_columns_for_double_inputs_go_through_to_numeric() {
        let s = signature(cols(r#"[{"type": "double", "name": "a"}]"#));
        let enforce =
            |a: ArrayRef| build_input("m", &s, &[a], 3).map(|f| f.arrays[0].clone().expect("a"));
        let bools =
            enforce(arr(BooleanArray::from(vec![Some(true), None, Some(false)]))).expect("bools");
        assert_eq!(
            bools
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>(),
            [Some(1.0), None, Some(0.0)]
        );
        let ints = enforce(arr(StringArray::from(vec!["1", " 2 ", "-3"]))).expect("int strings");
        assert_eq!(ints.data_type(), &DataType::Int64);
        let floats =
            enforce(arr(StringArray::from(vec![Some("1.5"), Some(""), None]))).expect("floats");
        assert_eq!(
            floats
                .as_primitive::<Float64Type>()
                .iter()
                .collect::<Vec<_>>(),
            [Some(1.5), None, None]
        );
        let err = enforce(arr(StringArray::from(vec!["1", "nan", "x"])))
            .expect_err("nan")
            .to_string();
        assert!(
            err.contains("Unable to parse string \"nan\" at position 1"),
            "{err}"
        );
        // Without nulls a bool column is bool, not object: refused.
        assert!(enforce(arr(BooleanArray::from(vec![true, false, true]))).is_err());
    }

    #[test]
    fn unparseable_strings_for_datetime_inputs_fail() {
        let s = cols(r#"[{"type": "datetime", "name": "a"}]"#);
        let err = build_input(
            "m",
            &signature(s),
            &[arr(StringArray::from(vec!["2024-01-02", "e3"]))],
            2,
        )
        .expect_err("e3")
        .to_string();
        assert!(
            err.contains("Failed to convert column a from type object to datetime"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_struct_fields_are_refused() {
        let f = || Arc::new(Field::new("z", DataType::Float64, true));
        let s = StructArray::from(vec![
            (f(), arr(Float64Array::from(vec![1.0]))),
            (f(), arr(Float64Array::from(vec![2.0]))),
        ]);
        let err = build_input("m", &ModelSignature::default(), &[arr(s)], 1)
            .expect_err("dup")
            .to_string();
        assert!(err.contains("field name 'z' twice"), "{err}");
    }

    #[test]
    fn without_a_schema_columns_are_ordinals() {
        let args = [
            arr(Int32Array::from(vec![1])),
            arr(Float64Array::from(vec![2.0])),
        ];
        let f = build_input("m", &ModelSignature::default(), &args, 1).expect("no schema");
        assert_eq!(
            f.labels,
            vec![Label::Name("0".into()), Label::Name("1".into())]
        );
        assert_eq!(f.mode, FrameMode::Args);
    }
}
