#!/usr/bin/env bash
# The benchmark, from a fresh clone: the project venv plus the peers measured against
# (the datafusion Python package), a release build, then bench.py (data and models are
# made on first use under target/bench; arguments go to it, e.g. --models linear), the
# short job (short_job.py), the whole process on 1,000,000 rows against datafusion-py,
# serve's start-up with 50 models (serve_startup.py), and the linear job read from an S3
# server on loopback against local files (stores.py).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/venv.sh
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r benches/requirements.txt
cargo build --release --locked --bin mlfusion
bin="${CARGO_TARGET_DIR:-target}/release/mlfusion"
python=(env -u VIRTUAL_ENV .venv/bin/python)
"${python[@]}" benches/bench.py --bin "$bin" "$@"
"${python[@]}" benches/short_job.py --bin "$bin"
"${python[@]}" benches/bench.py --bin "$bin" --rows 1000000 --paths mlfusion,datafusion-py \
  --json target/bench/results-1000000.json
"${python[@]}" benches/serve_startup.py --bin "$bin" --models 50
"${python[@]}" benches/stores.py --bin "$bin"
