#!/usr/bin/env bash
# Creates (or refreshes) the project venv at .venv with the pinned Python stack.
# Idempotent: re-running only installs what changed in scripts/requirements.txt or in the
# Python package python-shim/ (installed editable, so the tests import this clone's code).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
req="$root/scripts/requirements.txt"
stamp="$venv/.requirements.stamp"
python="${MLFUSION_BASE_PYTHON:-python3.11}"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating $venv with $($python --version)" >&2
  "$python" -m venv "$venv"
fi
wanted="$(cat "$req" "$root/python-shim/pyproject.toml"; echo "$root")"
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$wanted" ]]; then
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -e "$root/python-shim"
  printf '%s' "$wanted" > "$stamp"
fi
