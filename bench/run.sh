#!/usr/bin/env bash
# The benchmark, one command (docs/performance.md):
#
#   bench/run.sh                  # full run: every system twice; ~10 min after the first install
#   bench/run.sh --quick --rounds 1   # a short run, to check the harness (~2 min)
#   bench/run.sh --systems infsh,cog --perf   # arguments go to bench/bench.py
#   bench/run.sh --embed [--rounds 2]         # the embed and batching benchmarks (bench/embed.py)
#   bench/run.sh --tokens [--streams 64]      # the tokens benchmark instead (bench/tokens.py)
#   bench/run.sh --image [--rounds 2]         # the image benchmark (bench/image.py)
#
# Installs what it needs, idempotently, under bench/.work (gitignored):
#   - the infsh release binary (cargo build --release; INFSH_BIN=... to use another),
#   - the dev Python environment infsh's workers use (scripts/dev-python.sh),
#   - bench/tools (floor server, load generator) and bench/ipc, built with cargo,
#   - one virtual environment per peer from PyPI: cog + coglet, litserve, bentoml
#     (pinned below; a peer that cannot be installed is reported as
#     "not available: <reason>" in the results, and the run goes on).
# Then runs bench/bench.py, which writes bench/results/<date>.md and .json.
# Every server it starts listens on 127.0.0.1 and is stopped at the end,
# also on failure or Ctrl-C (bench.py stops them; this trap is the backstop).
set -euo pipefail
embed=""
if [ "${1:-}" = "--embed" ]; then embed=1; shift; fi
image=""
if [ "${1:-}" = "--image" ]; then image=1; shift; fi
bench="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$bench")"
work="$bench/.work"
mkdir -p "$work/venvs" "$work/logs" "$work/tmp"
pids="$work/pids"
: > "$pids"

COG_VERSION="${COG_VERSION:-0.23.1}"        # cog and coglet share their version
LITSERVE_VERSION="${LITSERVE_VERSION:-0.2.19}"
BENTOML_VERSION="${BENTOML_VERSION:-1.4.40}"
PEER_PYTHON="${PEER_PYTHON:-python3}"

cleanup() {
  # Backstop: every process bench.py recorded (servers and the descendants
  # it saw), by pid, if it is still there.
  if [ -s "$pids" ]; then
    for p in $(tr ' ' '\n' < "$pids" | sort -u); do
      kill -TERM "$p" 2>/dev/null || true
    done
    sleep 1
    for p in $(tr ' ' '\n' < "$pids" | sort -u); do
      kill -KILL "$p" 2>/dev/null || true
    done
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

say() { echo "==> $*" >&2; }

# -- infsh ---------------------------------------------------------------
if [ -z "${INFSH_BIN:-}" ]; then
  say "building infsh (release)"
  (cd "$root" && cargo build --release --locked -p infsh-cli >&2)
  export INFSH_BIN="$root/target/release/infsh"
fi
say "infsh's Python environment"
if [ -n "$embed" ] && [ -z "${INFSH_BENCH_PYTHON:-}" ]; then
  # The embed apps need numpy beside the SDK: an environment of their own.
  uv="$(command -v uv || true)"; [ -z "$uv" ] && uv="$root/.tools/bin/uv"
  [ -x "$work/venvs/infsh-py/bin/python" ] || "$uv" venv -q -p "${PEER_PYTHON:-python3}" "$work/venvs/infsh-py" >&2
  VIRTUAL_ENV="$work/venvs/infsh-py" "$uv" pip install -q inferencesh numpy >&2
  INFSH_BENCH_PYTHON="$work/venvs/infsh-py/bin/python"
fi
INFSH_BENCH_PYTHON="${INFSH_BENCH_PYTHON:-$("$root/scripts/dev-python.sh")}"
export INFSH_BENCH_PYTHON

# -- bench tools (own workspaces, own target dir) --------------------------
# (the image benchmark's client is bench/image.py itself: no tools needed)
if [ -z "$image" ]; then
say "building bench/tools and bench/ipc"
export CARGO_TARGET_DIR="$work/target"
(cd "$bench/tools" && cargo build --release --locked >&2)
# not --locked: it follows whatever crates/infsh-worker depends on today
if ! (cd "$bench/ipc" && cargo build --release >&2); then
  say "bench/ipc did not build (the worker IPC figure will be missing)"
fi
unset CARGO_TARGET_DIR
fi

# -- peers -----------------------------------------------------------------
uv="$(command -v uv || true)"
[ -z "$uv" ] && [ -x "$root/.tools/bin/uv" ] && uv="$root/.tools/bin/uv"
available="$work/available.json"
echo "{}" > "$available"
mark() { # mark NAME true|"reason"
  python3 - "$available" "$1" "$2" <<'EOF'
import json, sys
path, name, value = sys.argv[1:]
d = json.load(open(path))
d[name] = True if value == "true" else value
json.dump(d, open(path, "w"), indent=1)
EOF
}
install_peer() { # install_peer NAME SPEC...
  local name="$1"; shift
  local venv="$work/venvs/$name" stamp="$work/venvs/$name/.bench-stamp" want="$* $PEER_PYTHON"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    mark "$name" true; return
  fi
  say "installing $name ($*)"
  rm -rf "$venv"
  local log="$work/logs/install-$name.log"
  if [ -n "$uv" ]; then
    "$uv" venv -q -p "$PEER_PYTHON" "$venv" > "$log" 2>&1 &&
      VIRTUAL_ENV="$venv" "$uv" pip install -q "$@" >> "$log" 2>&1
  else
    "$PEER_PYTHON" -m venv "$venv" > "$log" 2>&1 &&
      "$venv/bin/python" -m pip install -q --disable-pip-version-check "$@" >> "$log" 2>&1
  fi
  if [ $? -eq 0 ]; then
    printf '%s' "$want" > "$stamp"; mark "$name" true
  else
    local reason; reason="$(grep -v '^\s*$' "$log" | tail -3 | tr '\n' ' ' | cut -c1-300)"
    say "$name: not available: $reason"
    mark "$name" "pip install $* failed: $reason"
  fi
}
check_versions() { # what PyPI has; bench.py copies it into the results
  : > "$work/pypi-versions.txt"
  for pkg in cog coglet litserve bentoml; do
    v="$("$PEER_PYTHON" -m pip index versions "$pkg" 2>/dev/null | head -1 || true)"
    echo "$pkg: ${v:-pip index failed}" | tee -a "$work/pypi-versions.txt" >&2
  done
}
say "peer versions on PyPI (installing cog/coglet $COG_VERSION, litserve $LITSERVE_VERSION, bentoml $BENTOML_VERSION)"
check_versions || true
set +e
install_peer cog "cog==$COG_VERSION" "coglet==$COG_VERSION"
install_peer litserve "litserve==$LITSERVE_VERSION"
install_peer bentoml "bentoml==$BENTOML_VERSION"
set -e

# -- run -------------------------------------------------------------------
if [ -n "$embed" ]; then
  for peer in cog litserve bentoml; do # the embed apps' model is numpy
    if [ -x "$work/venvs/$peer/bin/python" ]; then
      VIRTUAL_ENV="$work/venvs/$peer" "$uv" pip install -q numpy >&2 || say "$peer: numpy not installed"
    fi
  done
  say "running the embed and batching benchmarks (bench/embed.py $*)"
  python3 "$bench/embed.py" "$@"
  exit
fi
if [ -n "$image" ]; then
  for peer in cog litserve bentoml; do # the image apps' work is Pillow's
    if [ -x "$work/venvs/$peer/bin/python" ]; then
      VIRTUAL_ENV="$work/venvs/$peer" "$uv" pip install -q pillow >&2 || say "$peer: pillow not installed"
    fi
  done
  say "running the image benchmark (bench/image.py $*)"
  python3 "$bench/image.py" "$@"
  exit
fi
if [ "${1:-}" = "--tokens" ]; then
  shift
  say "running the tokens benchmark (bench/tokens.py $*)"
  python3 "$bench/tokens.py" "$@"
  exit 0
fi
say "running the benchmark (bench/bench.py $*)"
python3 "$bench/bench.py" "$@"
