"""mlfusion against its peers, side by side in one run, on one Parquet file.

For each model (linear, gbdt, pandas; see train.py) it measures:

- scan:           DataFusion (mlfusion, no model) reading the model's columns: the I/O floor
- raw:            `model.predict` on pandas chunks already in memory, one process: per core
- mlfusion:       `mlfusion query` (workers = cores), end to end (the process's wall time)
                  and steady (the statement, without load)
- mlfusion-inproc: the same with `--workers 0` (the model in the engine's interpreter)
- shim:           PySpark (local[cores]) -> `mlfusion.spark_udf` -> `mlfusion serve`
- spark_udf:      `mlflow.pyfunc.spark_udf` on PySpark local[cores]: first and repeated job
                  (both with Arrow batches of 65,536 rows, the engine's batch size;
                  shim-default and spark_udf-default with Spark's default, 10,000)
- spark-alone:    the same Spark job with an Arrow UDF that returns zeros (no model):
                  Spark's own cost, the floor of both Spark paths
- datafusion-py:  the datafusion Python package with a Python UDF calling the model: whole
                  process (interpreter start and imports included, as in mlfusion's end to
                  end), end to end (from after the imports) and steady

and prints rows/s, the ratio to spark_udf's first job and to the limit
(min(scan floor, cores x raw)), and the peak RSS of each path's whole process tree
(JVM, Python workers, server). Results also go to JSON.

    python benches/bench.py --bin target/release/mlfusion [--rows N] [--work DIR]
"""
import argparse
import json
import os
import platform
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import generate  # noqa: E402
import train  # noqa: E402

MODELS = {
    "linear": (train.FEATURES, "double"),
    "gbdt": (train.FEATURES, "long"),
    "pandas": (train.PANDAS_INPUTS, "score double, label string"),
}
# RAW is the per-core limit: native thread pools (OpenMP in scikit-learn's trees, BLAS)
# must not use the other cores behind its back.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PATHS = ["scan", "raw", "mlfusion", "mlfusion-inproc", "shim", "spark_udf", "shim-default",
         "spark_udf-default", "spark-alone", "datafusion-py"]
# spark.sql.execution.arrow.maxRecordsPerBatch of the Spark paths (0: Spark's default).
SPARK_BATCH = 65_536


# ---------------------------------------------------------------- memory of process trees
def tree_rss(roots):
    """Resident memory (bytes) of `roots` and all their descendants."""
    children, rss = {}, {}
    page = os.sysconf("SC_PAGE_SIZE")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            with open(f"/proc/{entry}/statm") as f:
                resident = int(f.read().split()[1]) * page
        except OSError:
            continue
        ppid = int(stat[stat.rfind(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = resident
    total, todo = 0, list(roots)
    while todo:
        pid = todo.pop()
        total += rss.get(pid, 0)
        todo.extend(children.get(pid, []))
    return total


class Sampler:
    """Samples the RSS of some process trees and the load average until stopped."""

    def __init__(self, roots):
        self.roots, self.peak, self.loads = list(roots), 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, tree_rss(self.roots))
            self.loads.append(os.getloadavg()[0])
            self._stop.wait(0.1)

    def stop(self):
        self._stop.set()
        self._thread.join()
        return self.peak


def run(command, extra_roots=(), env=None):
    """Runs `command`; returns (stdout, stderr, wall seconds, peak tree RSS in MiB)."""
    started = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    sampler = Sampler([proc.pid, *extra_roots])
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    peak = sampler.stop()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed:\n{err[-3000:]}")
    return out, err, wall, peak / 2**20


# ---------------------------------------------------------------- the paths
def sql_for(name):
    columns, result_type = MODELS[name]
    call = f"m({', '.join(columns)})"
    if "," in result_type:
        return f"SELECT sum({call}['score']) AS s, count({call}['label']) AS n FROM t"
    return f"SELECT sum({call}) AS s FROM t"


def timed(stderr, what):
    match = re.search(rf"mlfusion: {what} in ([0-9.]+) s", stderr)
    return float(match.group(1))


def mlfusion(cfg, name, workers):
    columns, result_type = MODELS[name]
    command = [cfg.bin, "query", "--quiet", "--timing", "--format", "json",
               "--workers", str(workers), "--model", f"m={cfg.models}/{name}",
               "--result-type", f"m={result_type}", "--table", f"t={cfg.data}", sql_for(name)]
    out, err, wall, peak = run(command)
    steady = timed(err, "statement 1 ran")
    values = json.loads(out)[0]
    return {"e2e": wall, "steady": steady, "peak_mib": peak, "checksum": values}


def scan(cfg, name):
    columns, _ = MODELS[name]
    # Computed sums: unlike max(c), they cannot be answered from Parquet statistics.
    aggs = ", ".join(f"sum(length({c}))" if c == "segment" else f"sum({c} + 0)" for c in columns)
    command = [cfg.bin, "query", "--quiet", "--timing", "--format", "csv",
               "--table", f"t={cfg.data}", f"SELECT count(*), {aggs} FROM t"]
    _, err, wall, peak = run(command)
    return {"e2e": wall, "steady": timed(err, "statement 1 ran"), "peak_mib": peak}


def python_path(cfg, name, path, extra_roots=(), port=0, env=None, spark_batch=0):
    columns, result_type = MODELS[name]
    command = [sys.executable, os.path.join(HERE, "paths.py"), path, "--data", cfg.data,
               "--model", f"{cfg.models}/{name}", "--columns", ",".join(columns),
               "--result-type", result_type, "--sql", sql_for(name),
               "--cores", str(cfg.cores), "--port", str(port), "--spark-batch", str(spark_batch)]
    out, _, wall, peak = run(command, extra_roots, env=dict(os.environ, **(env or {})))
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_mib"] = peak
    if path == "datafusion":
        # Its `e2e` starts after the imports; the whole process is what `mlfusion`'s
        # end to end (the process's wall time) compares with.
        result["process"] = wall
    return result


def shim(cfg, name, spark_batch):
    columns, result_type = MODELS[name]
    server = subprocess.Popen(
        [cfg.bin, "serve", "--port", "0", "--model", f"m={cfg.models}/{name}",
         "--result-type", f"m={result_type}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stderr.readline()
        match = re.search(r"at grpc://127\.0\.0\.1:(\d+)", line)
        if not match:
            raise RuntimeError(f"mlfusion serve did not start: {line}{server.stderr.read()}")
        return python_path(cfg, name, "shim", [server.pid], int(match.group(1)),
                           spark_batch=spark_batch)
    finally:
        server.terminate()
        server.wait()


# ---------------------------------------------------------------- the table
def measure(cfg, name):
    rows = cfg.rows
    results = {}
    for path in cfg.paths:
        print(f"  {name}: {path} ...", file=sys.stderr, flush=True)
        if path == "scan":
            r = scan(cfg, name)
        elif path == "raw":
            r = python_path(cfg, name, "raw", env=ONE_THREAD)
        elif path == "mlfusion":
            r = mlfusion(cfg, name, cfg.cores)
        elif path == "mlfusion-inproc":
            r = mlfusion(cfg, name, 0)
        elif path in ("shim", "shim-default"):
            r = shim(cfg, name, SPARK_BATCH if path == "shim" else 0)
        elif path == "spark-alone":
            r = python_path(cfg, name, "spark_alone", spark_batch=SPARK_BATCH)
        elif path in ("spark_udf", "spark_udf-default"):
            r = python_path(cfg, name, "spark_udf",
                            spark_batch=SPARK_BATCH if path == "spark_udf" else 0)
        else:
            r = python_path(cfg, name, "datafusion")
        r.setdefault("rows", rows)
        r["rows_per_s"] = {k: r["rows"] / r[k] for k in ("process", "e2e", "steady", "repeat")
                           if k in r}
        results[path] = r
    limits = {}
    if "scan" in results:
        limits["scan floor"] = results["scan"]["rows_per_s"]["steady"]
    if "raw" in results:
        limits[f"{cfg.cores} x raw"] = cfg.cores * results["raw"]["rows_per_s"]["steady"]
    limit = min(limits.values()) if limits else None
    return {"results": results, "limits": limits, "limit": limit,
            "disagreeing": disagreeing(results)}


def disagreeing(results):
    """Paths whose aggregate of the predictions differs from the first path's (relative
    1e-7: sums of millions of floats in another order differ in the last bits)."""
    sums = {p: r["checksum"] for p, r in results.items() if "checksum" in r}
    if not sums:
        return []
    ref = next(iter(sums.values()))
    return [p for p, c in sums.items()
            if any(abs(float(c[k]) - float(v)) > 1e-7 * max(1.0, abs(float(v))) for k, v in ref.items())]


def table(report):
    lines = ["| model | path | rows/s | x spark_udf (first job) | x limit | peak RSS (tree) |",
             "|---|---|---:|---:|---:|---:|"]
    for name, m in report["models"].items():
        spark = m["results"].get("spark_udf", {}).get("rows_per_s", {}).get("e2e")
        limit = m["limit"]
        lines.append(f"| {name} | limit = min({', '.join(f'{k} {v / 1e6:.2f}M' for k, v in m['limits'].items())}) "
                     f"| {limit / 1e6:.2f}M | | 1.00 | |" if limit else f"| {name} | limit | n/a | | | |")
        for path, r in m["results"].items():
            for kind, rate in r["rows_per_s"].items():
                if path == "raw" and kind == "e2e":
                    continue
                label = {"process": "whole process", "e2e": "end to end",
                         "steady": "steady state", "repeat": "repeated job"}[kind]
                if path == "raw":
                    label = "1 core, data in memory"
                if path == "scan":
                    if kind == "e2e":
                        continue
                    label = "no model"
                vs_spark = f"{rate / spark:.1f}" if spark else ""
                vs_limit = f"{rate / limit:.2f}" if limit else ""
                lines.append(f"| {name} | {path} ({label}) | {rate / 1e6:.2f}M | {vs_spark} | "
                             f"{vs_limit} | {r['peak_mib']:.0f} MiB |")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bin", required=True, help="the mlfusion binary (a release build)")
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--work", default=os.path.join(HERE, "..", "target", "bench"),
                        help="where the data and models are made (reused when present)")
    parser.add_argument("--models", default=",".join(MODELS), type=lambda s: s.split(","))
    parser.add_argument("--paths", default=",".join(PATHS), type=lambda s: s.split(","))
    parser.add_argument("--json", default=None, help="results file [WORK/results.json]")
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    cfg = argparse.Namespace(
        bin=os.path.abspath(args.bin), rows=args.rows, paths=args.paths,
        cores=len(os.sched_getaffinity(0)),
        data=os.path.abspath(os.path.join(args.work, f"data-{args.rows}.parquet")),
        models=os.path.abspath(os.path.join(args.work, f"models-{args.rows}")),
    )
    if not os.path.exists(cfg.data):
        print(f"generating {cfg.data}", file=sys.stderr)
        generate.generate(cfg.data + ".tmp", args.rows)
        os.rename(cfg.data + ".tmp", cfg.data)
    if not os.path.exists(os.path.join(cfg.models, "pandas", "MLmodel")):
        print(f"training models into {cfg.models}", file=sys.stderr)
        train.train(cfg.data, cfg.models)
    sampler = Sampler([])
    started = time.time()
    report = {
        "machine": {"cores": cfg.cores, "cpu": platform.processor() or platform.machine(),
                    "memory_gib": round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30)},
        "rows": args.rows,
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(started)),
        "models": {name: measure(cfg, name) for name in args.models},
    }
    sampler.stop()
    report["seconds"] = round(time.time() - started)
    report["load_average"] = {"mean": round(sum(sampler.loads) / max(1, len(sampler.loads)), 2),
                              "max": round(max(sampler.loads, default=0), 2)}
    out = args.json or os.path.join(args.work, "results.json")
    with open(out, "w") as f:
        json.dump(report, f, indent=1)
    m = report["machine"]
    print(f"{args.rows:,} rows, {m['cores']} cores, {m['memory_gib']} GiB; "
          f"load average during the run: mean {report['load_average']['mean']}, "
          f"max {report['load_average']['max']}; {report['seconds']} s\n")
    print(table(report))
    print()
    for name, m in report["models"].items():
        paths = [p for p, r in m["results"].items() if "checksum" in r]
        if m["disagreeing"]:
            print(f"{name}: PREDICTIONS DIFFER from {paths[0]}'s in: {', '.join(m['disagreeing'])}")
        else:
            print(f"{name}: the same aggregate of the predictions from {', '.join(paths)}")
    print(f"\nJSON: {out}")


if __name__ == "__main__":
    main()
