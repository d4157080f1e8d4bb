"""mlfusion's PySpark paths return exactly what ``mlflow.pyfunc.spark_udf`` returns, on the
public conformance cases and the oracle cases that hold their own MLflow-saved model, in the
same Spark session, on the same DataFrame."""

from __future__ import annotations

import json
import math

import mlflow.pyfunc
import numpy as np
import pytest
from conftest import CONFORMANCE, ROOT
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import _parse_datatype_string

import mlfusion

ORACLE = ROOT / "testdata" / "oracle-cases"
CASE_DIRS = {p.parent.name: p.parent for p in CONFORMANCE.glob("*/case.json")}
for own_model in ("model_*", "index_*"):
    CASE_DIRS.update({p.parent.name: p.parent for p in ORACLE.glob(f"{own_model}/case.json")})
CASES = sorted(CASE_DIRS)


@pytest.fixture(scope="module")
def server(start_server, tmp_session):
    config = tmp_session / "conformance-models.yaml"
    entries = []
    for case in CASES:
        entry = f"  {case}:\n    uri: '{CASE_DIRS[case] / 'model'}'\n"
        model_config = json.loads((CASE_DIRS[case] / "case.json").read_text()).get("model_config")
        if model_config is not None:
            entry += f"    model_config: {json.dumps(model_config)}\n"
        entries.append(entry)
    config.write_text("models:\n" + "".join(entries))
    # One interpreter for all the case models: with a worker pool per model, the server
    # would start 76 x cores processes, each importing MLflow, before it listens. Worker
    # pools are checked against the same cases by the Rust conformance runner.
    return start_server("--config", str(config), "--workers", "0")


def normalize(value):
    """Rows as plain values, NaN comparable."""
    if isinstance(value, Row):
        return {k: normalize(v) for k, v in value.asDict().items()}
    if isinstance(value, dict):
        return {k: normalize(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def outcome(run):
    """("ok", (type, rows)) or ("error", message)."""
    try:
        return "ok", run()
    except Exception as e:  # noqa: BLE001 - any failure is an outcome to compare
        return "error", f"{type(e).__name__}: {e}"


def numpy_params(params, param_types):
    """A case's params with the numpy types it records (as ``tests/oracle/generate.py``)."""
    if not param_types:
        return params
    out = dict(params)
    for name, kind in param_types.items():
        if kind == "ndarray":
            out[name] = np.array(params[name])
        elif kind == "datetime64":
            out[name] = np.datetime64(params[name])
        else:
            out[name] = getattr(np, kind)(params[name])
    return out


def scored(df, column):
    out = df.select("idx", column.alias("out")).orderBy("idx")
    return out.schema["out"].dataType, [normalize(r.out) for r in out.collect()]


@pytest.mark.skipif(not CASES, reason=f"no conformance cases at {CONFORMANCE}")
@pytest.mark.parametrize("case_id", CASES)
def test_same_result_as_mlflow_spark_udf(case_id, spark, server):
    case_dir = CASE_DIRS[case_id]
    case = json.loads((case_dir / "case.json").read_text())
    result_type = case["result_type"]
    if case.get("result_type_object"):
        result_type = _parse_datatype_string(result_type)
    params = numpy_params(case["params"], case.get("param_types"))
    model_config = case.get("model_config")
    form, columns = case["call"]["form"], case["call"]["columns"]
    df = spark.read.parquet(str(case_dir / "input.parquet"))

    def apply(udf):
        if form == "struct":
            return udf(F.struct(*columns))
        return udf(*columns)

    theirs = outcome(
        lambda: scored(
            df,
            apply(
                mlflow.pyfunc.spark_udf(
                    spark,
                    str(case_dir / "model"),
                    result_type=result_type,
                    env_manager="local",
                    params=params,
                    model_config=model_config,
                )
            ),
        )
    )
    ours = outcome(
        lambda: scored(
            df,
            apply(
                mlfusion.spark_udf(
                    spark,
                    case_id,
                    result_type=result_type,
                    params=params,
                    server=server.location,
                    model_config=model_config,
                )
            ),
        )
    )
    assert theirs[0] == case["expect"], f"mlflow's spark_udf no longer gives the golden outcome: {theirs}"
    if case["expect"] == "error":
        assert ours[0] == "error", f"expected an error like {case['error_detail']!r}, got {ours}"
        assert f"'{case_id}'" in ours[1] or "AnalysisException" in ours[1], ours[1]
        return
    assert ours == theirs

    if form == "args":
        for predict in (mlfusion.predict_in_pandas, mlfusion.predict_in_arrow):
            out = outcome(
                lambda: scored(
                    predict(df, case_id, columns, "prediction", result_type, params, server=server.location),
                    F.col("prediction"),
                )
            )
            assert out == theirs, predict.__name__


def test_a_load_the_server_did_not_make_is_refused(spark, server):
    """A server loads each model once: a model_config or extra_env that would load it
    otherwise is refused when the UDF is made, naming the model and what it is served with."""
    same = mlfusion.spark_udf(spark, "model_006", model_config={"suffix": "!", "unknown": 2}, server=server.location)
    assert same.__name__ == "model_006"  # ignored keys load the same model, as in MLflow
    with pytest.raises(mlfusion.MlfusionError, match=r"'model_006'.*model_config \{.*\?.*served with \{"):
        mlfusion.spark_udf(spark, "model_006", model_config={"suffix": "?"}, server=server.location)
    with pytest.raises(mlfusion.MlfusionError, match=r"'model_006'.*extra_env .*served with \{\}"):
        mlfusion.spark_udf(spark, "model_006", extra_env={"LEVEL": "2"}, server=server.location)


@pytest.mark.parametrize("name", ["boolean", "tinyint", "byte", "smallint", "short", "int", "integer",
                                  "bigint", "long", "float", "real", "double", "string", "binary",
                                  "date", " Double ", "LONG", "timestamp", "decimal(10,2)"])
def test_result_types_are_what_sparks_parser_reads(spark, name):
    """One-word result types are read without the JVM's parser, as the parser reads them."""
    from pyspark.sql.functions import udf

    from mlfusion._spark import _spark_type

    assert _spark_type(spark, name, None) == udf(lambda x: x, returnType=name).returnType
