#!/usr/bin/env bash
# Benchmark of issue 5's figure: `azlin list` with 50 VMs in the ARM test double (HTTP on
# 127.0.0.1; Azure is not reachable here), target 1 HTTP request per list.
#
# 1. The azure provider's `list` in-process: HTTP requests per list and wall times, next to the
#    az-CLI baseline (only the process-spawn cost of a stub `az` can be measured here).
# 2. The real binary: `azlin list --provider azure -o json`, a fresh process each run (so each
#    run also asks the stub `az` for the account and a token), with the double started by
#    `cargo run -p azlin-testkit --example arm_double -- --vms N`: HTTP requests the double
#    received and az runs per list, and wall time.
#
#   bench/azure_list.sh                  # release build, 50 VMs, 20 runs
#   PROFILE=dev VMS=50 RUNS=20 bench/azure_list.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/work.sh
source bench/work.sh
profile="${PROFILE:-release}"
vms="${VMS:-50}"
runs="${RUNS:-20}"
case "$profile" in
dev) profile_dir=debug ;;
*) profile_dir="$profile" ;;
esac

# --- 1. the provider in-process, and the baseline ---------------------------------------------
cargo test -q --profile "$profile" -p azlin-providers --test azure_list_bench -- \
    --ignored --nocapture --test-threads=1

# --- 2. the real binary -----------------------------------------------------------------------
cargo build -q --profile "$profile" -p azlin --bin azlin
cargo build -q --profile "$profile" -p azlin-testkit --example arm_double
target="$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)"
azlin="$target/$profile_dir/azlin"
arm_double="$target/$profile_dir/examples/arm_double"

work="$(mktemp -d)"
double_pid=""
cleanup() {
    # SIGTERM lets the double stop its server and remove its stub az; KILL only if it hangs.
    if [ -n "$double_pid" ] && kill -0 "$double_pid" 2>/dev/null; then
        kill -TERM "$double_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$double_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$double_pid" 2>/dev/null || true
        wait "$double_pid" 2>/dev/null || true
    fi
    remove_work "$work"
}
trap cleanup EXIT

coproc DOUBLE { exec "$arm_double" --vms "$vms"; }
double_pid="$DOUBLE_PID"
from_double="${DOUBLE[0]}"
to_double="${DOUBLE[1]}"

# One answer line from the double (30 s at most).
answer() {
    local line
    if ! IFS= read -r -t 30 -u "$from_double" line; then
        echo "azure_list.sh: the ARM double did not answer" >&2
        exit 1
    fi
    printf '%s\n' "$line"
}

endpoint="" az_bin=""
while :; do
    line="$(answer)"
    case "$line" in
    "endpoint "*) endpoint="${line#endpoint }" ;;
    "az_bin "*) az_bin="${line#az_bin }" ;;
    ready) break ;;
    esac
done

mkdir -p "$work/home/.config/azlin"
printf '[azure]\nendpoint = "%s"\n' "$endpoint" > "$work/home/.config/azlin/config.toml"
run_azlin() {
    env -i PATH="$az_bin:$PATH" HOME="$work/home" AZLIN_HOME="$work/home" USER=bench \
        "$azlin" "$@"
}
now_ns() { date +%s%N; }

# Warm-up (page cache, state store creation), not counted.
run_azlin list --provider azure -o json > /dev/null

times_ms=()
requests=()
az_runs=()
for _ in $(seq "$runs"); do
    echo clear >&"$to_double"
    [ "$(answer)" = ok ]
    started="$(now_ns)"
    run_azlin list --provider azure -o json > "$work/list.json"
    ended="$(now_ns)"
    listed="$(jq length "$work/list.json")"
    if [ "$listed" != "$vms" ]; then
        echo "azure_list.sh: azlin listed $listed VMs, expected $vms" >&2
        exit 1
    fi
    echo requests >&"$to_double"
    read -r _ n _ m <<< "$(answer)"
    times_ms+=("$(( (ended - started) / 1000 ))")
    requests+=("$n")
    az_runs+=("$m")
done
echo clear >&"$to_double"
[ "$(answer)" = ok ]
run_azlin list --provider azure -o json > /dev/null
echo log >&"$to_double"
request_log=()
while :; do
    line="$(answer)"
    [ "$line" = end ] && break
    request_log+=("$line")
done

version_ms=()
for _ in $(seq "$runs"); do
    started="$(now_ns)"
    run_azlin --version > /dev/null
    ended="$(now_ns)"
    version_ms+=("$(( (ended - started) / 1000 ))")
done

# Median and p95 of microsecond figures, printed in ms.
stats() {
    sort -n | awk '{ v[NR] = $1 } END {
        m = v[int((NR + 1) / 2)]; p = v[int(NR * 0.95 + 0.999)]; if (p == "") p = v[NR];
        printf "%.1f ms (p95 %.1f ms)", m / 1000, p / 1000 }'
}
range() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { if (lo == hi) print lo; else print lo "-" hi }'; }

echo
echo "azlin list --provider azure -o json (the real binary, a new process per run), $vms VMs in the ARM test double:"
echo "  HTTP requests per list:   $(printf '%s\n' "${requests[@]}" | range) over $runs runs (target 1): ${request_log[*]}"
echo "  az runs per list:         $(printf '%s\n' "${az_runs[@]}" | range) (account show, get-access-token; the stub az is a shell script)"
echo "  wall time, median of $runs: $(printf '%s\n' "${times_ms[@]}" | stats)"
echo "  azlin --version, median of $runs (process start floor): $(printf '%s\n' "${version_ms[@]}" | stats)"
echo "baseline: rysweet/azlin spawns \`az\` for its list, ~3 s per list on Azure (their figure, not measured here)"
