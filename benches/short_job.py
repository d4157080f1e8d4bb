"""Start-up of a short job: `mlfusion query` scoring 10 rows with the bench's linear model
(the whole process: interpreter, imports, model loads, the query) against one
`python -c` that imports MLflow, loads the same model and predicts the same 10 rows.

    env -u VIRTUAL_ENV .venv/bin/python benches/short_job.py --bin target/release/mlfusion
        [--work target/bench] [--rows 5000000] [--repeat 3]

Uses the data and models bench.py made under WORK. Each path runs as a new process, the
paths interleaved, REPEAT times; prints the median and every run, the load average and
the commit, as a table and a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train  # noqa: E402

PYTHON = """
import sys
import mlflow.pyfunc, pyarrow.parquet as pq
model = mlflow.pyfunc.load_model(sys.argv[1])
frame = pq.read_table(sys.argv[2], columns=sys.argv[3].split(","), filters=[("id", "<", 10)]).to_pandas()
print(float(model.predict(frame).sum()))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--work", default=os.path.join(HERE, "..", "target", "bench"))
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    data = os.path.abspath(os.path.join(args.work, f"data-{args.rows}.parquet"))
    model = os.path.abspath(os.path.join(args.work, f"models-{args.rows}", "linear"))
    if not os.path.exists(os.path.join(model, "MLmodel")):
        sys.exit(f"no model at {model}: run bench.py first")
    columns = train.FEATURES
    sql = f"SELECT sum(m({', '.join(columns)})) AS s FROM t WHERE id < 10"
    query = [args.bin, "query", "--quiet", "--format", "csv", "--model", f"m={model}",
             "--result-type", "m=double", "--table", f"t={data}"]
    paths = {
        "mlfusion query, default workers (forked from a template)": query + [sql],
        "mlfusion query, default workers, --worker-start spawn": query + ["--worker-start", "spawn", sql],
        "mlfusion query, --workers 0 (in process)": query + ["--workers", "0", sql],
        "python -c: import MLflow, load, predict": [sys.executable, "-c", PYTHON, model, data, ",".join(columns)],
    }
    runs: dict[str, list[float]] = {p: [] for p in paths}
    loads = []
    for _ in range(args.repeat):
        for path, command in paths.items():
            started = time.perf_counter()
            subprocess.run(command, check=True, capture_output=True)
            runs[path].append(time.perf_counter() - started)
            loads.append(os.getloadavg()[0])
    medians = {p: statistics.median(r) for p, r in runs.items()}
    python = medians["python -c: import MLflow, load, predict"]
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    print(f"10 rows, linear model; commit {commit}; load average mean {statistics.mean(loads):.2f}, "
          f"max {max(loads):.2f}\n")
    print("| path | median | x python -c | runs |\n|---|---:|---:|---|")
    for path, median in medians.items():
        print(f"| {path} | {median:.2f} s | {median / python:.2f} | "
              f"{', '.join(f'{r:.2f}' for r in runs[path])} |")
    print(json.dumps({"runs": runs, "commit": commit, "load_average": loads}))


if __name__ == "__main__":
    main()
