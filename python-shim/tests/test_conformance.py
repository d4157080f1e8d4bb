"""mlfusion's PySpark paths return exactly what ``mlflow.pyfunc.spark_udf`` returns, on the
public conformance cases, in the same Spark session, on the same DataFrame."""

from __future__ import annotations

import json
import math

import mlflow.pyfunc
import pytest
from conftest import CONFORMANCE
from pyspark.sql import Row
from pyspark.sql import functions as F
from pyspark.sql.types import _parse_datatype_string

import mlfusion

CASES = sorted(p.parent.name for p in CONFORMANCE.glob("*/case.json"))


@pytest.fixture(scope="module")
def server(start_server, tmp_session):
    config = tmp_session / "conformance-models.yaml"
    config.write_text(
        "models:\n" + "".join(f"  {case}:\n    uri: '{CONFORMANCE / case / 'model'}'\n" for case in CASES)
    )
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


def scored(df, column):
    out = df.select("idx", column.alias("out")).orderBy("idx")
    return out.schema["out"].dataType, [normalize(r.out) for r in out.collect()]


@pytest.mark.skipif(not CASES, reason=f"no conformance cases at {CONFORMANCE}")
@pytest.mark.parametrize("case_id", CASES)
def test_same_result_as_mlflow_spark_udf(case_id, spark, server):
    case_dir = CONFORMANCE / case_id
    case = json.loads((case_dir / "case.json").read_text())
    result_type = case["result_type"]
    if case.get("result_type_object"):
        result_type = _parse_datatype_string(result_type)
    params = case["params"]
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
                    spark, str(case_dir / "model"), result_type=result_type, env_manager="local", params=params
                )
            ),
        )
    )
    ours = outcome(
        lambda: scored(
            df, apply(mlfusion.spark_udf(spark, case_id, result_type=result_type, params=params, server=server.location))
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
