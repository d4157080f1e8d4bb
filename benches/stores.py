"""The benchmark's linear job read from an S3 server on loopback, beside the same job on
local files: Parquet and Delta, with and without the model.

    .venv/bin/python benches/stores.py --bin target/release/mlfusion [--rows N] [--repeat 3]

Starts `moto_server` (the S3-compatible server of the object store tests) on 127.0.0.1,
splits the benchmark's Parquet file (see generate.py) into files of 131,072 rows, uploads
them into a bucket, writes the same rows as a Delta table there and locally (the
`deltalake` package), then runs each path as its own `mlfusion query` process,
interleaved, `--repeat` times:

- scan: `SELECT count(*), sum(f0 + 0), ...` over the 16 features (no model)
- linear: `SELECT sum(m(f0, ..., f15))` with bench.py's linear model, `--workers <cores>`

Prints, per path, the median end-to-end and steady-state (the statement alone) rows/s,
their ratio to the same job on the local Parquet files, and the peak resident memory of
the mlfusion process tree; then the load average and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench  # noqa: E402
import generate  # noqa: E402
import train  # noqa: E402

BUCKET = "bench"
# moto keeps each object whole and reads all of it for every range request: objects of
# lake-sized parts keep that cost per request small (one 900 MB object would be read
# whole for each of its row groups).
FILE_ROWS = 131_072


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(venv_bin: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen([os.path.join(venv_bin, "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server, f"http://127.0.0.1:{port}"
        except OSError:
            if time.time() > deadline:
                raise RuntimeError("moto_server did not listen")
            time.sleep(0.2)


def split(data: str, directory: str) -> None:
    """The benchmark file as a directory of Parquet files of FILE_ROWS rows each (a lake's
    layout: Spark writes ~128 MB part files; these are ~23 MB)."""
    import pyarrow.dataset as ds

    if os.path.exists(directory):
        return
    ds.write_dataset(ds.dataset(data), directory + ".tmp", format="parquet",
                     basename_template="part-{i}.parquet", max_rows_per_file=FILE_ROWS,
                     max_rows_per_group=131_072, min_rows_per_group=131_072)
    os.rename(directory + ".tmp", directory)


def fill_bucket(endpoint: str, files: str, local_delta: str) -> None:
    """The Parquet files into the bucket as they are; the same rows as Delta tables there
    and locally, in files of about the same size."""
    import boto3
    import deltalake
    import pyarrow as pa
    import pyarrow.dataset as ds

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    s3.create_bucket(Bucket=BUCKET)
    for name in sorted(os.listdir(files)):
        s3.upload_file(os.path.join(files, name), BUCKET, f"parquet/{name}")
    options = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "bench",
               "AWS_SECRET_ACCESS_KEY": "bench", "AWS_REGION": "us-east-1",
               "AWS_ALLOW_HTTP": "true", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}
    for location, storage in ((f"s3://{BUCKET}/delta", options), (local_delta, None)):
        if storage is None and os.path.exists(local_delta):
            continue
        dataset = ds.dataset(files)
        reader = pa.RecordBatchReader.from_batches(dataset.schema, dataset.to_batches(batch_size=131_072))
        deltalake.write_deltalake(location, reader, storage_options=storage, target_file_size=24 << 20)


def run_path(cfg, table: str, model: bool) -> dict:
    columns, _ = bench.MODELS["linear"]
    if model:
        sql = f"SELECT sum(m({', '.join(columns)})) AS s FROM t"
        extra = ["--workers", str(cfg.cores), "--model", f"m={cfg.models}/linear",
                 "--result-type", "m=double"]
    else:
        sql = "SELECT count(*) AS n, " + ", ".join(f"sum({c} + 0) AS {c}" for c in columns) + " FROM t"
        extra = []
    command = [cfg.bin, "query", "--quiet", "--timing", "--format", "json", *extra,
               "--table", f"t={table}", sql]
    env = dict(os.environ, AWS_ENDPOINT_URL=cfg.endpoint, AWS_ACCESS_KEY_ID="bench",
               AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1")
    out, err, wall, peak = bench.run(command, env=env)
    return {"e2e": wall, "steady": bench.timed(err, "statement 1 ran"), "peak_mib": peak,
            "result": json.loads(out)[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", required=True)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--work", default=os.path.join(HERE, "..", "target", "bench"))
    args = parser.parse_args()
    os.makedirs(args.work, exist_ok=True)
    data = os.path.abspath(os.path.join(args.work, f"data-{args.rows}.parquet"))
    models = os.path.abspath(os.path.join(args.work, f"models-{args.rows}"))
    if not os.path.exists(data):
        generate.generate(data + ".tmp", args.rows)
        os.rename(data + ".tmp", data)
    if not os.path.exists(os.path.join(models, "linear", "MLmodel")):
        train.train(data, models)
    files = os.path.abspath(os.path.join(args.work, f"parquet-{args.rows}"))
    split(data, files)
    local_delta = os.path.abspath(os.path.join(args.work, f"delta-{args.rows}"))
    server, endpoint = start_moto(os.path.dirname(sys.executable))
    cfg = argparse.Namespace(bin=os.path.abspath(args.bin), models=models, endpoint=endpoint,
                             cores=len(os.sched_getaffinity(0)))
    try:
        print(f"filling the bucket at {endpoint}", file=sys.stderr, flush=True)
        fill_bucket(endpoint, files, local_delta)
        tables = {"local Parquet": files, "S3 Parquet": f"s3://{BUCKET}/parquet/",
                  "local Delta": local_delta, "S3 Delta": f"s3://{BUCKET}/delta"}
        runs: dict[tuple[str, str], list[dict]] = {}
        sampler = bench.Sampler([])
        for i in range(args.repeat):
            for job in ("scan", "linear"):
                for where, table in tables.items():
                    print(f"  {i + 1}/{args.repeat} {job} {where}", file=sys.stderr, flush=True)
                    runs.setdefault((job, where), []).append(run_path(cfg, table, job == "linear"))
        sampler.stop()
    finally:
        server.terminate()
        server.wait()
    commit = subprocess.run(["git", "-C", HERE, "rev-parse", "--short", "HEAD"],
                            capture_output=True, text=True).stdout.strip()
    loads = sampler.loads
    print(f"{args.rows:,} rows, {cfg.cores} cores, commit {commit}; load average during the runs: "
          f"mean {statistics.mean(loads):.2f}, max {max(loads):.2f}; median of {args.repeat}\n")
    print("| job | table | end to end | x local | steady state | x local | peak RSS (tree) |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for (job, where), rs in runs.items():
        e2e = args.rows / statistics.median(r["e2e"] for r in rs)
        steady = args.rows / statistics.median(r["steady"] for r in rs)
        local = runs[(job, "local Parquet")]
        local_e2e = args.rows / statistics.median(r["e2e"] for r in local)
        local_steady = args.rows / statistics.median(r["steady"] for r in local)
        peak = max(r["peak_mib"] for r in rs)
        print(f"| {job} | {where} | {e2e / 1e6:.2f}M rows/s | {e2e / local_e2e:.2f} | "
              f"{steady / 1e6:.2f}M rows/s | {steady / local_steady:.2f} | {peak:.0f} MiB |")
    for job in ("scan", "linear"):
        results = {json.dumps(r["result"], sort_keys=True) for (j, _), rs in runs.items() if j == job for r in rs}
        same = len({json.dumps({k: round(float(v), 6) for k, v in json.loads(r).items()}) for r in results}) == 1
        print(f"\n{job}: {'the same result from every table' if same else 'RESULTS DIFFER: ' + str(results)}")


if __name__ == "__main__":
    main()
