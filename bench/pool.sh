#!/usr/bin/env bash
# Figures of issue "Warm pools and snapshots", in one run:
#  1. allocation from a warm pool (the claim of a ready VM in the state store), p50 and p99, on
#     sim and on nspawn (SIM_ALLOCATIONS and NSPAWN_ALLOCATIONS sessions, one at a time, each
#     from a pool of as many ready VMs);
#  2. session usable (from asking for a VM to its first command having run), p50, warm against
#     a cold boot;
#  3. a one-job, one-step workflow: wall time of `azlin run` from start to exit, warm pool
#     against cold boot, p50 over NSPAWN_RUNS runs each;
#  4. QEMU: `snapshot restore` of a running-state snapshot until the VM answers SSH, against a
#     cold boot until SSH (`azlin new --provider qemu`). QEMU=0 skips it (minutes under TCG).
#
#   bench/pool.sh [SIM_ALLOCATIONS] [NSPAWN_RUNS] [NSPAWN_ALLOCATIONS]
#                 (default 100, 5 and 30; needs root and the base image)
#   AZLIN_BIN=target/debug/azlin bench/pool.sh      measures an existing build instead
set -euo pipefail
cd "$(dirname "$0")/.."
sim_allocations="${1:-100}"
nspawn_runs="${2:-5}"
nspawn_allocations="${3:-30}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
work="$(mktemp -d)"
export AZLIN_HOME="$work/home" AZLIN_CONFIG="$work/config.toml"
cat > "$AZLIN_CONFIG" <<EOF
[pool.simbench]
provider = "sim"
min_ready = $sim_allocations
max = $sim_allocations
labels = ["sim-pool"]

[pool.nsbench]
provider = "nspawn"
min_ready = $nspawn_allocations
max = $nspawn_allocations
labels = ["nspawn-pool"]

[pool.warm]
provider = "nspawn"
min_ready = 2
max = 4
labels = ["self-hosted"]
EOF
cleanup() {
  "$azlin" pool drain >/dev/null 2>&1 || true
  for vm in $("$azlin" list -o json 2>/dev/null | python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin)]'); do
    "$azlin" delete "$vm" --yes >/dev/null 2>&1 || true
  done
  remove_work "$work"
}
trap cleanup EXIT

# Waits until pool $1 has $2 VMs ready and no refill runs.
await_refill() {
  for _ in $(seq 1 3000); do
    if ! pgrep -f "pool fill $1" >/dev/null &&
      "$azlin" pool status "$1" -o json | python3 -c '
import json,sys; s=json.load(sys.stdin)[0]; sys.exit(0 if s["ready"]==int(sys.argv[1]) and s["booting"]==0 else 1)' "$2"; then
      return 0
    fi
    sleep 0.1
  done
  echo "pool $1 was not refilled" >&2
  exit 1
}

# Percentile $2 (0-100) of the numbers on stdin, nearest rank.
percentile() {
  python3 -c '
import math,sys
v=sorted(float(x) for x in sys.stdin.read().split())
p=float(sys.argv[1]); print(round(v[max(0,math.ceil(p/100*len(v))-1)],2))' "$1"
}

# The field $2 of every session in the reports $1... (ms; claim_us is turned into ms).
session_field() {
  local field="$1"; shift
  python3 -c '
import json,sys
f=sys.argv[1]
for path in sys.argv[2:]:
    for w in json.load(open(path))["workflows"]:
        for s in w["sessions"]:
            v=s.get(f)
            if v is not None: print(v/1000 if f=="claim_us" else v)' "$field" "$@"
}

run_timed() { # report-file workflow provider → prints wall ms
  local started ended
  started=$(date +%s%N)
  "$azlin" run "$2" --provider "$3" -o json > "$1" 2>"$1.log" || { tail -20 "$1.log" >&2; exit 1; }
  ended=$(date +%s%N)
  echo $(( (ended - started) / 1000000 ))
}

# 1. One run of N one-step jobs, a session each, one at a time, from a pool of N ready VMs (the
#    refills boot in the background meanwhile, as they would).
# many_claims POOL LABEL PROVIDER N → the report file
many_claims() {
  "$azlin" pool fill "$1" > /dev/null 2>&1
  {
    printf 'on: push\njobs:\n'
    for i in $(seq 1 "$4"); do
      printf '  j%s:\n    runs-on: %s\n    steps:\n      - run: "true"\n' "$i" "$2"
    done
  } > "$work/$1.yml"
  "$azlin" run "$work/$1.yml" --provider "$3" --vm-scope job --max-concurrent 1 -o json \
    > "$work/$1.json" 2>"$work/$1.log" || { tail -20 "$work/$1.log" >&2; exit 1; }
  await_refill "$1" "$4"
  "$azlin" pool drain "$1" > /dev/null 2>&1
  echo "$work/$1.json"
}
sim_report=$(many_claims simbench sim-pool sim "$sim_allocations")
sim_taken=$(session_field claim_us "$sim_report" | wc -l)
sim_claim_p50=$(session_field claim_us "$sim_report" | percentile 50)
sim_claim_p99=$(session_field claim_us "$sim_report" | percentile 99)
sim_usable_p50=$(session_field usable_ms "$sim_report" | percentile 50)
ns_report=$(many_claims nsbench nspawn-pool nspawn "$nspawn_allocations")
ns_taken=$(session_field claim_us "$ns_report" | wc -l)
ns_claim_p50=$(session_field claim_us "$ns_report" | percentile 50)
ns_claim_p99=$(session_field claim_us "$ns_report" | percentile 99)

# 2. nspawn: the same one-step workflow, warm (its runs-on served by the pool) and cold.
printf 'on: push\njobs:\n  one:\n    runs-on: self-hosted\n    steps:\n      - run: "true"\n' > "$work/warm.yml"
printf 'on: push\njobs:\n  one:\n    runs-on: ubuntu-latest\n    steps:\n      - run: "true"\n' > "$work/cold.yml"
"$azlin" pool fill warm > /dev/null 2>&1
warm_walls=(); cold_walls=(); warm_reports=(); cold_reports=()
for i in $(seq 1 "$nspawn_runs"); do
  await_refill warm 2
  warm_walls+=("$(run_timed "$work/warm-$i.json" "$work/warm.yml" nspawn)")
  warm_reports+=("$work/warm-$i.json")
  await_refill warm 2
  cold_walls+=("$(run_timed "$work/cold-$i.json" "$work/cold.yml" nspawn)")
  cold_reports+=("$work/cold-$i.json")
done
warm_usable_p50=$(session_field usable_ms "${warm_reports[@]}" | percentile 50)
cold_usable_p50=$(session_field usable_ms "${cold_reports[@]}" | percentile 50)
warm_wall_p50=$(printf '%s\n' "${warm_walls[@]}" | percentile 50)
cold_wall_p50=$(printf '%s\n' "${cold_walls[@]}" | percentile 50)

if [ "${QEMU:-1}" != 0 ]; then
  # `azlin new` waits for cloud-init too: its SSH stage is the cold boot's time to SSH.
  "$azlin" new --provider qemu --name qbench --no-connect -o json > "$work/qemu-new.json" 2>"$work/qemu-new.log" \
    || { tail -20 "$work/qemu-new.log"; exit 1; }
  qemu_cold_ms=$(python3 -c '
import json,sys; t=json.load(open(sys.argv[1]))["vms"][0]["timings_ms"]; print(t["provision"]+t["ssh"])' "$work/qemu-new.json")
  "$azlin" snapshot create qbench warm > /dev/null 2>&1
  started=$(date +%s%N)
  "$azlin" snapshot restore qbench warm > /dev/null 2>"$work/qemu-restore.log" || { tail "$work/qemu-restore.log"; exit 1; }
  "$azlin" connect qbench -- true
  qemu_restore_ms=$(( ($(date +%s%N) - started) / 1000000 ))
  "$azlin" delete qbench --yes > /dev/null 2>&1
fi

echo "allocation from a warm pool (claim), sim:    p50 ${sim_claim_p50} ms, p99 ${sim_claim_p99} ms over ${sim_taken} allocations (target p50 < 10 ms; the spec's figure: ~50 ms)"
echo "allocation from a warm pool (claim), nspawn: p50 ${ns_claim_p50} ms, p99 ${ns_claim_p99} ms over ${ns_taken} allocations"
echo "session usable, sim (warm):                  p50 ${sim_usable_p50} ms"
echo "session usable, nspawn:                      p50 ${warm_usable_p50} ms warm, ${cold_usable_p50} ms cold boot (target warm < 50 ms)"
echo "one-job one-step workflow, nspawn (wall):    p50 ${warm_wall_p50} ms warm, ${cold_wall_p50} ms cold boot over ${nspawn_runs} runs each (target warm <= 500 ms)"
if [ "${QEMU:-1}" != 0 ]; then
  echo "qemu restore of a running-state snapshot to SSH: ${qemu_restore_ms} ms; cold boot to SSH: ${qemu_cold_ms} ms"
fi
