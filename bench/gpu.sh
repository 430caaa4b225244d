#!/usr/bin/env bash
# The GPU benchmark, one prepared script (bench/gpu-README.md):
#
#   bench/gpu.sh --prepare    # HERE, before carrying: release infsh -> bench/.gpu/infsh
#                             # (stripped), wheels -> .whl/ (pydantic, inferencesh, ...)
#   bench/gpu.sh              # ON THE GPU MACHINE: the benchmark, results under $OUT
#   bench/gpu.sh placement    # ON THE GPU MACHINE: placement (bench/gpu/placement_bench.py):
#                             # each replica sees only its GPU; what an eviction costs
#
# On the GPU machine it needs python3 with torch; pydantic and inferencesh
# are installed from .whl/ into /tmp/site when python3 lacks them. It serves
# examples/gpu-app with `infsh serve --python python3`, compares GPU memory
# of the four-function app with four one-function copies, and the latency of
# a call through infsh with a direct call (bench/gpu/gpu_bench.py). Under
# 5 minutes in all; every server it starts is stopped at the end.
#
# Environment: OUT (results folder; default bench/.work/gpu-out), GPU_PYTHON
# (default python3), INFSH_BIN (default bench/.gpu/infsh, else
# target/release/infsh), GPU_APP_SIZE (tiny|small|full; default: full on a
# GPU, tiny on a CPU), GPU_BENCH_CALLS (default 200), GPU_BENCH_TIMEOUT
# (seconds, default 280).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

WHEELS=(inferencesh==0.36.0 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0
        typing-inspection==0.4.5 typing-extensions==4.16.0 tqdm==4.70.1 requests==2.34.2
        certifi==2026.10.19.post1 idna==3.20 urllib3==2.8.0 charset-normalizer==3.5.3)

if [ "${1:-}" = "--prepare" ]; then
  echo "==> building infsh (release) and copying it, stripped, to bench/.gpu/infsh" >&2
  cargo build --release --locked -p infsh-cli >&2
  mkdir -p bench/.gpu
  strip -o bench/.gpu/infsh target/release/infsh
  echo "==> wheels for CPython 3.12 on manylinux x86-64 into .whl/" >&2
  mkdir -p .whl
  for w in "${WHEELS[@]}"; do
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
      -d .whl "$w"
  done
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  ls -la bench/.gpu .whl >&2
  du -shc bench/.gpu .whl >&2
  exit 0
fi

OUT="${OUT:-$root/bench/.work/gpu-out}"
mkdir -p "$OUT"
PY="${GPU_PYTHON:-python3}"
PY="$(command -v "$PY")"

if ! "$PY" -c "import pydantic, inferencesh" >/dev/null 2>&1; then
  if ! ls .whl/*.whl >/dev/null 2>&1; then
    echo "gpu.sh: $PY has no pydantic/inferencesh and there is no .whl/ (run bench/gpu.sh --prepare where PyPI is reachable)" >&2
    exit 2
  fi
  echo "==> installing .whl/ into /tmp/site" >&2
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi

INFSH_BIN="${INFSH_BIN:-}"
if [ -z "$INFSH_BIN" ]; then
  for c in bench/.gpu/infsh target/release/infsh; do
    if [ -x "$c" ]; then INFSH_BIN="$root/$c"; break; fi
  done
fi
if [ -z "$INFSH_BIN" ] || ! "$INFSH_BIN" --version >/dev/null 2>"$OUT/infsh-version.err"; then
  echo "gpu.sh: no runnable infsh (tried INFSH_BIN, bench/.gpu/infsh, target/release/infsh):" >&2
  cat "$OUT/infsh-version.err" >&2 || true
  exit 2
fi

{
  echo "date: $(date -u +%FT%TZ)"
  echo "infsh: $("$INFSH_BIN" --version)"
  echo "python: $("$PY" --version 2>&1)"
  nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv 2>&1 || echo "nvidia-smi: not available"
} > "$OUT/environment.txt"
cat "$OUT/environment.txt" >&2

if [ "${1:-}" = "placement" ]; then
  exec timeout --signal=TERM --kill-after=10 "${GPU_BENCH_TIMEOUT:-280}" \
    "$PY" bench/gpu/placement_bench.py --infsh "$INFSH_BIN" --python "$PY" --out "$OUT"
fi

exec timeout --signal=TERM --kill-after=10 "${GPU_BENCH_TIMEOUT:-280}" \
  "$PY" bench/gpu/gpu_bench.py --infsh "$INFSH_BIN" --python "$PY" --out "$OUT" \
  --calls "${GPU_BENCH_CALLS:-200}" --warmup 20
