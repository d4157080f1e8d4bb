"""PySpark entry points: ``spark_udf`` (an Arrow UDF), ``predict_in_pandas`` and
``predict_in_arrow`` (one Flight stream per Spark task)."""

from __future__ import annotations

import collections
import itertools
import os
from typing import TYPE_CHECKING, Iterator, List, Optional, Sequence, Tuple, Union

import pyarrow as pa

from mlfusion._client import (
    DEFAULT_SERVER,
    Connection,
    MlfusionError,
    ModelInfo,
    Servers,
    describe,
    exchange,
)

if TYPE_CHECKING:
    import pandas as pd


def spark_udf(
    spark,
    model: str,
    result_type=None,
    params: Optional[dict] = None,
    *,
    server: Servers = DEFAULT_SERVER,
    token: Optional[str] = None,
    tls_root_certs: Union[str, bytes, None] = None,
    model_config: Union[dict, str, None] = None,
    extra_env: Optional[dict] = None,
    on_error: Optional[str] = None,
):
    """``mlflow.pyfunc.spark_udf`` for a model served by ``mlfusion serve``.

    ``model`` is the name the server serves the model under; ``result_type`` (a Spark
    ``DataType`` or DDL string, default: the server's, then the model's) and ``params``
    (JSON-like values, numpy scalars and arrays, datetimes) are ``spark_udf``'s. The UDF
    takes columns positionally (``udf("a", "b")``), one struct (``udf(struct("a", "b"))``:
    the model sees the field names), or nothing for a model whose signature names its
    inputs. Results are ``spark_udf``'s. ``model_config`` (a dict, or a YAML file) and
    ``extra_env`` are checked against how the server loaded the model (a server loads
    each model once: serve one name per config). ``on_error`` (beyond ``spark_udf``):
    ``"raise"`` fails the task on a row whose prediction fails, ``"null"`` makes such
    rows NULL, ``"struct"`` returns ``struct<value, error>`` (default: the server's).
    """
    from pyspark.sql.functions import arrow_udf

    conn = Connection.of(server, token, tls_root_certs)
    ddl = _ddl(result_type)
    load = _load_options(model_config, extra_env)
    if on_error is not None:
        if on_error not in ("raise", "null", "struct"):
            raise MlfusionError(f"model '{model}': on_error must be 'raise', 'null' or 'struct', got {on_error!r}")
        load["on_error"] = on_error
    info = describe(conn, model, ddl, params, load)
    spark_type = _spark_type(spark, result_type, info)
    if info.metadata.get("on_error") == "struct" and result_type is not None:
        from pyspark.sql.types import StringType, StructField, StructType

        spark_type = StructType([StructField("value", spark_type), StructField("error", StringType())])
    arrow_type = _arrow_type(spark_type)

    rows = _batch_rows(info)

    def predict(iterator: Iterator[Tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        first = next(iterator, None)
        if first is None:
            return
        arrays = _as_tuple(first)
        call = "struct" if len(arrays) == 1 and isinstance(arrays[0], pa.StructArray) else "columns"
        # Spark's batches (spark.sql.execution.arrow.maxRecordsPerBatch, 10,000 rows by
        # default) go out coalesced to the server's batch size: an Arrow iterator UDF may
        # answer in batches of its own, as long as no more rows come out than went in.
        inputs = (_as_tuple(a) for a in itertools.chain([first], iterator))
        groups = _coalesce(inputs, lambda arrays: len(arrays[0]), rows)
        batches = (_udf_batch(_concat_columns(group), call) for group in groups)
        for result in exchange(conn, model, ddl, params, call, batches, arrow_type, _task(), load):
            yield _conform(result, arrow_type)

    udf = arrow_udf(predict, spark_type)

    def udf_with_default_cols(*args):
        if args:
            return udf(*args)
        return udf(*_default_columns(model, info))

    udf_with_default_cols.__name__ = model
    udf_with_default_cols.__doc__ = f"mlfusion model '{model}' returning {spark_type.simpleString()}"
    return udf_with_default_cols


def predict_in_pandas(
    df,
    model: str,
    input_cols: Sequence[str],
    output_col: str = "prediction",
    result_type=None,
    params: Optional[dict] = None,
    *,
    server: Servers = DEFAULT_SERVER,
    token: Optional[str] = None,
    tls_root_certs: Union[str, bytes, None] = None,
):
    """``df`` with ``output_col`` appended, through ``DataFrame.mapInPandas``: each Spark
    task streams all its batches through one ``DoExchange``. ``input_cols`` are passed
    positionally, as ``spark_udf(...)(*input_cols)``."""
    from pyspark.sql.pandas.types import to_arrow_schema
    from pyspark.sql.types import StructType

    scoring = _Scoring(df, model, input_cols, output_col, result_type, params, server, token, tls_root_certs)
    input_schema = to_arrow_schema(StructType([df.schema[c] for c in scoring.input_cols]))

    def to_batch(frame):
        return pa.RecordBatch.from_pandas(frame[scoring.input_cols], schema=input_schema, preserve_index=False)

    def predict(frames):
        for frame, result in scoring.score(frames, to_batch):
            frame[scoring.output_col] = _to_pandas(result)
            yield frame

    return df.mapInPandas(predict, scoring.output_schema)


def predict_in_arrow(
    df,
    model: str,
    input_cols: Sequence[str],
    output_col: str = "prediction",
    result_type=None,
    params: Optional[dict] = None,
    *,
    server: Servers = DEFAULT_SERVER,
    token: Optional[str] = None,
    tls_root_certs: Union[str, bytes, None] = None,
):
    """:func:`predict_in_pandas` on ``DataFrame.mapInArrow``: no pandas on the way."""
    scoring = _Scoring(df, model, input_cols, output_col, result_type, params, server, token, tls_root_certs)

    def predict(batches):
        for batch, result in scoring.score(batches, lambda b: b.select(scoring.input_cols)):
            yield batch.append_column(scoring.output_col, result)

    return df.mapInArrow(predict, scoring.output_schema)


class _Scoring:
    """What a ``mapIn*`` task needs: connection, model binding, schemas (picklable)."""

    def __init__(self, df, model, input_cols, output_col, result_type, params, server, token, tls_root_certs):
        from pyspark.sql.types import StructField, StructType

        missing = [c for c in input_cols if c not in df.columns]
        if missing:
            raise MlfusionError(
                f"model '{model}': input columns {missing} are not in the DataFrame "
                f"(columns: {df.columns})"
            )
        if output_col in df.columns:
            raise MlfusionError(f"model '{model}': output column '{output_col}' already exists")
        self.conn = Connection.of(server, token, tls_root_certs)
        self.model = model
        self.params = params
        self.input_cols = list(input_cols)
        self.output_col = output_col
        info = describe(self.conn, model, _ddl(result_type), params)
        self.rows = _batch_rows(info)
        self.ddl = _ddl(result_type)
        spark_type = _spark_type(df.sparkSession, result_type, info)
        self.arrow_type = _arrow_type(spark_type)
        self.output_schema = StructType(df.schema.fields + [StructField(output_col, spark_type)])

    def score(self, items, to_batch) -> Iterator[tuple]:
        """(item, its predictions as Spark's Arrow type) for each item of a task, streamed
        through one exchange in batches of about the server's batch size; ``to_batch``
        makes an item's input batch."""
        pending = collections.deque()

        def batches():
            for group in _coalesce(((item, to_batch(item)) for item in items), lambda i: i[1].num_rows, self.rows):
                pending.append(group)
                yield _concat_batches([batch for _, batch in group])

        results = exchange(
            self.conn, self.model, self.ddl, self.params, "columns", batches(), self.arrow_type, _task()
        )
        for result in results:
            result = _conform(result, self.arrow_type)
            offset = 0
            for item, batch in pending.popleft():
                yield item, result.slice(offset, batch.num_rows)
                offset += batch.num_rows


def _batch_rows(info: ModelInfo) -> int:
    """The rows the server scores best in one call (older servers do not say)."""
    return int(info.metadata.get("batch_rows") or 65_536)


def _coalesce(items, rows_of, target: int) -> Iterator[list]:
    """Consecutive ``items`` in groups of at least ``target`` rows (the last: what is left)."""
    group, rows = [], 0
    for item in items:
        group.append(item)
        rows += rows_of(item)
        if rows >= target:
            yield group
            group, rows = [], 0
    if group:
        yield group


def _concat_columns(group: List[Tuple[pa.Array, ...]]) -> Tuple[pa.Array, ...]:
    """The columns of several calls' arguments, each concatenated."""
    if len(group) == 1:
        return group[0]
    return tuple(pa.concat_arrays(list(column)) for column in zip(*group))


def _concat_batches(batches: List[pa.RecordBatch]) -> pa.RecordBatch:
    if len(batches) == 1:
        return batches[0]
    columns = _concat_columns([tuple(b.columns) for b in batches])
    return pa.RecordBatch.from_arrays(list(columns), schema=batches[0].schema)


def _load_options(model_config, extra_env) -> dict:
    """``model_config`` and ``extra_env`` as the protocol's command carries them."""
    load = {}
    if isinstance(model_config, (str, os.PathLike)):
        import yaml  # mlflow.pyfunc.spark_udf reads a model_config path as YAML too

        with open(model_config) as f:
            model_config = yaml.safe_load(f)
    if model_config is not None:
        load["model_config"] = dict(model_config)
    if extra_env is not None:
        load["extra_env"] = {str(k): str(v) for k, v in extra_env.items()}
    return load


def _ddl(result_type) -> Optional[str]:
    """The result type as the server's Spark DDL string."""
    if result_type is None or isinstance(result_type, str):
        return result_type
    return result_type.simpleString()


def _spark_type(spark, result_type, info: ModelInfo):
    """The Spark type of the UDF: the caller's, parsed as ``spark_udf`` parses it (``bool``
    is ``boolean``; Spark's own parser), else the type of the server's default result."""
    from pyspark.sql.functions import udf
    from pyspark.sql.pandas.types import from_arrow_type
    from pyspark.sql.types import DataType

    if isinstance(result_type, DataType):
        return result_type
    if result_type is None:
        return from_arrow_type(info.schema.field(0).type)
    ddl = "boolean" if result_type == "bool" else result_type
    simple = _simple_type(ddl)
    if simple is not None:
        return simple
    parsed = udf(lambda x: x, returnType=ddl).returnType
    if parsed.typeName() == "unparseddata":  # Spark 3.5 parses lazily
        return spark.range(0).select(udf(lambda x: x, returnType=ddl)("id")).schema[0].dataType
    return parsed


def _simple_type(ddl: str):
    """A one-word type name as Spark's DDL parser reads it (case-insensitive), without
    the parser: its first use in a session loads the JVM's SQL parser (~0.5 s)."""
    from pyspark.sql import types as T

    name = ddl.strip().lower()
    for names, make in [
        (("boolean",), T.BooleanType), (("tinyint", "byte"), T.ByteType),
        (("smallint", "short"), T.ShortType), (("int", "integer"), T.IntegerType),
        (("bigint", "long"), T.LongType), (("float", "real"), T.FloatType),
        (("double",), T.DoubleType), (("string",), T.StringType), (("binary",), T.BinaryType),
        (("date",), T.DateType),
    ]:
        if name in names:
            return make()
    return None


def _arrow_type(spark_type) -> pa.DataType:
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(spark_type, timezone="UTC")


def _conform(result: pa.Array, arrow_type: pa.DataType) -> pa.Array:
    """The server's array as Spark's Arrow type (same values; e.g. field nullability)."""
    return result if result.type == arrow_type else result.cast(arrow_type)


def _to_pandas(result: pa.Array) -> pd.Series:
    """A result column Spark's pandas converter turns back into exactly ``result``.

    Flat and struct types stay Arrow-backed (Spark takes them as they are). Spark
    converts arrays and maps element by element, where pyarrow reads a Python NaN as
    null: those become Python objects, a float NaN kept as a numpy float32 NaN.
    """
    import pandas as pd  # here: an Arrow UDF's Spark worker never imports pandas otherwise

    if not _has_list_or_map(result.type):
        return result.to_pandas(types_mapper=pd.ArrowDtype)
    return pd.Series([_nan_as_numpy(v, result.type) for v in result.to_pylist()], dtype=object)


def _has_list_or_map(t: pa.DataType) -> bool:
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_map(t):
        return True
    return pa.types.is_struct(t) and any(_has_list_or_map(f.type) for f in t)


def _nan_as_numpy(value, t: pa.DataType):
    if value is None:
        return None
    if pa.types.is_floating(t):
        import numpy as np

        return np.float32(value) if value != value else value
    if pa.types.is_map(t):
        return [(k, _nan_as_numpy(v, t.item_type)) for k, v in value]
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return [_nan_as_numpy(v, t.value_type) for v in value]
    if pa.types.is_struct(t):
        return {f.name: _nan_as_numpy(value[f.name], f.type) for f in t}
    return value


def _task() -> int:
    from pyspark import TaskContext

    context = TaskContext.get()
    return context.partitionId() if context is not None else 0


def _as_tuple(arrays) -> Tuple[pa.Array, ...]:
    return (arrays,) if isinstance(arrays, (pa.Array, pa.ChunkedArray)) else tuple(arrays)


def _udf_batch(arrays: Tuple[pa.Array, ...], call: str) -> pa.RecordBatch:
    if call == "struct":
        return pa.RecordBatch.from_struct_array(arrays[0])
    return pa.RecordBatch.from_arrays(list(arrays), names=[f"c{i}" for i in range(len(arrays))])


def _default_columns(model: str, info: ModelInfo) -> List[str]:
    """The columns of a zero-argument call: the signature's input names (as spark_udf)."""
    count = info.metadata.get("input_count") or 0
    names = info.metadata.get("input_names")
    if count and (info.metadata.get("required_inputs") or 0) < count:
        raise MlfusionError(
            f"model '{model}': Cannot apply UDF without column names specified when"
            " model signature contains optional columns."
        )
    if count and names:
        return names
    if count:
        raise MlfusionError(
            f"model '{model}': Cannot apply udf because no column names specified. The udf"
            f" expects {count} columns with types: {info.metadata.get('inputs')}. Input column"
            " names could not be inferred from the model signature (column names not found)."
        )
    raise MlfusionError(
        f"model '{model}': Attempting to apply udf on zero columns because no column names"
        " were specified as arguments or inferred from the model signature."
    )
