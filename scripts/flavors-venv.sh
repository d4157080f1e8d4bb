#!/usr/bin/env bash
# Creates (or refreshes) .venv-flavors: the project's Python stack (scripts/requirements.txt)
# plus the packages of the flavors tests/flavors saves models of (PyTorch, TensorFlow, ...).
# Built with uv from the project venv, so a rebuild takes its wheels from uv's cache.
# Idempotent: re-running only installs when a requirements file changed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv-flavors"
uv="$root/.venv/bin/uv"
python="${MLFUSION_BASE_PYTHON:-python3.11}"
stamp="$venv/.requirements.stamp"
wanted="$(cat "$root/scripts/requirements.txt" "$root/tests/flavors/requirements.txt")"
if [[ ! -x "$venv/bin/python" ]]; then
  "$uv" venv --quiet --python "$("$python" -c "import sys; print(sys.executable)")" "$venv"
fi
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$wanted" ]]; then
  "$uv" pip install --quiet --python "$venv/bin/python" \
    -r "$root/scripts/requirements.txt" -r "$root/tests/flavors/requirements.txt"
  printf '%s' "$wanted" > "$stamp"
fi
