#!/usr/bin/env bash
# The full test run: venv, formatting, lints, then every test (unit, integration,
# conformance against ../shared/conformance, sqllogictests) from one debug build.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
scripts/venv.sh
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
