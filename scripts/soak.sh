#!/usr/bin/env bash
# The load soak (docs/reliability.md, item 5): builds infsh and the harness
# (soak/), then serves tests/fixtures/apps/soak-app and submits N tasks at
# concurrency 64 (a mix of functions, failing inputs and cancellations),
# checks every task's end, the store, the app's call log, /metrics and
# memory, and writes the result files. Exits non-zero on any violation.
#
#   scripts/soak.sh                 10,000 tasks, release build; results in soak/results/<date>.{json,md}
#   scripts/soak.sh 20000           another count
#   scripts/soak.sh --ci            1,500 tasks, debug build (what the test suite runs, well under 90 s
#                                   once built); results in target/soak-ci/ci.{json,md}
#   scripts/soak.sh [--ci] [N] --keep --seed 7 ...   other flags go to the harness (infsh-soak --help)
# Then, in every mode, the fleet soak: 500 tasks over two API nodes and three
# engines killed and restarted (an ignored test of crates/infsh-cli, debug build).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

ci=0
n=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --ci) ci=1 ;;
    -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *)
      if [ -z "$n" ] && [[ "$1" =~ ^[0-9]+$ ]]; then n="$1"; else extra+=("$1"); fi ;;
  esac
  shift
done

python="$(scripts/dev-python.sh)"
if [ "$ci" = 1 ]; then
  profile=debug
  cargo_profile=()
  n="${n:-1500}"
  out=("--out-dir" "$root/target/soak-ci" "--name" "ci")
else
  profile=release
  cargo_profile=(--release)
  n="${n:-10000}"
  out=("--out-dir" "$root/soak/results")
fi

echo "==> building infsh ($profile)" >&2
cargo build --locked "${cargo_profile[@]}" -p infsh-cli --bin infsh >&2
echo "==> building the soak harness ($profile)" >&2
cargo build --locked "${cargo_profile[@]}" --manifest-path soak/Cargo.toml --target-dir "$root/target/soak" >&2

label="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if ! git diff --quiet HEAD -- 2>/dev/null; then label="$label+local-changes"; fi

echo "==> soak: $n tasks" >&2
"$root/target/soak/$profile/infsh-soak" \
  --infsh "$root/target/$profile/infsh" \
  --python "$python" \
  --app-dir "$root/tests/fixtures/apps/soak-app" \
  --tasks "$n" \
  --label "$label" \
  "${out[@]}" \
  ${extra[@]+"${extra[@]}"}

# The fleet soak (crates/infsh-cli/tests/fleet_soak.rs): 500 tasks over two
# API nodes and three engines on PostgreSQL, engines killed (-9) and
# restarted during the run; every task must end once. An ignored test (a
# minute and a half), run here. PostgreSQL as scripts/test.sh finds it.
echo "==> fleet soak: 500 tasks, engines killed and restarted" >&2
if [ -z "${INFSH_TEST_DATABASE_URL:-}" ]; then
  pg_out="$(scripts/test-postgres.sh)"
  export INFSH_TEST_DATABASE_URL="$(sed -n 1p <<<"$pg_out")"
  pg_dir="$(sed -n 2p <<<"$pg_out")"
  if [ -n "$pg_dir" ]; then
    trap 'scripts/test-postgres.sh --stop "$pg_dir"' EXIT
  fi
fi
export INFSH_TEST_PYTHON="${INFSH_TEST_PYTHON:-$python}"
cargo nextest run --locked -p infsh-cli --test fleet_soak --run-ignored all --no-capture
