#!/usr/bin/env bash
# The web playground's tests: its pure modules under node's test runner, and
# the page in a real headless Chromium (Debian's `chromium`, driven by
# playwright-core from npm; Playwright's own browser builds are never
# downloaded) against the real `infsh serve` (target/debug/infsh, built
# here if missing). Installs what it needs, idempotently: chromium with
# apt-get, the pinned npm packages with `npm ci`. Screenshots of every step
# land in tests/browser/output/ (ignored by git).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "==> installing node and npm"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
if [ ! -x /usr/bin/chromium ] && [ -z "${CHROMIUM_PATH:-}" ]; then
  echo "==> installing chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
# node_modules/.infsh-stamp: the lock file it was installed from.
if ! cmp -s tests/browser/package-lock.json tests/browser/node_modules/.infsh-stamp 2>/dev/null; then
  echo "==> npm ci (tests/browser)"
  (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund >/dev/null &&
    cp package-lock.json node_modules/.infsh-stamp)
fi
if [ -z "${INFSH_BIN:-}" ]; then
  cargo build -p infsh-cli --locked >/dev/null
fi
export INFSH_TEST_PYTHON="${INFSH_TEST_PYTHON:-$(scripts/dev-python.sh)}"

rm -rf tests/browser/output
cd tests/browser
node --test --test-concurrency=1 unit/ e2e/
