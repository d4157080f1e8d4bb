#!/usr/bin/env bash
# The full test run: venv, formatting, lints, then every test (unit, integration,
# conformance against ../shared/conformance, sqllogictests) from one debug build, then
# the Python shim's tests against that build's `mlfusion serve` with real PySpark.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/venv.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# `cargo test` has built target/debug/mlfusion (the integration tests run it), which the
# shim's tests use. A separate `cargo build` would resolve features without the
# dev-dependencies' (rand's `std` through proptest and sqllogictest) and rebuild DataFusion.
.venv/bin/python -m pytest python-shim/tests
# Real flavors (scikit-learn, XGBoost, LightGBM, CatBoost, statsmodels, ONNX, Keras/TensorFlow,
# PyTorch) against spark_udf, in their own venv (8 GB; a rebuild comes from uv's cache).
scripts/flavors-venv.sh
.venv-flavors/bin/python -m pytest -rs tests/flavors
