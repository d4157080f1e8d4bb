#!/usr/bin/env bash
# Creates (or refreshes) the project venv at .venv with the pinned Python stack.
# Idempotent: re-running only installs what changed in scripts/requirements.txt. The Python
# package python-shim/src/mlfusion is put on the venv's path (a .pth file), so the tests
# import this clone's code; its engine module comes with the wheel (scripts/wheel.sh).
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
  "$venv/bin/python" -m pip uninstall --quiet --disable-pip-version-check -y mlfusion 2>/dev/null || true
  site="$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo "$root/python-shim/src" > "$site/mlfusion-source.pth"
  printf '%s' "$wanted" > "$stamp"
fi
