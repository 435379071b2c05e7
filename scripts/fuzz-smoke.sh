#!/usr/bin/env bash
# Fuzz smoke for CI: builds the cargo-fuzz targets and runs each for a short time
# (default 30 s) starting from its committed corpus. Fails if any target finds a
# crash, a leak, a timeout or an allocation over the limit.
#
#   scripts/fuzz-smoke.sh [SECONDS] [TARGET...]
#
# Needs cargo-fuzz (`cargo install cargo-fuzz`) and a nightly toolchain (libFuzzer's
# sanitizer flags are nightly-only; see fuzz/README.md). New inputs found during the
# smoke go to a scratch directory, so the committed corpus is not modified.
set -euo pipefail

cd "$(dirname "$0")/.."
secs="${1:-30}"
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(frame_decoder handshake_request handshake_response deflate conn)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is not installed (cargo install cargo-fuzz)" >&2
    exit 2
fi
toolchain="+nightly"
if ! cargo +nightly --version >/dev/null 2>&1; then
    # No nightly here: let stable accept libFuzzer's nightly-only flags (fuzz/README.md).
    echo "fuzz-smoke: no nightly toolchain; using stable with RUSTC_BOOTSTRAP=1" >&2
    toolchain=""
    export RUSTC_BOOTSTRAP=1
fi

# Leave the fuzz crate's own target dir alone even if the caller set one.
unset CARGO_TARGET_DIR
cd fuzz
cargo $toolchain fuzz build -O
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT

status=0
for t in "${targets[@]}"; do
    mkdir -p "$scratch/$t" "artifacts/$t"
    log="$scratch/$t.log"
    # Corpus order: scratch first (new inputs land there), then the committed ones.
    if cargo $toolchain fuzz run -O "$t" "$scratch/$t" "corpus/$t" "seeds/$t" -- \
        -max_total_time="$secs" -malloc_limit_mb=64 -rss_limit_mb=2048 \
        -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        runs=$(grep -E '^stat::number_of_executed_units' "$log" | awk '{print $2}')
        echo "fuzz-smoke: $t ok (${runs:-?} executions in ${secs}s)"
    else
        status=1
        echo "fuzz-smoke: $t FAILED; the end of its log:" >&2
        tail -n 60 "$log" >&2
        ls "artifacts/$t" >&2 || true
    fi
done
exit $status
