#!/usr/bin/env bash
# The fleet benchmark (issue 13). Part 1: one API node on SQLite vs one
# on PostgreSQL: c1 submit->done p50/p99 and tasks/s at c8 on the trivial
# app (bench/fleet/fleet_bench.py). Writes
# bench/results/<date>-fleet-single-node.{md,json}.
# Part 2 (`--engines` first): API nodes on one PostgreSQL database with 1, 2
# and 4 `infsh engine run` processes (bench/fleet/fleet_engines_bench.py).
# Writes bench/results/<date>-fleet-engines.{md,json}.
#
#   bench/fleet.sh                      # release binary (built if missing)
#   INFSH_BIN=target/debug/infsh bench/fleet.sh --n 200 --seconds 5
#   INFSH_BIN=target/debug/infsh bench/fleet.sh --engines --nodes 2
#
# Environment: INFSH_BIN, BENCH_DATABASE_URL (a PostgreSQL server to create
# the bench's database on; default: scripts/test-postgres.sh's, which starts
# a throwaway cluster when none answers, stopped at the end), BENCH_NOTE
# (a line added to the results). Other arguments go to fleet_bench.py.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

bin="${INFSH_BIN:-$root/target/release/infsh}"
if [ ! -x "$bin" ]; then
  echo "==> building infsh (release)" >&2
  cargo build --release --locked -p infsh-cli >&2
fi
python="${INFSH_TEST_PYTHON:-$(scripts/dev-python.sh)}"

if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  url="$BENCH_DATABASE_URL"
else
  pg_out="$(scripts/test-postgres.sh)"
  url="$(sed -n 1p <<<"$pg_out")"
  pg_dir="$(sed -n 2p <<<"$pg_out")"
  if [ -n "$pg_dir" ]; then
    trap 'scripts/test-postgres.sh --stop "$pg_dir"' EXIT
  fi
fi

mkdir -p bench/results
if [ "${1:-}" = "--engines" ]; then
  shift
  "$python" bench/fleet/fleet_engines_bench.py --bin "$bin" --python "$python" \
    --database-url "$url" --out "bench/results/$(date -u +%F)-fleet-engines" \
    --note "${BENCH_NOTE:-}" "$@"
  exit 0
fi
"$python" bench/fleet/fleet_bench.py --bin "$bin" --python "$python" --database-url "$url" \
  --out "bench/results/$(date -u +%F)-fleet-single-node" --note "${BENCH_NOTE:-}" "$@"
