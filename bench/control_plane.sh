#!/usr/bin/env bash
# Figures of issue 3 (the event-driven control plane), each next to its baseline, measured in the
# same run:
#
# 1. (crates/control/benches/control_plane.rs) request -> complete round trip with the sim
#    provider at 0 s boot, one request at a time: p50/p99, and sustained requests/s (a burst, 64
#    requests in flight) — in-process (baseline) and over NATS JetStream; the same for the
#    transport alone (no provider work); and where a sim launch spends its time outside the
#    transport.
# 2. (same) N = 1, 8, 64 sim VMs with a 2 s boot through two workers over NATS: wall time from
#    the first submit to the last complete event, next to the sequential baseline N x one VM.
# 3. (here) the same fleets end to end with the release binary: `azlin new --count N` over NATS
#    with two `azlin worker` processes (concurrency 32 each), and in-process, wall time of the
#    whole command next to N x its one-VM time.
#
#   bench/control_plane.sh                                   # 1000 round trips, bursts of 2000
#   BENCH_ROUND_TRIPS=300 BENCH_BURST=1000 bench/control_plane.sh
#
# Needs nats-server >= 2.10 (scripts/install-nats.sh); every part starts its own on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/work.sh
source bench/work.sh
bash scripts/install-nats.sh >/dev/null
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"
cargo bench -q -p azlin-control --bench control_plane

# --- 3. the real binary ------------------------------------------------------------------------
cargo build -q --release -p azlin --bin azlin
azlin="$PWD/target/release/azlin"
work="$(mktemp -d)"
pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    remove_work "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
nats-server -a 127.0.0.1 -p "$port" -js -sd "$work/js" -l "$work/nats.log" &
pids+=("$!")
url="nats://127.0.0.1:$port"
for _ in $(seq 100); do grep -q "Server is ready" "$work/nats.log" 2>/dev/null && break; sleep 0.05; done

# Runs `azlin new --count N` in a fresh home and prints its wall time in seconds.
wall() {
    local home="$1" n="$2"
    shift 2
    local started ended
    started="$(date +%s%N)"
    env AZLIN_HOME="$home" AZLIN_SIM_BOOT_MS=2000 "$@" "$azlin" new --provider sim \
        --count "$n" --name "f$n" --no-connect -o json >/dev/null 2>"$work/new.err" \
        || { cat "$work/new.err" >&2; exit 1; }
    ended="$(date +%s%N)"
    awk -v a="$started" -v b="$ended" 'BEGIN { printf "%.3f", (b - a) / 1e9 }'
}

nats_home="$work/nats-home"
for i in 1 2; do
    env AZLIN_HOME="$nats_home" AZLIN_SIM_BOOT_MS=2000 "$azlin" worker --nats "$url" \
        --concurrency 32 2>"$work/worker-$i.log" &
    pids+=("$!")
done
for _ in $(seq 100); do
    [ "$(cat "$work"/worker-*.log 2>/dev/null | grep -c serving)" -eq 2 ] && break
    sleep 0.05
done
if [ "$(cat "$work"/worker-*.log | grep -c serving)" -ne 2 ]; then
    echo "the two workers did not both start:" >&2
    cat "$work"/worker-*.log >&2
    exit 1
fi

echo
echo "## 3. azlin new --count N end to end (release binary, sim provider, 2 s boot)"
echo
echo "| N | over NATS (2 worker processes) | NATS baseline N x one VM | NATS wall / one VM | in-process | in-process baseline N x one VM | in-process wall / one VM |"
echo "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |"
wall "$work/warm" 1 >/dev/null
one_nats="" one_local=""
for n in 1 8 64; do
    t_nats="$(wall "$nats_home" "$n" AZLIN_NATS_URL="$url")"
    t_local="$(wall "$work/local-$n" "$n")"
    [ -z "$one_nats" ] && one_nats="$t_nats" && one_local="$t_local"
    awk -v n="$n" -v tn="$t_nats" -v on="$one_nats" -v tl="$t_local" -v ol="$one_local" \
        'BEGIN { printf "| %d | %.2f s | %.2f s | %.3f | %.2f s | %.2f s | %.3f |\n", n, tn, n * on, tn / on, tl, n * ol, tl / ol }'
done
echo
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) after the run"
