"""mlfusion's Python half: load a pyfunc model, call it on Arrow data, coerce the result.

Embedded in the Rust crate (``include_str!``) and imported once as ``_mlfusion_bridge``.
Rust does the planning (column naming, ColSpec enforcement, params validation, result type);
this module reproduces what ``mlflow.pyfunc.spark_udf`` does at the pandas level, without
pyspark: how Spark presents Arrow columns to pandas, TensorSpec enforcement, calling
``predict``, and coercing its output to the result type (``_predict_row_batch``), then
Spark's pandas -> Arrow conversion. Every function names MLflow / PySpark code it follows.
"""

import contextlib
import importlib
import inspect
import io
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa


# MLflow's PythonModel loader suggests adding type hints on every load; not actionable here.
warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")


# ---------------------------------------------------------------- model URIs
def resolve_model_uri(uri, cache_root):
    """A local directory holding the model at ``uri`` (any URI MLflow resolves).

    ``file:`` URIs are local paths. Everything else is downloaded once through
    ``mlflow.artifacts.download_artifacts`` into ``cache_root``, keyed by the resolved
    URI: registry aliases, stages and ``latest`` are pinned to a version first (so moving
    an alias loads the new version), and the tracking/registry server is part of the key.
    Returns ``(local_dir, resolved_uri, cached)``.
    """
    import hashlib
    import os
    import shutil
    import tempfile
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return url2pathname(parsed.path), uri, False

    import mlflow
    from mlflow.store.artifact.utils.models import get_model_name_and_version

    resolved = uri
    server = mlflow.get_tracking_uri()
    if parsed.scheme == "models":
        server = mlflow.get_registry_uri()
        pinned = get_model_name_and_version(mlflow.MlflowClient(), uri)
        resolved = "models:/" + "/".join(str(p) for p in pinned)
    elif parsed.scheme not in ("runs", "mlflow-artifacts"):
        server = ""  # s3://, gs://, https://...: the URI says it all
    key = hashlib.sha256(f"{server}\n{resolved}".encode()).hexdigest()[:24]
    local = os.path.join(cache_root, key)
    if os.path.exists(os.path.join(local, "MLmodel")):
        return local, resolved, True
    os.makedirs(cache_root, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".download-", dir=cache_root)
    try:
        downloaded = mlflow.artifacts.download_artifacts(artifact_uri=resolved, dst_path=staging)
        if not os.path.exists(os.path.join(downloaded, "MLmodel")):
            raise FileNotFoundError(f"{resolved} holds no MLmodel file (is it a model directory?)")
        with open(os.path.join(downloaded, ".mlfusion-source"), "w") as f:
            f.write(f"{uri}\n{resolved}\n{server}\n")
        try:
            os.rename(downloaded, local)
        except OSError:
            # Another process cached it first; theirs is as good as ours.
            if not os.path.exists(os.path.join(local, "MLmodel")):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return local, resolved, False


# ---------------------------------------------------------------- loading
def load_model(code_dir, loader_module, data_path, model_config_json):
    """The pyfunc load protocol: code dir on sys.path, import loader, ``_load_pyfunc``.

    What Python code prints on ``sys.stderr`` meanwhile (warnings, MLflow's log lines) is
    held back: after a failure it follows the error (a note of the exception), so the
    cause is what the user reads first; after a success it is printed."""
    with _held_stderr() as held:
        try:
            if code_dir is not None and code_dir not in sys.path:
                sys.path.insert(0, code_dir)
            module = importlib.import_module(loader_module)
            if model_config_json is not None:
                model = module._load_pyfunc(data_path, json.loads(model_config_json))
            else:
                model = module._load_pyfunc(data_path)
        except BaseException as e:
            printed = held.getvalue().strip()
            if printed:
                e.__notes__ = [*getattr(e, "__notes__", []), "printed while loading:\n" + printed]
            raise
    sys.stderr.write(held.getvalue())
    return model


@contextlib.contextmanager
def _held_stderr():
    held = io.StringIO()
    saved, sys.stderr = sys.stderr, held
    try:
        yield held
    finally:
        sys.stderr = saved


def accepts_params(predict_fn):
    """``PyFuncModel._predict``'s test: a ``params`` argument that is not ``**params``."""
    try:
        param = inspect.signature(predict_fn).parameters.get("params")
    except (TypeError, ValueError):
        return False
    return param is not None and param.kind != inspect.Parameter.VAR_KEYWORD


class Scorer:
    """A loaded model bound to one call configuration (result type, params, schema)."""

    def __init__(self, model, predict_fn_name, config_json):
        config = json.loads(config_json)
        self.predict_fn = getattr(model, predict_fn_name)
        self.pass_params = accepts_params(self.predict_fn)
        self.params = _params_to_python(config["params"], config["datetime_params"])
        self.result_type = config["result_type"]
        self.arrow_type = arrow_type(self.result_type)
        self.tensors = config["tensors"]  # None, or [[name, dtype, shape], ...]
        self.tensor_names = config["tensor_names"]
        self.nested = nested_enforcer(config["nested_inputs"])
        self.example = input_example(config["example_dir"])

    def predict(self, labels, arrays, frame_mode):
        """Score one batch: ``arrays`` (pyarrow, or None for an absent optional column)
        labelled by ``labels``; returns a pyarrow array of the result type and the
        nanoseconds spent in the model's own ``predict``."""
        model_input = _staged("preparing the input", self._model_input, labels, arrays, frame_mode)
        start = time.perf_counter_ns()
        if self.pass_params:
            result = self.predict_fn(model_input, params=self.params)
        else:
            result = self.predict_fn(model_input)
        predict_ns = time.perf_counter_ns() - start
        return _staged("converting the prediction", self._to_arrow, result), predict_ns

    def _model_input(self, labels, arrays, frame_mode):
        pdf = build_frame(labels, arrays, frame_mode)
        if self.tensors is not None:
            return enforce_tensor_schema(pdf, self.tensors, self.tensor_names)
        if self.nested is not None:
            pdf = self.nested(pdf)
        if self.example is not None:
            from mlflow.types.type_hints import _convert_dataframe_to_example_format

            return _convert_dataframe_to_example_format(pdf, self.example)
        return pdf

    def _to_arrow(self, result):
        return to_arrow(coerce_result(result, self.result_type), self.result_type, self.arrow_type)


def nested_enforcer(inputs_json):
    """MLflow's per-value enforcement of the nested (array, object, map, any) columns of a
    ColSpec input schema, as ``_enforce_named_col_schema`` / ``_enforce_unnamed_col_schema``
    apply it (``_enforce_type`` on each value: numpy scalars in objects, typed arrays);
    Rust has enforced the primitive columns. ``None`` when there are none."""
    if inputs_json is None:
        return None
    from mlflow.models.utils import _enforce_type
    from mlflow.types.schema import DataType, Schema

    schema = Schema.from_json(inputs_json)
    named = schema.has_input_names()
    nested = [(i, spec) for i, spec in enumerate(schema.inputs) if not isinstance(spec.type, DataType)]

    def enforce(pdf):
        for i, spec in nested:
            if named and spec.name not in pdf:
                continue  # an absent optional input
            column = spec.name if named else pdf.columns[i]
            required = spec.required if named else True
            pdf[column] = pd.Series(
                [_enforce_type(v, spec.type, required) for v in pdf[column]], index=pdf.index, name=column
            )
        return pdf

    return enforce


def input_example(model_dir):
    """The model's saved input example (``PyFuncModel.input_example``), for a model whose
    input type was taken from it; ``None`` otherwise."""
    if model_dir is None:
        return None
    from mlflow.models import Model

    return Model.load(model_dir).load_input_example(model_dir)


def _staged(stage, fn, *args):
    """Runs ``fn``, tagging an exception with the stage it came from (read by Rust)."""
    try:
        return fn(*args)
    except Exception as e:
        try:
            e.mlfusion_stage = stage
        except AttributeError:
            pass
        raise


def _params_to_python(params, datetime_params):
    if params is None:
        return None
    for name in datetime_params:
        if params.get(name) is not None:
            params[name] = np.datetime64(params[name]).item()
    return params


# ---------------------------------------------------------------- input side
_SIMPLE_CHECKS = (
    pa.types.is_null,
    pa.types.is_binary,
    pa.types.is_large_binary,
    pa.types.is_boolean,
    pa.types.is_floating,
    pa.types.is_integer,
    pa.types.is_date,
    pa.types.is_timestamp,
)


def _is_simple(t):
    """Types PySpark converts with its numpy path (``ArrowArrayToPandasConversion``)."""
    return any(check(t) for check in _SIMPLE_CHECKS)


def _naive_timestamps(ser):
    # Spark shows timestamps as tz-naive wall time in the session time zone (UTC here).
    if isinstance(ser.dtype, pd.DatetimeTZDtype):
        ser = ser.dt.tz_convert("UTC").dt.tz_localize(None)
    return ser.astype("datetime64[ns]")


# Timestamps as nanoseconds, as Spark shows them: pyarrow >= 13 must be asked (pandas 2
# has other units), older ones always convert to nanoseconds.
_NANOSECONDS = (
    {"coerce_temporal_nanoseconds": True} if int(pa.__version__.split(".")[0]) >= 13 else {}
)

_INT_EXT = {8: pd.Int8Dtype(), 16: pd.Int16Dtype(), 32: pd.Int32Dtype(), 64: pd.Int64Dtype()}
_UINT_EXT = {8: pd.UInt8Dtype(), 16: pd.UInt16Dtype(), 32: pd.UInt32Dtype(), 64: pd.UInt64Dtype()}


def column_to_pandas(arr, legacy):
    """One Arrow column as Spark hands it to a pandas UDF.

    ``legacy`` selects PySpark's ``convert_legacy`` path (used for complex types and for
    struct arguments with any complex field): integer columns with nulls become pandas
    nullable extension dtypes there, float64 otherwise.
    """
    t = arr.type
    if pa.types.is_struct(t):
        frame = struct_to_frame(arr)
        return frame.apply(lambda row: row.to_dict(), axis=1)
    if not legacy and _is_simple(t):
        ser = arr.to_pandas(**_NANOSECONDS)
        if pa.types.is_timestamp(t):
            ser = _naive_timestamps(ser)
        return ser
    ser = arr.to_pandas(
        date_as_object=True, integer_object_nulls=True, **_NANOSECONDS
    )
    has_nulls = arr.null_count > 0
    if pa.types.is_integer(t):
        if has_nulls:
            table = _INT_EXT if pa.types.is_signed_integer(t) else _UINT_EXT
            return ser.astype(table[t.bit_width])
        return ser.astype(t.to_pandas_dtype())
    if pa.types.is_boolean(t):
        return ser.astype(object) if has_nulls else ser.astype(bool)
    if pa.types.is_timestamp(t):
        return _naive_timestamps(ser)
    if pa.types.is_map(t):
        return ser.map(lambda v: None if v is None else dict(v))
    return ser


def _positional(ser):
    """``ser`` indexed 0..n-1, as a frame's columns are aligned; no copy when it is already
    (``reset_index`` copies the values)."""
    index = ser.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return ser
    return ser.reset_index(drop=True)


def struct_to_frame(arr):
    """A struct column as the DataFrame Spark passes for it (``df_for_struct``)."""
    fields = arr.flatten()
    legacy = not all(_is_simple(f.type) for f in fields)
    names = [f.name for f in arr.type]  # iteration, not .field(): pyarrow < 13 has none
    series = [column_to_pandas(f, legacy) for f in fields]
    frame = pd.concat([_positional(s) for s in series], axis=1)
    frame.columns = names
    return frame


def build_frame(labels, arrays, frame_mode):
    """The input frame of ``spark_udf``'s ``_predict_row_batch``.

    ``frame_mode`` is ``"args"`` (columns from positional arguments), or ``"struct"`` /
    ``"struct_legacy"`` (the fields of one struct argument; legacy when a field is complex).
    """
    n = next((len(a) for a in arrays if a is not None), 0)
    legacy = frame_mode == "struct_legacy"
    data = {}
    for label, arr in zip(labels, arrays):
        if arr is None:
            # pandas.DataFrame(data, columns=names) fills absent columns with NaN objects.
            data[label] = pd.Series([np.nan] * n, dtype=object)
        else:
            data[label] = _positional(column_to_pandas(arr, legacy))
    return pd.DataFrame(data, columns=list(labels))


def enforce_tensor_schema(pdf, tensors, named):
    """``mlflow.models.utils._enforce_tensor_schema`` for a DataFrame input."""
    if named:
        return {
            name: _reshape_column(name, pdf[name], dtype, tuple(shape))
            for name, dtype, shape in tensors
        }
    _, dtype, shape = tensors[0]
    shape = tuple(shape)
    if pdf.empty:
        raise ValueError("Input DataFrame is empty.")
    if len(pdf.columns) == 1:
        return _reshape_column(None, pdf[pdf.columns[0]], dtype, shape)
    if shape != (-1, len(pdf.columns)):
        raise ValueError(
            "This model contains a model signature with an unnamed input. Since the input data "
            "is a pandas DataFrame containing multiple columns, the input shape must be of the "
            f"structure (-1, number_of_dataframe_columns). Instead, the input DataFrame passed "
            f"had {len(pdf.columns)} columns and an input shape of {shape}."
        )
    return _check_tensor(pdf.to_numpy(), dtype, shape)


def _check_tensor(values, dtype, shape):
    if len(shape) != values.ndim or any(e not in (-1, a) for e, a in zip(shape, values.shape)):
        raise ValueError(f"Shape of input {values.shape} does not match expected shape {shape}.")
    if values.dtype != np.dtype(dtype):
        raise ValueError(f"dtype of input {values.dtype} does not match expected dtype {dtype}")
    return values


def _reshape_column(name, ser, dtype, shape):
    """``_reshape_and_cast_pandas_column_values``: C-order reshape of one frame column."""
    what = f"input {name}" if name else "the unnamed input"
    if shape[0] != -1 or -1 in shape[1:]:
        raise ValueError(
            "For pandas dataframe input, the first dimension of shape must be a variable "
            "dimension and other dimensions must be fixed, but in model signature the shape "
            f"of {what} is {shape}."
        )
    first = ser.iloc[0]
    shape_err = (
        f"The value in the Input DataFrame column '{name}' could not be converted to the "
        f"expected shape of: '{shape}'. Ensure that each of the input elements are of uniform "
        f"length and can be reshaped to above expected shape."
    )
    if np.isscalar(first):
        if shape in ((-1,), (-1, 1)):
            return _check_tensor(np.array(ser, dtype=dtype).reshape(shape), dtype, shape)
        raise ValueError(
            f"The input pandas dataframe column '{name or 0}' contains scalar values, which requires "
            f"the shape to be (-1,) or (-1, 1), but got tensor spec shape of {shape}."
        )
    if isinstance(first, (list, np.ndarray)):
        try:
            stacked = np.vstack(ser.tolist()).reshape(shape)
            # Lists carry no dtype and are cast; numpy arrays (Spark arrays) keep theirs.
            if isinstance(first, list):
                stacked = stacked.astype(dtype)
        except (ValueError, TypeError):
            raise ValueError(shape_err) from None
        if len(stacked) != len(ser):
            raise ValueError(shape_err)
        return stacked
    raise ValueError(
        "Because the model signature requires tensor spec input, the input pandas dataframe "
        "values should be either scalar value, python list containing scalar values or numpy "
        "array containing scalar values, other types are not supported."
    )


# ---------------------------------------------------------------- output side
_NP_TYPES = {
    "int": np.int32,
    "bigint": np.int64,
    "float": np.float32,
    "double": np.float64,
    "boolean": np.bool_,
    "string": np.str_,
}


def _is_none_or_nan(value):
    return value is None or isinstance(value, float) and np.isnan(value)


def _convert_array_values(values, rtype):
    """``mlflow.pyfunc._convert_array_values``."""
    elem = rtype["element"]
    kind = elem["kind"]
    if kind in _NP_TYPES:
        return None if _is_none_or_nan(values) else np.array(values, dtype=_NP_TYPES[kind])
    if kind == "array":
        return [_convert_array_values(v, elem) for v in values]
    if kind == "struct":
        return [_convert_struct_values(v, elem) for v in values]
    raise ValueError(f"Unsupported array type field with element type {kind} in Array type.")


def _convert_value(value, rtype):
    """``mlflow.pyfunc._convert_value_based_on_spark_type`` (map values)."""
    kind = rtype["kind"]
    if _is_none_or_nan(value):
        return None
    if kind in ("int", "bigint"):
        return int(value)
    if kind in ("float", "double"):
        return float(value)
    if kind == "boolean":
        return bool(value)
    if kind == "string":
        return str(value)
    if kind == "array":
        return [_convert_value(v, rtype["element"]) for v in value]
    if kind == "struct":
        return {n: _convert_value(value[n], t) for n, t in rtype["fields"]}
    if kind == "map":
        return {k: _convert_value(v, rtype["value"]) for k, v in value.items()}
    return value


def _convert_struct_values(result, rtype):
    """``mlflow.pyfunc._convert_struct_values``."""
    if not isinstance(result, (dict, pd.DataFrame)):
        raise TypeError(f"Unsupported result type {type(result)}, expected dict or pandas DataFrame")
    is_df = isinstance(result, pd.DataFrame)
    out = {}
    for name, ftype in rtype["fields"]:
        values = result[name]
        kind = ftype["kind"]
        if kind in _NP_TYPES:
            np_type = _NP_TYPES[kind]
            if is_df:
                if not all(_is_none_or_nan(v) for v in values):
                    values = values.astype(np_type)
            else:
                values = None if _is_none_or_nan(values) else np.array(values, dtype=np_type).item()
        elif kind == "array":
            if is_df:
                values = pd.Series(_convert_array_values(v, ftype) for v in values)
            else:
                values = _convert_array_values(values, ftype)
        elif kind == "struct":
            if is_df:
                values = pd.Series([_convert_struct_values(v, ftype) for v in values])
            else:
                if hasattr(values, "model_dump"):
                    values = values.model_dump()
                values = _convert_struct_values(values, ftype)
        elif kind == "map":
            if is_df:
                values = pd.Series([
                    {k: _convert_value(v, ftype["value"]) for k, v in value.items()}
                    for value in values
                ]).astype(object)
            else:
                values = {k: _convert_value(v, ftype["value"]) for k, v in values.items()}
        else:
            raise ValueError(f"Unsupported field type {kind} in struct type.")
        out[name] = values
    return pd.DataFrame(out) if is_df else out


def coerce_result(result, rtype):
    """The output half of ``spark_udf``'s ``_predict_row_batch``."""
    kind = rtype["kind"]
    if isinstance(result, dict):
        result = {k: list(v) for k, v in result.items()}

    if kind == "array" and rtype["element"]["kind"] == "array":
        return pd.Series(_convert_array_values(result, rtype))

    if kind == "struct":
        if isinstance(result, list) and len(result) > 0 and hasattr(result[0], "model_dump"):
            result = pd.DataFrame([r.model_dump() for r in result])
        else:
            result = pd.DataFrame(result)
        return _convert_struct_values(result, rtype)

    if not isinstance(result, pd.DataFrame):
        if kind == "map":
            result = pd.DataFrame([result])
        else:
            result = pd.DataFrame([result]) if np.isscalar(result) else pd.DataFrame(result)

    elem = rtype["element"] if kind == "array" else rtype
    ekind = elem["kind"]
    if ekind == "int":
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, np.int32]).astype(
            np.int32
        )
    elif ekind == "bigint":
        result = result.select_dtypes([np.byte, np.ubyte, np.short, np.ushort, int]).astype(
            np.int64
        )
    elif ekind == "float":
        result = result.select_dtypes(include=(np.number,)).astype(np.float32)
    elif ekind == "double":
        result = result.select_dtypes(include=(np.number,)).astype(np.float64)
    elif ekind == "boolean":
        result = result.select_dtypes([bool, np.bool_]).astype(bool)

    if len(result.columns) == 0:
        raise ValueError(
            "The model did not produce any values compatible with the requested type "
            f"'{_spark_name(elem)}'. Consider requesting udf with StringType or "
            "Arraytype(StringType)."
        )

    if ekind == "string":
        # DataFrame.map is pandas >= 2.1's name for applymap
        result = result.map(str) if hasattr(result, "map") else result.applymap(str)

    if kind == "array":
        return pd.Series(result.to_numpy().tolist())
    return result[result.columns[0]]


def _spark_name(rtype):
    return {
        "int": "IntegerType()",
        "bigint": "LongType()",
        "float": "FloatType()",
        "double": "DoubleType()",
        "boolean": "BooleanType()",
        "string": "StringType()",
    }.get(rtype["kind"], rtype["kind"])


# ---------------------------------------------------------------- to Arrow (Spark's side)
def arrow_type(rtype):
    kind = rtype["kind"]
    simple = {
        "int": pa.int32(),
        "bigint": pa.int64(),
        "float": pa.float32(),
        "double": pa.float64(),
        "boolean": pa.bool_(),
        "string": pa.string(),
        "binary": pa.binary(),
        "tinyint": pa.int8(),
        "smallint": pa.int16(),
        "date": pa.date32(),
        "timestamp": pa.timestamp("us", tz="UTC"),
        "timestamp_ntz": pa.timestamp("us"),
        "void": pa.null(),
    }
    if kind in simple:
        return simple[kind]
    if kind == "decimal":
        return pa.decimal128(rtype["precision"], rtype["scale"])
    if kind == "array":
        return pa.list_(pa.field("element", arrow_type(rtype["element"])))
    if kind == "map":
        return pa.map_(arrow_type(rtype["key"]), arrow_type(rtype["value"]))
    if kind == "struct":
        return pa.struct([pa.field(n, arrow_type(t)) for n, t in rtype["fields"]])
    raise ValueError(f"unsupported result type {kind}")


def _spark_converter(rtype):
    """PySpark's ``_create_converter_from_pandas`` for one value; ``None`` when values
    pass unchanged. NaN is left to ``pa.Array.from_pandas``, as Spark does."""
    kind = rtype["kind"]
    if kind == "array":
        elem = _spark_converter(rtype["element"])
        if elem is None:
            return list
        return lambda value: [elem(v) if v is not None else None for v in value]
    if kind == "map":
        conv = _spark_converter(rtype["value"])
        if conv is None:
            return lambda value: list(value.items())
        return lambda value: [(k, conv(v) if v is not None else None) for k, v in value.items()]
    if kind == "struct":
        fields = [(name, _spark_converter(t)) for name, t in rtype["fields"]]

        def convert_struct(value):
            if isinstance(value, dict):
                values = [value.get(name) for name, _ in fields]
            else:
                values = list(value)
            return {
                name: conv(v) if conv is not None and v is not None else v
                for (name, conv), v in zip(fields, values)
            }

        return convert_struct
    if kind == "timestamp":

        def convert_timestamp(value):
            ts = pd.Timestamp(value)
            return (ts if ts.tzinfo is not None else ts.tz_localize("UTC")).to_pydatetime()

        return convert_timestamp
    return None


def _spark_values(series, rtype):
    """The series as PySpark hands it to pyarrow for result type ``rtype``."""
    if rtype["kind"] == "timestamp":
        ser = pd.Series(series)
        if isinstance(ser.dtype, pd.DatetimeTZDtype):
            return ser.dt.tz_convert("UTC")
        return ser.astype("datetime64[ns]").dt.tz_localize("UTC")
    conv = _spark_converter(rtype)
    if conv is None:
        return series
    return series.apply(lambda v: conv(v) if v is not None else None)


def to_arrow(result, rtype, atype):
    """PySpark's ``create_arrow_array_from_pandas`` (and its struct variant) with
    ``safe=False``: missing values (None, NaN, NaT) become nulls."""
    if isinstance(result, pd.DataFrame):
        children = [
            to_arrow(result[name], ftype, atype[atype.get_field_index(name)].type)  # values, not index
            for name, ftype in rtype["fields"]
        ]
        return pa.StructArray.from_arrays(children, fields=list(atype))
    series = _spark_values(result, rtype)
    if rtype["kind"] == "string" and series.dtype == object:
        # Converting Python strings, pyarrow reads None, NaN, pd.NA and NaT as null, as
        # the mask would; values it cannot convert are left to the masked conversion.
        try:
            return pa.Array.from_pandas(series, type=atype, safe=False)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            pass
    # Extension arrays convert their own missing values.
    mask = None if hasattr(series.array, "__arrow_array__") else series.isnull()
    try:
        return pa.Array.from_pandas(series, mask=mask, type=atype, safe=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as e:
        raise ValueError(
            f"Exception thrown when converting pandas.Series ({series.dtype}) to Arrow Array "
            f"({atype}): {e}"
        ) from e
