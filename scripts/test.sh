#!/usr/bin/env bash
# The whole test suite, from a fresh clone: sets up what it needs (Rust
# components, the dev Python environment), then checks formatting and lints,
# runs the Python worker's own tests and every Rust test tier (unit, crate
# integration, end-to-end with the real binary and real Python workers).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

echo "==> setting up"
# Without rustup (a distribution's Rust), rustfmt and clippy must come with
# it; with rustup, a failure to add them is an error worth seeing now rather
# than as "no such command" two steps later.
if command -v rustup >/dev/null 2>&1; then
  rustup component add rustfmt clippy
fi
if ! command -v cargo-nextest >/dev/null 2>&1; then
  echo "==> installing cargo-nextest (once; builds from source, about 3-5 minutes on 2 cores)"
  cargo install --locked cargo-nextest
fi
export INFSH_TEST_PYTHON="$(scripts/dev-python.sh)"
export PATH="$root/.tools/bin:$PATH"

# PostgreSQL for the store's tests (127.0.0.1:5432 or INFSH_TEST_DATABASE_URL
# when one answers, else a throwaway cluster stopped when this script ends).
pg_out="$(scripts/test-postgres.sh)"
export INFSH_TEST_DATABASE_URL="$(sed -n 1p <<<"$pg_out")"
pg_dir="$(sed -n 2p <<<"$pg_out")"
if [ -n "$pg_dir" ]; then
  trap 'scripts/test-postgres.sh --stop "$pg_dir"' EXIT
fi
echo "    PostgreSQL for the tests: $INFSH_TEST_DATABASE_URL"

echo "==> cargo fmt --check"
cargo fmt --all -- --check

echo "==> cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "==> import cycles between files of a crate"
python3 scripts/check_module_cycles.py

echo "==> python worker tests"
"$INFSH_TEST_PYTHON" -m pytest -q python/tests

echo "==> Node.js and npm for JavaScript apps"
# node/infsh-worker runs JavaScript apps; app_node.rs and the client tests
# build their environments with npm ci from the npm registry.
node --version
npm --version
echo "==> node worker unit tests"
node --test node/infsh-worker/test/*.test.mjs

echo "==> rust tests"
# The `ci` profile (.config/nextest.toml) prints failures, slow tests and
# the summary, not one PASS line per test.
cargo nextest run --workspace --locked --no-fail-fast --profile ci

echo "==> soak (short CI run: 1,500 tasks at concurrency 64)"
bash scripts/soak.sh --ci

echo "==> schemathesis against the served OpenAPI document (short run)"
bash scripts/schemathesis.sh

echo "==> web playground: node unit tests and headless chromium (scripts/browser-tests.sh)"
INFSH_BIN="$root/target/debug/infsh" bash scripts/browser-tests.sh

echo "==> inferencesh client against infsh serve"
INFSH_BIN="$root/target/debug/infsh" "$INFSH_TEST_PYTHON" -m pytest -q tests/client

echo "==> inferencesh client against infsh serve --store postgres://"
INFSH_TEST_STORE=postgres INFSH_BIN="$root/target/debug/infsh" "$INFSH_TEST_PYTHON" -m pytest -q tests/client
