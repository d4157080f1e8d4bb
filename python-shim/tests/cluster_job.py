"""A PySpark job on a standalone cluster, scoring through two mlfusion servers.

Usage: cluster_job.py MASTER_URL SERVER [SERVER ...]; prints a JSON report: row count,
the predictions by id (spark_udf and predict_in_arrow paths) and the executors used.
"""

import json
import sys

from pyspark.sql import SparkSession
from pyspark.sql import functions as F

import mlfusion

ROWS = 200_000


def main(master: str, servers: list) -> None:
    spark = (
        SparkSession.builder.master(master)
        .appName("mlfusion-cluster-test")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.executor.memory", "768m")
        .config("spark.sql.shuffle.partitions", "4")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    df = spark.range(0, ROWS, numPartitions=8).select(
        "id",
        (F.col("id") % 72).alias("tenure_months"),
        (F.col("id") % 1000 * 0.13).alias("monthly_charges"),
        (F.col("id") % 9).alias("support_calls"),
    )
    cols = ["tenure_months", "monthly_charges", "support_calls"]
    churn = mlfusion.spark_udf(spark, "churn", server=servers)
    scored = df.select("id", churn(*cols).alias("p"))
    udf_rows = scored.orderBy("id").collect()
    arrow_rows = mlfusion.predict_in_arrow(df, "churn", cols, "p", server=servers).orderBy("id").collect()
    executors = spark.sparkContext._jsc.sc().getExecutorMemoryStatus().size() - 1
    print(
        json.dumps(
            {
                "count": scored.count(),
                "ids": [r.id for r in udf_rows],
                "udf": [r.p for r in udf_rows],
                "arrow": [r.p for r in arrow_rows],
                "executors": executors,
            }
        )
    )
    spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
