#!/usr/bin/env bash
# The full test run: venv, formatting, lints, then every test (unit, integration,
# conformance against ../shared/conformance, sqllogictests) from one debug build; then
# the wheel, installed into a fresh venv: `mlfusion demo`, and the Python API's and the
# Spark shim's tests against its `mlfusion` command with real PySpark.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/venv.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The wheel (debug) reuses this build's DataFusion: engine/Cargo.toml pins the features
# that dev-dependencies turn on, and no crate under DataFusion depends on pyo3.
scripts/wheel-venv.sh
demo="$(mktemp -d)"
.venv-wheel/bin/mlfusion demo --dir "$demo" --rows 200000
rm -rf "$demo"
MLFUSION_BIN="$PWD/.venv-wheel/bin/mlfusion" .venv-wheel/bin/python -m pytest python-shim/tests
# Real flavors (scikit-learn, XGBoost, LightGBM, CatBoost, statsmodels, ONNX, Keras/TensorFlow,
# PyTorch) against spark_udf, in their own venv (8 GB; a rebuild comes from uv's cache).
scripts/flavors-venv.sh
.venv-flavors/bin/python -m pytest -rs tests/flavors
