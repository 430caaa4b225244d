#!/usr/bin/env bash
# Runs the multi-function image example end to end, as a new user would:
# builds infsh, lets infsh build the app's own virtual environment from its
# requirements.txt (with uv), lists the functions, runs one with a File input
# and output, then tests every function with a single setup, and streams the
# text example. Each step says what it does and about how long it takes; the
# end says where everything is and what to try next.
#
# Needs network access to PyPI (the dev environment and the example's
# requirements) and, on the first run, to crates.io (the Rust dependencies).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

started=$SECONDS
step_no=0
step_started=$SECONDS
summary=()
# Closes the previous step (its time goes into the summary) and announces the next.
step() {
  finish_step
  step_no=$((step_no + 1))
  step_name="$1"
  step_started=$SECONDS
  echo
  echo "==> [$step_no/6] $1   (expected: $2)"
}
finish_step() {
  if [ "$step_no" -gt 0 ]; then
    summary+=("$(printf '  %-40s %5ss' "$step_name" "$((SECONDS - step_started))")")
  fi
}

step "dev Python environment (.venv, uv)" "seconds; about a minute the first time (pip)"
scripts/dev-python.sh >/dev/null
export PATH="$root/.tools/bin:$PATH"

# The `demo` profile (Cargo.toml): opt-level 1 without the fat LTO and debug
# info of `release`, which bench/ uses; docs/performance.md has both build
# times.
step "build infsh" "minutes from clean: docs/performance.md, Build profiles; seconds once built"
echo "\$ cargo build --profile demo --locked -p infsh-cli"
cargo build --profile demo --locked -p infsh-cli
infsh="$root/target/demo/infsh"
app="$root/examples/image-app"
out="$root/target/demo-output"

step "list the image app's functions" "~10-20 s the first time (uv builds the app's environment); under a second after"
echo "\$ infsh app functions examples/image-app"
"$infsh" app functions "$app"

step "run upscale: an image in, an image out" "~1 s"
echo "\$ infsh app run examples/image-app --function upscale --input input_upscale.json --output-dir target/demo-output"
"$infsh" app run "$app" --function upscale --input "$app/input_upscale.json" --output-dir "$out"

step "test every function with one setup" "~2 s"
echo "\$ infsh app test examples/image-app"
"$infsh" app test "$app"

step "stream text (text-app)" "a few seconds the first time; ~1 s after"
echo "\$ infsh app run examples/text-app --function stream"
"$infsh" app run "$root/examples/text-app" --function stream --input "$root/examples/text-app/input_stream.json"
finish_step

cache="${INFSH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/infsh}"
echo
echo "==> done in $((SECONDS - started))s"
printf '%s\n' "${summary[@]}"
echo
echo "  infsh binary:        $infsh"
echo "  upscaled image:      $(ls -1t "$out"/* 2>/dev/null | head -1 || echo "$out")"
echo "  app environments:    $cache/envs (one per requirements.txt, reused by every run)"
echo
echo "Try next:"
echo "  $infsh app init my-app && cd my-app && $infsh app run . --function reverse"
echo "  $infsh serve --apps $root/examples --api-key my-key      # the inference.sh HTTP API"
echo "  INFSH_API_URL=http://127.0.0.1:8080 INFSH_API_KEY=my-key $infsh app run infsh/image-app --function generate"
echo "  docs/writing-apps.md: writing your own app"
