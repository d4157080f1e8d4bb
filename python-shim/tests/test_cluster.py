"""A Spark standalone cluster (a master and two workers on 127.0.0.1, started with the
`spark-class` pyspark ships) runs a job through the shim against two mlfusion servers;
its predictions match scoring the same rows locally with MLflow."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pyspark
import pytest
from conftest import MODELS

SPARK_CLASS = Path(pyspark.__file__).parent / "bin" / "spark-class"
JOB = Path(__file__).parent / "cluster_job.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def cluster(tmp_path):
    """spark://127.0.0.1:PORT with two one-core workers; every JVM is killed afterwards."""
    env = {**os.environ, "SPARK_LOCAL_IP": "127.0.0.1", "SPARK_NO_DAEMONIZE": "1"}
    port, ui = free_port(), free_port()
    master_url = f"spark://127.0.0.1:{port}"
    procs = []

    def launch(name, *args):
        log = open(tmp_path / f"{name}.log", "w")
        procs.append(
            subprocess.Popen([str(SPARK_CLASS), *args], env=env, stdout=log, stderr=log, start_new_session=True)
        )

    launch("master", "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1", "--port", str(port),
           "--webui-port", str(ui))  # fmt: skip
    for i in range(2):
        launch(f"worker{i}", "org.apache.spark.deploy.worker.Worker", "--host", "127.0.0.1", "--cores", "1",
               "--memory", "1g", "--webui-port", str(free_port()), "--work-dir", str(tmp_path / f"work{i}"),
               master_url)  # fmt: skip
    try:
        deadline = time.monotonic() + 300  # JVMs start slowly on a loaded 2-core machine
        alive = 0
        while alive < 2:
            if time.monotonic() > deadline:
                logs = "\n".join(p.read_text()[-2000:] for p in tmp_path.glob("*.log"))
                pytest.fail(f"the standalone cluster did not come up:\n{logs}")
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{ui}/json/", timeout=5) as r:
                    alive = json.load(r).get("aliveworkers", 0)
            except OSError:
                alive = 0
        yield master_url
    finally:
        for p in procs:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def local_predictions(ids: np.ndarray) -> np.ndarray:
    frame = pd.DataFrame(
        {
            "tenure_months": ids % 72,
            "monthly_charges": ids % 1000 * 0.13,
            "support_calls": ids % 9,
        }
    )
    return np.asarray(mlflow.pyfunc.load_model(str(MODELS / "churn")).predict(frame), dtype=np.float64)


def checksum(values) -> str:
    return hashlib.sha256(np.asarray(values, dtype=np.float64).tobytes()).hexdigest()


def test_a_standalone_cluster_scores_through_the_shim(cluster, start_server):
    servers = [start_server(f"--model=churn={MODELS / 'churn'}") for _ in range(2)]
    job = subprocess.run(
        [sys.executable, str(JOB), cluster, *(s.location for s in servers)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert job.returncode == 0, job.stderr[-5000:]
    report = json.loads(job.stdout.strip().splitlines()[-1])
    rows = 200_000
    assert report["count"] == rows
    assert report["executors"] == 2
    ids = np.asarray(report["ids"])
    assert np.array_equal(ids, np.arange(rows))
    expected = local_predictions(ids)
    assert checksum(report["udf"]) == checksum(expected)
    assert checksum(report["arrow"]) == checksum(expected)
    # Tasks spread over both servers.
    scored = [s.action("models")[0]["rows_scored"] for s in servers]
    assert all(n > 0 for n in scored) and sum(scored) >= 2 * rows, scored
