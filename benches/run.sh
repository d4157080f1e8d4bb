#!/usr/bin/env bash
# The benchmark, from a fresh clone: the project venv plus the peers measured against
# (the datafusion Python package), a release build, then bench.py (data and models are
# made on first use under target/bench). Arguments go to bench.py, e.g. --rows 1000000.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/venv.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r benches/requirements.txt
cargo build --release --locked --bin mlfusion
exec env -u VIRTUAL_ENV .venv/bin/python benches/bench.py \
  --bin "${CARGO_TARGET_DIR:-target}/release/mlfusion" "$@"
