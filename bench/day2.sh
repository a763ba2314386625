#!/usr/bin/env bash
# Figures of issue "Living with a VM", in one run, on nspawn VMs:
#  1. `azlin cp` of SIZE_MB MB to a VM, against plain `scp` of the same file to the same VM
#     (same key, same host key check), best of 3 each;
#  2. `azlin fleet run -- true` on FLEET VMs, against the same on one VM, best of 3 each; and
#     the floor of that ratio on this machine: plain `ssh VM true` to all FLEET VMs at once
#     against one, best of 3 each.
#
#   bench/day2.sh [SIZE_MB] [FLEET]        (default 256 and 16; needs root and the base image)
#   AZLIN_BIN=target/debug/azlin bench/day2.sh      measures an existing build instead
set -euo pipefail
cd "$(dirname "$0")/.."
size_mb="${1:-256}"
fleet="${2:-16}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
work="$(mktemp -d)"
export AZLIN_HOME="$work/home"
cleanup() {
  for vm in $("$azlin" list -o json 2>/dev/null | python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin)]'); do
    "$azlin" delete "$vm" --yes >/dev/null 2>&1 || true
  done
  remove_work "$work"
}
trap cleanup EXIT

now_ms() { date +%s%3N; }
# Best (smallest) wall time of running "$@" three times, in ms.
best_of_3() {
  local best=""
  for _ in 1 2 3; do
    local start; start=$(now_ms)
    "$@" >/dev/null 2>&1
    local took=$(( $(now_ms) - start ))
    if [ -z "$best" ] || [ "$took" -lt "$best" ]; then best=$took; fi
  done
  echo "$best"
}

"$azlin" new --provider nspawn --name fleet-1 --no-connect >/dev/null 2>&1
head -c "${size_mb}M" /dev/urandom > "$work/data"
vm_json="$("$azlin" status fleet-1 -o json)"
address=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["vm"]["address"])' <<<"$vm_json")
user=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["vm"]["user"])' <<<"$vm_json")
known_hosts="$AZLIN_HOME/.local/state/azlin/known_hosts.d/fleet-1"
azlin_cp_ms=$(best_of_3 "$azlin" cp "$work/data" fleet-1:data)
scp_ms=$(best_of_3 scp -q -i "$AZLIN_HOME/.ssh/azlin_key" -o IdentitiesOnly=yes -o BatchMode=yes \
  -o StrictHostKeyChecking=yes -o "UserKnownHostsFile=$known_hosts" "$work/data" "$user@$address:data")

for i in $(seq 2 "$fleet"); do
  "$azlin" new --provider nspawn --name "fleet-$i" --no-connect >/dev/null 2>&1 &
done
wait
one_ms=$(best_of_3 "$azlin" fleet run --match fleet-1 -- true)
all_ms=$(best_of_3 "$azlin" fleet run --parallel "$fleet" -- true)
count=$("$azlin" list -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
# Plain OpenSSH (azlin's key, the VM's recorded host key checked strictly) running `true` on
# the first $1 VMs at once; their addresses are looked up before, outside the timing.
ssh_all() {
  local pids=()
  for args in "${ssh_args[@]:0:$1}"; do
    # shellcheck disable=SC2086
    ssh $args true & pids+=($!)
  done
  wait "${pids[@]}"
}
ssh_args=()
for i in $(seq 1 "$fleet"); do
  json="$("$azlin" status "fleet-$i" -o json)"
  addr=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["vm"]["address"])' <<<"$json")
  ssh_args+=("-i $AZLIN_HOME/.ssh/azlin_key -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile=$AZLIN_HOME/.local/state/azlin/known_hosts.d/fleet-$i $user@$addr")
done
ssh_one_ms=$(best_of_3 ssh_all 1)
ssh_all_ms=$(best_of_3 ssh_all "$fleet")

python3 - "$size_mb" "$azlin_cp_ms" "$scp_ms" "$count" "$one_ms" "$all_ms" "$ssh_one_ms" "$ssh_all_ms" <<'EOF'
import sys
size_mb, cp_ms, scp_ms, count, one_ms, all_ms, ssh_one_ms, ssh_all_ms = (int(x) for x in sys.argv[1:])
mb = size_mb * 1.048576
print(f"azlin cp of {size_mb} MiB to a VM: {mb / (cp_ms / 1000):6.1f} MB/s ({cp_ms} ms)")
print(f"plain scp of the same file:       {mb / (scp_ms / 1000):6.1f} MB/s ({scp_ms} ms)")
print(f"  azlin cp / scp throughput:      {scp_ms / cp_ms:6.2f}x   (target >= 1.0x)")
print(f"fleet run -- true on {count} VMs:     {all_ms} ms")
print(f"fleet run -- true on 1 VM:        {one_ms} ms")
print(f"  {count} VMs / 1 VM:                 {all_ms / one_ms:6.2f}x   (target <= 1.5x)")
print(f"plain ssh ... true to {count} VMs at once: {ssh_all_ms} ms; to 1 VM: {ssh_one_ms} ms: "
      f"{ssh_all_ms / ssh_one_ms:.2f}x (the floor of the ratio on this machine)")
EOF
