"""mlfusion for PySpark: score DataFrames with MLflow models served by ``mlfusion serve``.

- :func:`spark_udf`: a drop-in for ``mlflow.pyfunc.spark_udf`` (same calls, same results);
- :func:`predict_in_pandas` / :func:`predict_in_arrow`: one Flight stream per Spark task
  through ``mapInPandas`` / ``mapInArrow``.
"""

from mlfusion._client import DEFAULT_SERVER, MlfusionError
from mlfusion._spark import predict_in_arrow, predict_in_pandas, spark_udf

__all__ = ["DEFAULT_SERVER", "MlfusionError", "predict_in_arrow", "predict_in_pandas", "spark_udf"]
