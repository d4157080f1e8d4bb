"""The Python API of the wheel (``mlfusion.Session``, ``mlfusion.sql``): real MLflow models
scored in this process and in worker processes, against ``mlfusion query`` on the same input.

The engine module comes with the wheel (scripts/wheel.sh); the test command runs these in
a fresh venv that has the wheel installed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import MODELS

pytest.importorskip("mlfusion._engine", reason="the engine module comes with the wheel (scripts/wheel.sh)")

import mlfusion  # noqa: E402

CLI = shutil.which("mlfusion", path=os.path.dirname(sys.executable))


@pytest.fixture(scope="module")
def sklearn_model(tmp_path_factory) -> Path:
    """A scikit-learn pipeline saved by MLflow's sklearn flavor, with a signature."""
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(7)
    x = pd.DataFrame({"a": rng.normal(size=500), "b": rng.normal(size=500)})
    y = (x.a + 0.5 * x.b > 0).astype(int)
    model = LogisticRegression().fit(x, y)
    path = tmp_path_factory.mktemp("models") / "logistic"
    mlflow.sklearn.save_model(
        model, path, signature=infer_signature(x, model.predict(x)), pyfunc_predict_fn="predict_proba"
    )
    return path


@pytest.fixture(scope="module")
def features(tmp_path_factory) -> Path:
    """200,000 rows in 4 row groups of a Parquet file, written by pyarrow."""
    rng = np.random.default_rng(11)
    n = 200_000
    table = pa.table({"id": np.arange(n), "a": rng.normal(size=n), "b": rng.normal(size=n)})
    path = tmp_path_factory.mktemp("tables") / "features.parquet"
    pq.write_table(table, path, row_group_size=50_000)
    return path


QUERY = "SELECT id, m(a, b) AS p FROM t"


def cli_result(model: Path, table: Path, out: Path, *flags: str) -> pa.Table:
    """What ``mlfusion query`` (the console command of this install) writes for QUERY."""
    assert CLI, "the wheel installs the mlfusion command beside this Python"
    subprocess.run(
        [CLI, "query", "--quiet", "--model", f"m={model}", "--result-type", "m=array<double>",
         "--table", f"t={table}", "--output", str(out), *flags, QUERY],
        check=True,
    )
    return pq.read_table(out).sort_by("id")


@pytest.mark.parametrize("workers", [0, 2])
def test_a_session_scores_like_the_command_line(sklearn_model, features, tmp_path, workers):
    expected = cli_result(sklearn_model, features, tmp_path / "cli.parquet", "--workers", str(workers))
    session = mlfusion.Session(workers=workers)
    session.register_model("m", sklearn_model, result_type="array<double>")
    session.register_parquet("t", features)
    result = session.sql(QUERY)
    assert result.schema.names == ["id", "p"]
    table = result.to_arrow().sort_by("id")
    assert table.num_rows == 200_000
    assert table.equals(expected), "the API's rows differ from mlfusion query's"
    # A query runs again each time it is read; pandas and batches give the same rows.
    frame = result.to_pandas().sort_values("id", ignore_index=True)
    assert frame["id"].tolist() == expected["id"].to_pylist()
    assert np.allclose(np.stack(frame["p"]), np.stack(expected["p"].to_numpy(zero_copy_only=False)))
    batches = list(result)
    assert all(isinstance(b, pa.RecordBatch) for b in batches) and len(batches) > 1
    assert sum(b.num_rows for b in batches) == 200_000


def test_one_liner_with_tables_in_memory_and_params(tmp_path):
    customers = pd.DataFrame({
        "tenure_months": [1, 24, 60], "monthly_charges": [99.0, 50.0, 20.0], "support_calls": [5, 1, 0],
    })
    query = "SELECT churn(tenure_months, monthly_charges, support_calls) AS p FROM customers"
    scored = mlfusion.sql(query, models={"churn": MODELS / "churn"}, tables={"customers": customers}, workers=0)
    p = scored.to_pandas()["p"]
    assert len(p) == 3 and p.between(0, 1).all() and p.is_monotonic_decreasing
    # The model's params schema: threshold is a double.
    with pytest.raises(mlfusion.MlfusionError, match="threshold"):
        mlfusion.sql(
            query,
            models={"churn": {"uri": MODELS / "churn", "params": {"threshold": "high"}}},
            tables={"customers": pa.Table.from_pandas(customers)},
        )


def test_errors_are_exceptions_naming_the_model_and_the_cause(tmp_path):
    session = mlfusion.Session(workers=0)
    with pytest.raises(mlfusion.MlfusionError, match="nowhere") as missing:
        session.register_model("gone", tmp_path / "nowhere")
    assert "gone" in str(missing.value)
    session.register_model("r", MODELS / "raiser", result_type="double")
    session.register_table("t", pa.table({"x": [1.0, -1.0]}))
    with pytest.raises(mlfusion.MlfusionError, match="No field named y"):
        session.sql("SELECT r(y) FROM t")
    out = tmp_path / "scored.parquet"
    with pytest.raises(mlfusion.MlfusionError, match="'r'"):
        session.sql("SELECT r(x) FROM t").write_parquet(out)
    assert not out.exists(), "a failed write leaves no file"
    with pytest.raises(ValueError, match="--workers"):
        mlfusion.Session(workers="many")


def test_writes_delta_and_copy(tmp_path):
    session = mlfusion.Session(workers=0).register_model("add", MODELS / "adder", result_type="double")
    session.register_table("t", pa.table({"x": [1.0, 2.0, 3.0], "y": [10.0, 20.0, 30.0]}))
    message = session.sql("SELECT x, add(x, y) AS s FROM t").write(f"delta:{tmp_path / 'scored'}")
    assert "wrote 3 row(s)" in message
    delta = session.sql(f"SELECT s FROM '{tmp_path / 'scored'}' ORDER BY s").to_arrow()
    assert delta.column("s").to_pylist() == [11.0, 22.0, 33.0]
    copied = session.sql(f"COPY (SELECT add(x, y) AS s FROM t) TO '{tmp_path / 'copy.parquet'}'")
    assert copied.to_arrow().column(0).to_pylist() == [3]
    assert pq.read_table(tmp_path / "copy.parquet").num_rows == 3


RSS_SCRIPT = textwrap.dedent(
    """
    import sys, mlfusion
    model, table, out = sys.argv[1:]
    session = mlfusion.Session(workers=0, batch_size=65536)
    session.register_model("add", model, result_type="double")
    session.register_parquet("t", table)
    print(session.sql("SELECT id, add(a, b) AS s FROM t").write_parquet(out), file=sys.stderr)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print(int(line.split()[1]) // 1024)
    """
)


def test_scoring_into_parquet_keeps_memory_flat(tmp_path):
    """5,000,000 rows through the API into Parquet peak at about what 500,000 rows do."""
    peaks = {}
    for rows in (500_000, 5_000_000):
        table = tmp_path / f"in-{rows}.parquet"
        with pq.ParquetWriter(table, pa.schema([("id", pa.int64()), ("a", pa.float64()), ("b", pa.float64())])) as w:
            for start in range(0, rows, 500_000):
                ids = np.arange(start, start + 500_000)
                w.write_table(pa.table({"id": ids, "a": ids * 0.5, "b": np.ones(500_000)}))
        out = tmp_path / f"out-{rows}.parquet"
        done = subprocess.run(
            [sys.executable, "-c", RSS_SCRIPT, str(MODELS / "adder"), str(table), str(out)],
            capture_output=True, text=True, check=True,
        )
        peaks[rows] = int(done.stdout.strip())
        scored = pq.ParquetFile(out)
        assert scored.metadata.num_rows == rows
        last = scored.read_row_group(scored.num_row_groups - 1).to_pydict()
        assert last["s"][-1] == (rows - 1) * 0.5 + 1.0
    print(f"peak RSS in MiB by rows: {peaks}")
    # Buffering the result would add its 80 MB (5M x two 8-byte columns) at least.
    assert peaks[5_000_000] < peaks[500_000] + 60, f"peak RSS in MiB by rows: {peaks}"


def test_the_console_command_is_the_cli(tmp_path):
    version = subprocess.run([CLI, "--help"], capture_output=True, text=True, check=True)
    assert "query" in version.stdout and "serve" in version.stdout
    bad = subprocess.run([CLI, "query", "--workers", "many", "SELECT 1"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--workers" in bad.stderr
    out = subprocess.run([CLI, "query", "--format", "json", "SELECT 1 + 1 AS two"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout) == [{"two": 2}]


CANCEL_SCRIPT = textwrap.dedent(
    """
    import sys, mlfusion
    model, out = sys.argv[1:]
    session = mlfusion.Session(workers=1)
    session.register_model("c", model, result_type="twice double, next double")
    try:
        session.sql("SELECT c(x)['twice'] AS t FROM (VALUES (1.0), (2.0)) v(x)").write_parquet(out)
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        sys.exit(3)
    """
)


def test_ctrl_c_cancels_a_write_and_leaves_no_file(tmp_path):
    log, out = tmp_path / "calls.log", tmp_path / "scored.parquet"
    env = {**os.environ, "MLFUSION_TEST_PREDICT_LOG": str(log), "MLFUSION_TEST_PREDICT_SLEEP": "60"}
    proc = subprocess.Popen(
        [sys.executable, "-c", CANCEL_SCRIPT, str(MODELS / "counter"), str(out)],
        env=env, stderr=subprocess.PIPE, text=True,
        # Ctrl-C reaches it as from a terminal: a suite started in the background (`&`
        # without job control) would hand it SIGINT ignored, and Python keeps it so.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not (log.exists() and log.read_text()):
        assert proc.poll() is None and time.monotonic() < deadline, "no predict call started"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 3 and "cancelled" in stderr, stderr
    assert not out.exists(), "a cancelled write leaves no file"


def test_a_progress_bar_counts_the_rows_models_score(features, tmp_path):
    script = textwrap.dedent(
        """
        import sys, mlfusion
        session = mlfusion.Session(workers=0).register_model("add", sys.argv[1], result_type="double")
        session.register_parquet("t", sys.argv[2])
        session.sql("SELECT add(a, b) AS s FROM t", progress=True).write_parquet(sys.argv[3])
        session.sql("SELECT count(*) FROM t", progress=True).to_arrow()  # no model: no bar
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(MODELS / "adder"), str(features), str(tmp_path / "s.parquet")],
        capture_output=True, text=True, check=True,
    )
    bars = [line for line in done.stderr.replace("\r", "\n").splitlines() if line.startswith("scoring")]
    assert bars, done.stderr
    assert "100%" in bars[-1] and "200k/200k" in bars[-1], bars[-1]
