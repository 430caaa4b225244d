#!/usr/bin/env bash
# Property-based API test: schemathesis against a loopback `infsh serve` that
# this script starts itself (127.0.0.1, port 0, an API key, a few fixture
# apps), using the live GET /openapi.json (the committed docs/openapi.json
# plus every hosted function's own path and schemas). Stops the server at the
# end, whatever happens.
#
#   scripts/schemathesis.sh            # CI size: a bounded number of examples (< 2 min)
#   scripts/schemathesis.sh --full     # many more examples, every phase
#
# Checks: not_a_server_error (no 5xx), response_schema_conformance and
# content_type_conformance (answers match the document), status_code_conformance
# (only documented statuses). Environment: SCHEMATHESIS_MAX_EXAMPLES,
# SCHEMATHESIS_SEED, SCHEMATHESIS_MAX_TIME override the run's size.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

full=0
if [ "${1:-}" = "--full" ]; then full=1; shift; fi
if [ "$full" = 1 ]; then
  examples="${SCHEMATHESIS_MAX_EXAMPLES:-200}"
  phases="examples,coverage,fuzzing,stateful"
  max_time="${SCHEMATHESIS_MAX_TIME:-1200}"
else
  examples="${SCHEMATHESIS_MAX_EXAMPLES:-20}"
  phases="examples,coverage,fuzzing"
  max_time="${SCHEMATHESIS_MAX_TIME:-90}"
fi
seed="${SCHEMATHESIS_SEED:-20260101}"

python="$(scripts/dev-python.sh)"
venv_bin="$(dirname "$python")"
export PATH="$root/.tools/bin:$PATH"
cargo build -q -p infsh-cli
infsh="$root/target/debug/infsh"

work="$(mktemp -d "${TMPDIR:-/tmp}/infsh-schemathesis.XXXXXX")"
server_pid=""
cleanup() {
  if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for _ in $(seq 1 50); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.2
    done
    kill -KILL "$server_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/apps" "$work/data" "$work/cache"
for app in multi-fn validation-app files-app; do
  cp -r "tests/fixtures/apps/$app" "$work/apps/$app"
done
key="schemathesis-key"

# Loopback only, port 0: the real address is the first line on stdout.
"$infsh" --json serve --apps "$work/apps" --host 127.0.0.1 --port 0 \
  --api-key "$key" --data-dir "$work/data" --python "$python" \
  --queue-capacity 1000 --task-timeout 30 --shutdown-grace 2 --cancel-grace 1 \
  --max-body-mib 4 >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
url=""
for _ in $(seq 1 100); do
  if [ -s "$work/serve.out" ]; then
    url="$("$python" -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$work/serve.out")"
    break
  fi
  kill -0 "$server_pid" 2>/dev/null || break
  sleep 0.1
done
if [ -z "$url" ]; then
  echo "infsh serve did not start:" >&2
  cat "$work/serve.err" >&2
  exit 1
fi
case "$url" in
  http://127.0.0.1:*) ;;
  *) echo "refusing to test a non-loopback server: $url" >&2; exit 1 ;;
esac
echo "==> schemathesis against $url ($examples examples per operation, phases $phases)"

# Warnings: only those that mean this run is set up wrong (auth, base URL,
# the document itself). Hidden, because this API answers them by design and
# they say nothing about a bug: missing_test_data and validation_mismatch
# (random task, file and app ids are 404s; schema-valid inputs naming files
# or apps that do not exist are refused), low_valid_rate (the same, counted),
# rate_limited (a full app queue answers 429). Failures of the checks below
# are what fail the run.
warnings="missing_auth,base_url_mismatch,unresolvable_reference,unsupported_regex,missing_deserializer,unused_openapi_auth,method_not_allowed,timeout_units"

# Two passes over one server. Draining (`POST /apps/{ns}/{name}/drain`,
# `/engines/{name}/drain`) holds every later run of that app in its queue
# until an undrain, as documented; a fuzzed drain in the middle of the run
# made the next `?wait=true` run of that app wait past the 60 s request
# timeout. So the drain and undrain operations get a pass of their own,
# after every other operation was fuzzed; each operation is still fuzzed,
# with the same checks.
drains='/(un)?drain$'
fuzz() {
  "$venv_bin/schemathesis" run "$url/openapi.json" \
    --url "$url" \
    -H "Authorization: Bearer $key" \
    --checks not_a_server_error,response_schema_conformance,content_type_conformance,status_code_conformance \
    --phases "$phases" \
    --max-examples "$examples" \
    --seed "$seed" \
    --request-timeout 60 \
    --workers 1 \
    --warnings "$warnings" \
    --no-color \
    --report junit --report-dir "$root/target/schemathesis" \
    "$@"
}

set +e
# From the scratch folder: schemathesis keeps its example database in the
# working directory (.schemathesis/), which must not land in the repository.
cd "$work"
fuzz --max-time "$max_time" --exclude-path-regex "$drains" "$@"
rc=$?
echo "==> the drain and undrain operations"
fuzz --max-time 30 --include-path-regex "$drains" "$@"
drain_rc=$?
[ "$rc" = 0 ] && rc=$drain_rc
set -e
cd "$root"

# A panic anywhere in the server (also inside a spawned task) is a failure
# even when every answer looked fine.
if grep -n "panicked" "$work/serve.err" >&2; then
  echo "the server panicked during the run (see above)" >&2
  rc=1
fi
if ! kill -0 "$server_pid" 2>/dev/null; then
  echo "the server died during the run:" >&2
  tail -50 "$work/serve.err" >&2
  rc=1
fi
exit "$rc"
