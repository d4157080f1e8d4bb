#!/usr/bin/env bash
# Builds the wheel (engine, command line, Python API and Spark shim) with maturin into
# target/wheels/, for the project venv's Python: debug profile by default, as the tests
# use it (it reuses `cargo test`'s DataFusion build); `scripts/wheel.sh --release` for one
# to ship. Prints the wheel's path.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
"$root/scripts/venv.sh"
rm -f "$root"/target/wheels/mlfusion-*.whl
"$root/.venv/bin/maturin" build --quiet --locked --manifest-path "$root/python-shim/Cargo.toml" \
  --interpreter "$root/.venv/bin/python" --out "$root/target/wheels" "$@" >&2
ls "$root"/target/wheels/mlfusion-*.whl
