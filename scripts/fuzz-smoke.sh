#!/usr/bin/env bash
# Builds the fuzz targets of fuzz/ and runs each one from its seed corpus; fails on any crash,
# panic, timeout or out-of-memory. With the default 10 s per target it is the smoke test CI runs;
# FUZZ_SECONDS=600 makes it a fuzzing campaign.
#
#   scripts/fuzz-smoke.sh [TARGET...]     all targets when none is named
#
# FUZZ_SECONDS   seconds per target (default 10)
# FUZZ_PROFILE   cargo profile: smoke (default; unoptimised, quick to build) or release (for long runs)
#
# Only cargo is needed: the targets are built with the coverage flags `cargo fuzz` would pass
# (libFuzzer's sanitizer-coverage instrumentation; stable rustc accepts them as they are), so CI
# does not spend minutes installing cargo-fuzz. Crashing inputs are kept in fuzz/artifacts/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-10}"
profile="${FUZZ_PROFILE:-smoke}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
# --target keeps the flags off build scripts and proc macros, as cargo fuzz does.
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    mapfile -t targets < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml | grep -v '^azlin-fuzz$')
fi

started=$SECONDS
cargo build --profile "$profile" --locked --target "$triple" --bins
echo "fuzz-smoke: ${#targets[@]} targets built in $((SECONDS - started)) s"

# New inputs go to a scratch corpus, so the seeds in fuzz/corpus stay as committed.
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
failed=()
for target in "${targets[@]}"; do
    mkdir -p "$scratch/$target" "artifacts/$target"
    echo "fuzz-smoke: $target for ${seconds} s"
    if ! "$CARGO_TARGET_DIR/$triple/$profile/$target" "$scratch/$target" "corpus/$target" \
        -artifact_prefix="artifacts/$target/" -max_total_time="$seconds" \
        -print_final_stats=1 2>"$scratch/$target.log"; then
        tail -n 40 "$scratch/$target.log" >&2
        failed+=("$target")
    fi
    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$scratch/$target.log" |
        sed "s/^/fuzz-smoke: $target /"
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "fuzz-smoke: FAILED: ${failed[*]} (the crashing inputs are in fuzz/artifacts/<target>/;" \
        "reproduce by running the target binary on the file)" >&2
    exit 1
fi
echo "fuzz-smoke: ${#targets[@]} targets, no crash"
