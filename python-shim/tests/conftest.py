"""Fixtures: real `mlfusion serve` processes on 127.0.0.1 and a local PySpark session.

The server binary is ``MLFUSION_BIN`` or the debug build in ``target/``; Spark runs its
Python workers in this interpreter (the project venv). Servers that build models' envs
(``--env-manager uv``) share uv's package cache with the Rust env tests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pyarrow.flight as flight
import pytest

ROOT = Path(__file__).resolve().parents[2]
MODELS = ROOT / "testdata" / "models"
BIN = Path(os.environ.get("MLFUSION_BIN", ROOT / "target" / "debug" / "mlfusion"))
CONFORMANCE = Path(
    os.environ.get("MLFUSION_CONFORMANCE_CASES", ROOT.parent / "shared" / "conformance" / "cases")
)

os.environ["PYSPARK_PYTHON"] = sys.executable
os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
os.environ.setdefault("UV_CACHE_DIR", str(Path(tempfile.gettempdir()) / "mlfusion-tests-uv-cache"))


class Server:
    """A running ``mlfusion serve``; ``location`` is where it listens."""

    def __init__(self, *args: str, tmp: Path):
        if not BIN.exists():
            pytest.fail(f"{BIN} is missing: build it first (cargo build --bin mlfusion)")
        self.log = tmp / f"serve-{time.monotonic_ns()}.log"
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--port", "0", "--model-cache", str(tmp / "cache"), *args],
            stderr=open(self.log, "w"),
            stdout=subprocess.DEVNULL,
        )
        self.location = self._wait_for_location()
        self.tls = self.location.startswith("grpc+tls")

    def _wait_for_location(self) -> str:
        deadline = time.monotonic() + 300  # envs built from a cold uv cache download
        while time.monotonic() < deadline:
            for line in self.log.read_text().splitlines():
                if line.startswith("mlfusion: serving ") and " at " in line:
                    return line.split(" at ")[1].split(" ")[0]
            if self.proc.poll() is not None:
                pytest.fail(f"mlfusion serve exited: {self.log.read_text()}")
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"mlfusion serve did not start: {self.log.read_text()}")

    @property
    def port(self) -> int:
        return int(self.location.rsplit(":", 1)[1])

    def action(self, name: str, token: str | None = None, **client_kwargs) -> dict:
        headers = [(b"authorization", f"Bearer {token}".encode())] if token else []
        with flight.FlightClient(self.location, **client_kwargs) as client:
            results = list(client.do_action(flight.Action(name, b""), flight.FlightCallOptions(headers=headers)))
        return json.loads(results[0].body.to_pybytes())

    def peak_rss_mib(self) -> float:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmHWM")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("mlfusion")


@pytest.fixture(scope="session")
def start_server(tmp_session):
    """Starts servers (``start_server("--model", "a=URI", ...)``); stops them at the end."""
    servers = []

    def start(*args: str) -> Server:
        server = Server(*args, tmp=tmp_session)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session", params=["local", "uv"])
def test_models(request, start_server, tmp_session) -> Server:
    """The repo's test models: churn, adder, labeler (struct result), raiser; served from
    the engine's venv, then (``uv``) each from the env its own files ask for: churn's and
    labeler's ``requirements.txt`` pin numpy and pandas, adder and raiser name nothing
    (their env holds what the worker needs)."""
    args = [f"--model={m}={MODELS / m}" for m in ("churn", "adder", "labeler", "raiser")]
    args += ["--env-manager", request.param, "--env-cache", str(tmp_session / "envs")]
    server = start_server(*args)
    server.env_manager = request.param
    return server


@pytest.fixture(scope="session")
def spark():
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("mlfusion-tests")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
