#!/usr/bin/env bash
# Figures of issue 3 (the event-driven control plane), each next to its baseline, measured in the
# same run (see crates/control/benches/control_plane.rs):
#
# 1. request -> complete round trip with the sim provider at 0 s boot, one request at a time:
#    p50/p99, and sustained requests/s (a burst, 64 requests in flight) — in-process (baseline)
#    and over NATS JetStream; the same for the transport alone (no provider work); and where a
#    sim launch spends its time outside the transport.
# 2. N = 1, 8, 64 sim VMs with a 2 s boot through two workers over NATS: wall time next to the
#    sequential baseline N x one VM.
#
#   bench/control_plane.sh                                   # 1000 round trips, bursts of 2000
#   BENCH_ROUND_TRIPS=300 BENCH_BURST=1000 bench/control_plane.sh
#
# Needs nats-server >= 2.10 (scripts/install-nats.sh); the benchmark starts its own on loopback.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-nats.sh >/dev/null
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) before the run"
cargo bench -q -p azlin-control --bench control_plane
echo "load average $(cut -d' ' -f1-3 /proc/loadavg) after the run"
