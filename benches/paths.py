"""The Python-side paths of the benchmark, one per process so each is measured alone
(`bench.py` runs them and samples their memory). Each prints one JSON line: the seconds
it took (`e2e` with model loading, `steady` without, `repeat` for a second Spark job) and
the checksum of what it computed.

    python benches/paths.py PATH --data D --model DIR --columns a,b --result-type T [...]

PATH: raw | datafusion | spark_udf | shim | spark_alone
"""
import argparse
import json
import os
import time
import warnings

warnings.filterwarnings("ignore")
RAW_ROWS = 1_000_000
CHUNK = 65_536


def checksum(values):
    """What each path reports of its predictions: the sum of the numeric ones (the first
    struct field) and the number of non-null strings, comparable across paths."""
    return {k: (float(v) if isinstance(v, float) else v) for k, v in values.items()}


def raw(args):
    """`model.predict` on pandas chunks already in memory: what one core can do."""
    import mlflow
    import pyarrow.parquet as pq

    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(args.model)
    loaded = time.perf_counter() - started
    table = pq.ParquetFile(args.data).read(columns=args.columns)
    rows = min(RAW_ROWS, table.num_rows)
    chunks = [table.slice(i, min(CHUNK, rows - i)).to_pandas() for i in range(0, rows, CHUNK)]
    started = time.perf_counter()
    for chunk in chunks:
        model.predict(chunk)
    steady = time.perf_counter() - started
    return {"rows": rows, "steady": steady, "e2e": steady + loaded}


def datafusion_py(args):
    """The datafusion Python package, the model in a Python scalar UDF."""
    import datafusion
    import mlflow
    import pandas as pd
    import pyarrow as pa

    started = time.perf_counter()
    model = mlflow.pyfunc.load_model(args.model)
    struct = "," in args.result_type
    if struct:
        out_type = pa.struct([("score", pa.float64()), ("label", pa.string())])
    else:
        out_type = {"double": pa.float64(), "long": pa.int64()}[args.result_type]

    def score(*arrays):
        frame = pd.DataFrame({c: a.to_pandas() for c, a in zip(args.columns, arrays)})
        result = model.predict(frame)
        if struct:
            return pa.StructArray.from_arrays(
                [pa.array(result["score"]), pa.array(result["label"])], ["score", "label"])
        return pa.array(result, type=out_type)

    ctx = datafusion.SessionContext()
    ctx.register_parquet("t", args.data)
    schema = ctx.table("t").schema()
    in_types = [schema.field(c).type for c in args.columns]
    ctx.register_udf(datafusion.udf(score, in_types, out_type, "stable", name="m"))
    loaded = time.perf_counter()
    batches = ctx.sql(args.sql).collect()
    ended = time.perf_counter()
    values = batches[0].to_pylist()[0]
    return {"e2e": ended - started, "steady": ended - loaded, "checksum": checksum(values)}


def spark_session(args):
    """PySpark local[cores]; Arrow batches of `--spark-batch` rows (0: Spark's default, 10,000)."""
    import sys

    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable  # Spark's Python workers: this venv

    builder = (
        SparkSession.builder.master(f"local[{args.cores}]")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
    )
    if args.spark_batch:
        builder = builder.config("spark.sql.execution.arrow.maxRecordsPerBatch", str(args.spark_batch))
    return builder.getOrCreate()


def spark_job(spark, make_udf, args):
    """Two runs of the same job: the first pays for model loading in the workers."""
    from pyspark.sql import functions as F

    def job(udf):
        # A new DataFrame each time: re-running one would reuse its shuffle output.
        p = udf(*[F.col(c) for c in args.columns]).alias("p")
        if "," in args.result_type:
            aggs = [F.sum("p.score").alias("s"), F.count("p.label").alias("n")]
        else:
            aggs = [F.sum("p").alias("s")]
        return spark.read.parquet(args.data).select(p).agg(*aggs).collect()[0].asDict()

    started = time.perf_counter()
    udf = make_udf()
    first = job(udf)
    e2e = time.perf_counter() - started
    started = time.perf_counter()
    job(udf)
    repeat = time.perf_counter() - started
    return {"e2e": e2e, "repeat": repeat, "checksum": checksum(first)}


def spark_udf(args):
    import mlflow

    spark = spark_session(args)
    return spark_job(
        spark,
        lambda: mlflow.pyfunc.spark_udf(spark, args.model, result_type=args.result_type),
        args,
    )


def shim(args):
    import mlfusion

    spark = spark_session(args)
    return spark_job(
        spark,
        lambda: mlfusion.spark_udf(spark, "m", result_type=args.result_type,
                                   server=f"grpc://127.0.0.1:{args.port}"),
        args,
    )


def spark_alone(args):
    """Spark's own cost of the same job: an Arrow UDF (the shim's kind) of the same result
    type that returns zeros without a model; each batch still crosses to a Python worker
    and back. The floor of both Spark paths."""
    from typing import Iterator, Tuple

    import numpy as np
    import pyarrow as pa
    from pyspark.sql.functions import arrow_udf

    spark = spark_session(args)

    def zeros(n):
        if "," in args.result_type:
            return pa.StructArray.from_arrays([pa.array(np.zeros(n)), pa.array([""] * n)], ["score", "label"])
        return pa.array(np.zeros(n, dtype=np.float64 if args.result_type == "double" else np.int64))

    def predict(batches: Iterator[Tuple[pa.Array, ...]]) -> Iterator[pa.Array]:
        for arrays in batches:
            yield zeros(len(arrays[0] if isinstance(arrays, tuple) else arrays))

    result = spark_job(spark, lambda: arrow_udf(predict, args.result_type), args)
    del result["checksum"]  # zeros: not the model's predictions
    return result


PATHS = {"raw": raw, "datafusion": datafusion_py, "spark_udf": spark_udf, "shim": shim, "spark_alone": spark_alone}

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("path", choices=PATHS)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--columns", required=True, type=lambda s: s.split(","))
    parser.add_argument("--result-type", required=True)
    parser.add_argument("--sql", default="")
    parser.add_argument("--cores", type=int, default=os.cpu_count())
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--spark-batch", type=int, default=0)
    args = parser.parse_args()
    print(json.dumps(PATHS[args.path](args)), flush=True)
