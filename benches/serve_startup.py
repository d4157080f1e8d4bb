"""Start-up of `mlfusion serve` with many small models: the time from the process start
to its readiness line, and the memory the server and its worker processes then hold.

    .venv/bin/python benches/serve_startup.py --bin target/release/mlfusion [--models 50]
        [--workers N] [--work DIR]

Each model is its own copy of the test model `testdata/models/adder` (a loader-module
model: the bridge's numpy/pandas/pyarrow imports and nothing else), served from one
`--config` file with the default workers (one per core) unless `--workers` is given.
Prints one JSON line with the figures, the load average and the commit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def descendants(pid: int) -> list[int]:
    """`pid` and every process below it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def memory_kib(pid: int, key: str) -> int:
    """A `/proc/<pid>/smaps_rollup` figure (Rss, Pss) in KiB, 0 for a process gone."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=str(ROOT / "target" / "release" / "mlfusion"))
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--workers", type=int)
    parser.add_argument("--work", default=str(ROOT / "target" / "bench" / "serve-startup"))
    args = parser.parse_args()

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    (work / "models").mkdir(parents=True)
    config = ["models:"]
    for i in range(args.models):
        shutil.copytree(ROOT / "testdata" / "models" / "adder", work / "models" / f"m{i}")
        config.append(f"  m{i}: {{uri: '{work / 'models' / f'm{i}'}'}}")
    (work / "models.yaml").write_text("\n".join(config) + "\n")

    command = [args.bin, "serve", "--port", "0", "--config", str(work / "models.yaml"),
               "--model-cache", str(work / "cache")]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    log = work / "serve.log"
    load_before = os.getloadavg()[0]
    started = time.monotonic()
    server = subprocess.Popen(command, stderr=open(log, "w"), stdout=subprocess.DEVNULL)
    try:
        while "mlfusion: serving" not in log.read_text():
            if server.poll() is not None:
                sys.exit(f"mlfusion serve exited:\n{log.read_text()}")
            if time.monotonic() - started > 1800:
                sys.exit("mlfusion serve did not start within 30 minutes")
            time.sleep(0.05)
        ready = time.monotonic() - started
        time.sleep(1.0)  # let the workers settle
        tree = descendants(server.pid)
        figures = {
            "models": args.models,
            "workers_per_model": args.workers if args.workers is not None else os.cpu_count(),
            "processes": len(tree),
            "start_s": round(ready, 2),
            "server_rss_mib": round(memory_kib(server.pid, "Rss") / 1024, 1),
            "tree_rss_mib": round(sum(memory_kib(p, "Rss") for p in tree) / 1024, 1),
            "tree_pss_mib": round(sum(memory_kib(p, "Pss") for p in tree) / 1024, 1),
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "commit": subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                                     capture_output=True, text=True).stdout.strip(),
            "binary": args.bin,
        }
    finally:
        stopping = time.monotonic()
        server.send_signal(signal.SIGTERM)
        code = server.wait(120)
    figures["stop_s"] = round(time.monotonic() - stopping, 2)
    figures["exit_code"] = code
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
