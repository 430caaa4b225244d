#!/usr/bin/env bash
# Creates (idempotently) the project's development Python environment in .venv:
# the real `inferencesh` SDK from PyPI, Pillow for the image example, pytest for
# the worker's own tests, and uv (the fast installer infsh uses for app
# environments when it is on PATH). Prints the interpreter's path last.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
python="${PYTHON:-python3}"
stamp="$venv/.infsh-dev-stamp"
want="$(cat "$root/scripts/dev-requirements.txt")"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" >&2
fi
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$root/scripts/dev-requirements.txt" >&2
  printf '%s' "$want" > "$stamp"
fi
# uv alone on a PATH folder of its own: putting .venv/bin on PATH would also
# shadow python3, which infsh uses to build app environments.
mkdir -p "$root/.tools/bin"
ln -sf "$venv/bin/uv" "$root/.tools/bin/uv"
echo "$venv/bin/python"
