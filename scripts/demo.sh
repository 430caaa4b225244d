#!/usr/bin/env bash
# Runs the multi-function image example end to end, as a new user would:
# builds infsh, lets infsh build the app's own virtual environment from its
# requirements.txt (with uv), lists the functions, runs one with a File input
# and output, then tests every function with a single setup.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

scripts/dev-python.sh >/dev/null          # provides uv (and the test interpreter)
export PATH="$root/.tools/bin:$PATH"
cargo build --release --locked -p infsh-cli
infsh="$root/target/release/infsh"
app="$root/examples/image-app"
out="$root/target/demo-output"

echo "==> infsh app functions examples/image-app"
"$infsh" app functions "$app"
echo
echo "==> infsh app run examples/image-app --function upscale --input input_upscale.json --output-dir $out"
"$infsh" app run "$app" --function upscale --input "$app/input_upscale.json" --output-dir "$out"
echo
echo "==> infsh app test examples/image-app   (one setup, every function)"
"$infsh" app test "$app"
echo
echo "==> infsh app run examples/text-app --function stream"
"$infsh" app run "$root/examples/text-app" --function stream --input "$root/examples/text-app/input_stream.json"
