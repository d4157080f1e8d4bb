"""The first query on a model that runs in an environment of its own: `mlfusion query
--env-manager uv` with the env already built (warm) and with an empty env cache (cold),
against `mlfusion query --env-manager local` (the engine's venv) and against
`mlflow.pyfunc.spark_udf(env_manager="uv")`'s first job on local Spark.

    .venv/bin/python benches/env_startup.py --bin target/release/mlfusion [--repeat 3]
        [--rows 100000] [--work DIR] [--no-spark]

The model is a scikit-learn LinearRegression saved by `mlflow.sklearn.save_model`, so its
requirements are what MLflow writes for such a model (mlflow, scikit-learn, scipy, numpy,
pandas, cloudpickle, pinned to this venv's versions). Every path reads the same Parquet
file and sums the same predictions; the harness checks that they agree.

uv's package cache (`UV_CACHE_DIR`, under the work directory) is filled once before the
runs and shared by every path: "cold" means that the env is not built yet, not that the
packages must be downloaded (the registry's speed is not the engine's). spark_udf builds
its env into a per-process temporary directory, so each of its first jobs is a cold one.
The paths run one after another, interleaved, `--repeat` times; the table shows medians
and the ratios the targets of issue 14 are stated in. Prints one JSON line per run, then
the table with the load average and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FEATURES = [f"f{i}" for i in range(8)]
SQL = f"SELECT sum(m({', '.join(FEATURES)})) AS s FROM t"


def make_inputs(work: Path, rows: int) -> tuple[Path, Path]:
    """The Parquet file and the MLflow model (made once per work directory)."""
    data, model = work / "data.parquet", work / "model"
    if data.exists() and model.exists():
        return data, model
    import warnings

    import mlflow
    import numpy as np
    import pandas as pd
    from mlflow.models import infer_signature
    from sklearn.linear_model import LinearRegression

    warnings.filterwarnings("ignore")
    rng = np.random.default_rng(14)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=FEATURES)
    target = frame.to_numpy() @ rng.normal(size=len(FEATURES)) + rng.normal(size=rows)
    frame.to_parquet(data, row_group_size=65_536)
    regression = LinearRegression().fit(frame.iloc[:10_000], target[:10_000])
    shutil.rmtree(model, ignore_errors=True)
    mlflow.sklearn.save_model(regression, model,
                              signature=infer_signature(frame.head(), target[:5]))
    return data, model


def child_env(work: Path) -> dict[str, str]:
    """What every path runs with: uv's shared cache, this venv's `uv` first on PATH
    (spark_udf runs `uv` from PATH), no inherited virtualenv."""
    env = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    env["UV_CACHE_DIR"] = str(work / "uv-cache")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYSPARK_PYTHON"] = sys.executable
    return env


def run(command: list[str], env: dict[str, str], log: Path) -> tuple[float, str, str]:
    """Runs `command` to its end: (wall seconds from spawn to exit, stdout, stderr)."""
    started = time.monotonic()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=1800)
    wall = time.monotonic() - started
    log.write_text(done.stderr)
    if done.returncode != 0:
        sys.exit(f"{command[:4]} failed ({done.returncode}); stderr in {log}:\n{done.stderr[-3000:]}")
    return wall, done.stdout, done.stderr


def mlfusion(args, data: Path, model: Path, env: dict, manager: str, cache: Path, log: Path) -> dict:
    command = [args.bin, "query", "--quiet", "--format", "json", "--env-manager", manager,
               "--env-cache", str(cache), "--model", f"m={model}",
               "--result-type", "m=double", "--table", f"t={data}", SQL]
    wall, out, err = run(command, env, log)
    return {"seconds": wall, "checksum": json.loads(out)[0]["s"],
            "env_reused": "reusing env" in err, "env_built": "built env" in err}


def spark(args, data: Path, model: Path, env: dict, manager: str, log: Path) -> dict:
    command = [sys.executable, __file__, "--spark-child", manager,
               "--data", str(data), "--model", str(model)]
    started = time.time()
    _, out, _ = run(command, env, log)
    figures = json.loads(out.strip().splitlines()[-1])
    # From the process start to the first job's answer (what a user waits for), and the
    # first job alone (UDF creation to answer, as bench.py reports spark_udf).
    return {"seconds": figures["answered_at"] - started, "first_job": figures["first_job"],
            "checksum": figures["checksum"]}


def spark_child(manager: str, data: str, model: str) -> None:
    """One Spark application: a session, `spark_udf(env_manager=manager)`, one job."""
    import warnings

    warnings.filterwarnings("ignore")
    import mlflow
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    spark = (SparkSession.builder.master(f"local[{os.cpu_count()}]")
             .config("spark.ui.enabled", "false").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    started = time.perf_counter()
    udf = mlflow.pyfunc.spark_udf(spark, model, result_type="double", env_manager=manager)
    row = (spark.read.parquet(data).select(udf(*[F.col(c) for c in FEATURES]).alias("p"))
           .agg(F.sum("p").alias("s")).collect()[0])
    first_job = time.perf_counter() - started
    print(json.dumps({"answered_at": time.time(), "first_job": first_job, "checksum": row["s"]}),
          flush=True)
    spark.stop()


def commit() -> str:
    return subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "mlfusion"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--work", default=str(ROOT / "target" / "bench" / "env-startup"))
    parser.add_argument("--no-spark", action="store_true", help="leave out the spark_udf paths")
    parser.add_argument("--spark-child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--model", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.spark_child:
        return spark_child(args.spark_child, args.data, args.model)

    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data, model = make_inputs(work, args.rows)
    env = child_env(work)
    warm, cold = work / "envs-warm", work / "envs-cold"
    # Fills uv's cache (downloads, once per work directory) and builds the warm env.
    started = time.monotonic()
    run([args.bin, "env", "build", "--env-cache", str(warm), str(model)], env, work / "prime.log")
    print(json.dumps({"path": "prime (env build)", "seconds": round(time.monotonic() - started, 2)}))

    paths = {
        "local": lambda log: mlfusion(args, data, model, env, "local", warm, log),
        "uv, warm env": lambda log: mlfusion(args, data, model, env, "uv", warm, log),
        "uv, cold env": lambda log: (shutil.rmtree(cold, ignore_errors=True),
                                     mlfusion(args, data, model, env, "uv", cold, log))[1],
    }
    if not args.no_spark:
        paths["spark_udf uv"] = lambda log: spark(args, data, model, env, "uv", log)
        paths["spark_udf local"] = lambda log: spark(args, data, model, env, "local", log)

    loads, results = [], {name: [] for name in paths}
    for i in range(args.repeat):
        for name, path in paths.items():
            loads.append(os.getloadavg()[0])
            figures = path(work / f"{name.replace(' ', '_').replace(',', '')}-{i}.log")
            results[name].append(figures)
            print(json.dumps({"path": name, "run": i, **figures}), flush=True)

    reference = results["local"][0]["checksum"]
    for name, runs in results.items():
        for figures in runs:
            if abs(figures["checksum"] - reference) > 1e-6 * max(1.0, abs(reference)):
                sys.exit(f"{name} computed {figures['checksum']}, local computed {reference}")
    if not all(f["env_reused"] for f in results["uv, warm env"]):
        sys.exit("a warm-env run did not reuse the env (see its log)")
    if not all(f["env_built"] for f in results["uv, cold env"]):
        sys.exit("a cold-env run did not build the env (see its log)")

    median = {name: statistics.median(f["seconds"] for f in runs) for name, runs in results.items()}
    print(f"\n{args.rows:,} rows, {os.cpu_count()} cores, commit {commit()}, {args.repeat} runs "
          f"per path; load average during the runs: mean {statistics.mean(loads):.2f}, "
          f"max {max(loads):.2f}\n")
    print("| path | process start to answer (median) | runs |")
    print("|---|---:|---|")
    for name, runs in results.items():
        each = ", ".join(f"{f['seconds']:.1f}" for f in runs)
        print(f"| {name} | {median[name]:.1f} s | {each} |")
    if "spark_udf uv" in median:
        first_job = statistics.median(f["first_job"] for f in results["spark_udf uv"])
        print(f"| spark_udf uv, first job alone | {first_job:.1f} s | |")
    print(f"\nwarm env / local start: {median['uv, warm env'] / median['local']:.2f} x")
    if "spark_udf uv" in median:
        print(f"spark_udf uv / cold env: {median['spark_udf uv'] / median['uv, cold env']:.2f} x "
              f"(first job alone: {first_job / median['uv, cold env']:.2f} x)")


if __name__ == "__main__":
    main()
