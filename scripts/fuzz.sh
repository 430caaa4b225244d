#!/usr/bin/env bash
# Coverage-guided fuzzing with cargo-fuzz (libFuzzer + AddressSanitizer) of
# the frame decoder and the HTTP request handling:
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]    # default: 300 s per target, every target
#
# Targets (fuzz/fuzz_targets/): frame_decode (bytes → infsh_protocol's
# read_message), run_request (bytes → run-body parsing and the path
# normaliser), http_request (bytes → a request through the whole router).
# The target bodies live in infsh_protocol::fuzzing and infsh_server::fuzzing,
# behind each crate's `fuzzing` feature (fuzz/Cargo.toml turns it on, and so
# do the crates' dev-dependencies on themselves): the same code runs on
# stable in every `cargo test` as deterministic property tests (the CI-sized
# run); this script is the long run.
#
# Toolchain: cargo-fuzz needs nightly for -Zsanitizer. With a nightly
# toolchain installed it is used; otherwise the stable one runs with
# RUSTC_BOOTSTRAP=1 (unstable flags on a stable compiler), which works for
# cargo-fuzz's flags. FUZZ_SANITIZER=none builds without ASan (faster).
#
# A crash leaves its input in fuzz/artifacts/<target>/ and makes this script
# exit 1; copy the input into fuzz/regressions/<target>/ once fixed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root/fuzz"

seconds="${1:-300}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
  targets=(frame_decode run_request http_request)
fi
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz
fi

toolchain=()
if rustup run nightly rustc --version >/dev/null 2>&1; then
  toolchain=(+nightly)
  echo "==> toolchain: $(rustup run nightly rustc --version)"
else
  export RUSTC_BOOTSTRAP=1
  echo "==> toolchain: $(rustc --version) with RUSTC_BOOTSTRAP=1 (no nightly installed)"
fi

status=0
for target in "${targets[@]}"; do
  echo "==> fuzzing $target for ${seconds}s"
  mkdir -p "corpus/$target" "regressions/$target"
  set +e
  cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" "$target" \
    "corpus/$target" "seeds/$target" "regressions/$target" -- \
    -max_total_time="$seconds" \
    -dict="dict/$target.dict" \
    -max_len=65536 \
    -rss_limit_mb=4096 \
    -timeout=20 \
    -print_final_stats=1
  rc=$?
  set -e
  if [ "$rc" -ne 0 ]; then
    echo "!! $target failed (exit $rc); the input is in fuzz/artifacts/$target/" >&2
    status=1
  fi
done
# The http_request target keeps a scratch engine per process here.
rm -rf "${TMPDIR:-/tmp}"/infsh-fuzz-http-* "${TMPDIR:-/tmp}"/infsh-fuzz-spill-* 2>/dev/null || true
exit "$status"
