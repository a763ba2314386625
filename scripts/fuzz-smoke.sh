#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ and runs each one briefly from its seed corpus; fails on any
# crash, panic, leak, timeout or out-of-memory. A smoke test, not a fuzzing campaign: long runs
# are `cargo fuzz run <target> -- -max_total_time=600` (see fuzz/README.md).
#
#   scripts/fuzz-smoke.sh [TARGET...]     all targets when none is named
#
# FUZZ_SECONDS   seconds per target (default 20)
# FUZZ_SANITIZER address (default) or none; none also when the address build fails
#
# cargo-fuzz is installed into ~/.cargo/bin when missing (`cargo install cargo-fuzz --locked`,
# several minutes on a small machine; cache ~/.cargo/bin in CI). libFuzzer needs nightly-only
# compiler flags: on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks them for this build only.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-20}"
sanitizer="${FUZZ_SANITIZER:-address}"

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "fuzz-smoke: cargo-fuzz is missing; installing it (cargo install cargo-fuzz --locked)"
    started=$SECONDS
    cargo install cargo-fuzz --locked
    echo "fuzz-smoke: cargo-fuzz installed in $((SECONDS - started)) s"
fi
if ! rustc --version | grep -q nightly; then
    export RUSTC_BOOTSTRAP=1
fi

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(cargo fuzz list --fuzz-dir fuzz)
fi

started=$SECONDS
if ! cargo fuzz build --fuzz-dir fuzz -s "$sanitizer"; then
    if [ "$sanitizer" = none ]; then
        echo "fuzz-smoke: the fuzz targets do not build" >&2
        exit 1
    fi
    echo "fuzz-smoke: the $sanitizer sanitizer build failed; building without a sanitizer"
    sanitizer=none
    cargo fuzz build --fuzz-dir fuzz -s none
fi
echo "fuzz-smoke: targets built in $((SECONDS - started)) s (sanitizer: $sanitizer)"

# New inputs go to a scratch corpus, so the seeds in fuzz/corpus stay as committed.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target"
    echo "fuzz-smoke: $target for ${seconds} s"
    if ! cargo fuzz run --fuzz-dir fuzz -s "$sanitizer" "$target" \
        "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -print_final_stats=1; then
        failed+=("$target")
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: FAILED: ${failed[*]} (the crashing inputs are in fuzz/artifacts/<target>/;" \
        "reproduce with: cargo fuzz run <target> fuzz/artifacts/<target>/<file>)" >&2
    exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets, no crash"
