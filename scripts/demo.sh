#!/usr/bin/env bash
# The main job on its embedded default: builds mlfusion, then scores a generated
# 1,000,000-row customers table with the bundled example churn model (demo-data/).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/venv.sh
cargo build --locked --bin mlfusion
exec target/debug/mlfusion demo "$@"
