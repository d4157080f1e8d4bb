#!/usr/bin/env bash
# A fresh venv at .venv-wheel with the wheel of scripts/wheel.sh installed from its file
# (its dependencies from the package index) and the test tools: nothing else of this
# repository. The shim's and the Python API's tests run there.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheel="$("$root/scripts/wheel.sh")"
venv="$root/.venv-wheel"
uv="$root/.venv/bin/uv"
rm -rf "$venv"
"$uv" venv --quiet --python "$root/.venv/bin/python" "$venv"
# The test tools at the versions the conformance goldens were recorded with (pandas 2,
# pyarrow 25, PySpark 4.3; MLflow comes as the wheel's mlflow-skinny), and scikit-learn
# with skops (MLflow's default format for it) for the API's real flavor.
"$uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" "$wheel[spark,envs]" \
  $(grep -E '^(pandas|pyarrow|numpy|scikit-learn|cloudpickle|pyspark|pytest|uv)[=<>]' "$root/scripts/requirements.txt") \
  skops==0.16.0
