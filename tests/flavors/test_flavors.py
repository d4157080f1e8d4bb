"""Real flavors scored by mlfusion and by the real ``mlflow.pyfunc.spark_udf``, side by side.

For each flavor, ``flavors.py`` (in its own process) saves tiny models and records spark_udf's
answers; the models are then scored by one ``mlfusion query`` in process (``--workers 0``) and
by one with worker processes (``--workers 1``) over the same Parquet file, and each answer must
equal spark_udf's value for value, in row order.

Runs in the venv ``scripts/flavors-venv.sh`` builds (the project's Python stack plus
``tests/flavors/requirements.txt``), from ``scripts/test.sh``::

    .venv-flavors/bin/python -m pytest -rs tests/flavors
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

HERE = Path(__file__).resolve().parent
BIN = Path(os.environ.get("MLFUSION_BIN", HERE.parents[1] / "target" / "debug" / "mlfusion"))
FLAVORS = ["sklearn", "xgboost", "lightgbm", "catboost", "statsmodels", "onnx", "keras", "pytorch"]


@pytest.fixture(scope="module", params=FLAVORS)
def recorded(request, tmp_path_factory):
    """The flavor's directory from flavors.py: models, input, spark_udf's answers, cases.json."""
    out = tmp_path_factory.mktemp(request.param)
    done = subprocess.run(
        [sys.executable, str(HERE / "flavors.py"), request.param, str(out)],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, f"saving or spark_udf failed for {request.param}:\n{done.stderr[-4000:]}"
    cases = json.loads((out / "cases.json").read_text())
    assert cases, request.param
    return out, cases


@pytest.mark.parametrize("workers", ["0", "1"])
def test_flavor_scores_as_spark_udf(recorded, workers):
    """All of the flavor's models in one query, model ``m<i>`` answering column ``p<i>``."""
    out, cases = recorded
    command = [str(BIN), "--venv", sys.prefix, "query", "--workers", workers]
    for i, case in enumerate(cases):
        command += ["--model", f"m{i}={out / case['name']}", "--result-type", f"m{i}={case['result_type']}"]
    result = out / f"workers{workers}.parquet"
    calls = ", ".join(case["call"].replace("m(", f"m{i}(", 1) + f" AS p{i}" for i, case in enumerate(cases))
    command += ["--table", f"t={out / 'input.parquet'}", "--output", str(result)]
    done = subprocess.run(
        command + [f"SELECT {calls} FROM t ORDER BY idx"],
        check=False,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    ours = pq.read_table(result)
    differences = []
    for i, case in enumerate(cases):
        expected = pq.read_table(out / f"{case['name']}.parquet").column("prediction").to_pylist()
        assert len(expected) == 300 and None not in expected, (case["name"], expected[:5])
        got = ours.column(f"p{i}").to_pylist()
        wrong = [row for row, (a, b) in enumerate(zip(got, expected)) if a != b]
        if len(got) != len(expected) or wrong:
            first = wrong[0] if wrong else min(len(got), len(expected))
            differences.append(
                f"{case['name']}: {len(got)} rows for {len(expected)}, {len(wrong)} differ; "
                f"first at row {first}: mlfusion {got[first : first + 1]} spark_udf {expected[first : first + 1]}"
            )
    assert not differences, "\n".join(differences)
