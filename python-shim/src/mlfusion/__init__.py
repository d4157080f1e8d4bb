"""mlfusion: score tables with MLflow models in SQL, from Python or PySpark.

- :class:`Session` and :func:`sql`: the engine in this process; models are SQL functions
  over Parquet, Delta and Arrow tables, results stream as Arrow (``mlfusion._engine``);
- :func:`spark_udf`: a drop-in for ``mlflow.pyfunc.spark_udf`` (same calls, same results)
  that scores through ``mlfusion serve``;
- :func:`predict_in_pandas` / :func:`predict_in_arrow`: one Flight stream per Spark task
  through ``mapInPandas`` / ``mapInArrow``.
"""

from mlfusion._errors import MlfusionError

# Where each public name lives, imported on first use: the console command (which imports
# only the engine) starts without pandas, the Spark shim without the engine.
_LAZY = {
    "DEFAULT_SERVER": "mlfusion._client",
    "Result": "mlfusion._session",
    "Session": "mlfusion._session",
    "sql": "mlfusion._session",
    "predict_in_arrow": "mlfusion._spark",
    "predict_in_pandas": "mlfusion._spark",
    "spark_udf": "mlfusion._spark",
}

__all__ = ["MlfusionError", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'mlfusion' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_LAZY])
