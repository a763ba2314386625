#!/usr/bin/env bash
# Figure of issue "Workflow sessions": per-step overhead of `azlin run` — one job of 100
# `run: "true"` steps on one nspawn VM — next to its floor, a raw `ssh` loop with ControlMaster
# to an nspawn VM of the same image, measured in the same run.
# Target: <= 1.5x the raw ssh loop and < 10 ms a step (terraphim's runner reports 100-150 ms).
#
#   bench/workflow_steps.sh [STEPS]      (default 100; needs root and a built base image)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/work.sh
source bench/work.sh
steps="${1:-100}"
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
cargo build -q --release -p azlin
azlin="$PWD/target/release/azlin"
work="$(mktemp -d)"
export AZLIN_HOME="$work/home"
trap '"$azlin" delete bench-floor --yes >/dev/null 2>&1 || true; ssh -O exit -o ControlPath="$work/cm" x 2>/dev/null || true; remove_work "$work"' EXIT

# The floor: a VM made by azlin, reached by a plain ssh loop over one ControlMaster connection.
"$azlin" new --provider nspawn --name bench-floor --no-connect >/dev/null 2>&1
read -r address host_key < <("$azlin" status bench-floor -o json | python3 -c 'import json,sys; v=json.load(sys.stdin)["vm"]; print(v["address"], v["host_key"])')
echo "$address $host_key" > "$work/known_hosts"
ssh_opts=(-i "$AZLIN_HOME/.ssh/azlin_key" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes
          -o "UserKnownHostsFile=$work/known_hosts" -o ControlMaster=auto -o "ControlPath=$work/cm" -o ControlPersist=120)
ssh "${ssh_opts[@]}" "azureuser@$address" true
floor() {
  local cmd="$1" t0 t1
  t0=$(date +%s%N)
  for _ in $(seq 1 "$steps"); do ssh "${ssh_opts[@]}" "azureuser@$address" "$cmd"; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 / steps ))
}
floor_user=$(floor true)
floor_root=$(floor "sudo -n true")

# azlin: one job of $steps `run: "true"` steps on its session VM.
{
  printf 'on: push\njobs:\n  steps:\n    runs-on: ubuntu-latest\n    steps:\n'
  for _ in $(seq 1 "$steps"); do printf '      - run: "true"\n'; done
} > "$work/steps.yml"
"$azlin" run "$work/steps.yml" --provider nspawn -o json > "$work/report.json" 2>"$work/run.log" || { tail -20 "$work/run.log"; exit 1; }
read -r job_us step_sum_us < <(python3 -c '
import json,sys
r=json.load(open(sys.argv[1])); j=r["workflows"][0]["jobs"][0]
assert j["result"]=="success" and len(j["steps"])==int(sys.argv[2])
print(j["duration_ms"]*1000//len(j["steps"]), sum(s["duration_ms"] for s in j["steps"])*1000//len(j["steps"]))' "$work/report.json" "$steps")

echo
echo "per-step cost, $steps steps of run: \"true\" on one nspawn VM (microseconds a step)"
printf '%-52s %10s\n' "raw ssh loop, ControlMaster, 'true' (floor)" "$floor_user"
printf '%-52s %10s\n' "raw ssh loop, ControlMaster, 'sudo -n true'" "$floor_root"
printf '%-52s %10s   (%s x floor)\n' "azlin run: job duration / steps (as root, like act)" "$job_us" \
  "$(python3 -c "print(round($job_us/$floor_user, 2))")"
printf '%-52s %10s\n' "azlin run: mean step duration" "$step_sum_us"
echo "target: <= 1.5 x floor and < 10000 us a step; terraphim reports 100000-150000 us a command"
