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
cargo build --locked --bin mlfusion
.venv/bin/python -m pytest python-shim/tests
