#!/usr/bin/env bash
# Figures of the local `azlin new` (issue: azlin new end to end on this machine):
#   time from `azlin new` to SSH ready and to cloud-init done, per stage, next to the raw
#   systemd-nspawn boot of the same image with the same cloud-init seed, measured in this run;
#   and `azlin --version` next to `/bin/true`.
# Target: azlin adds <= 10 % to the raw boot; `azlin --version` <= 2 ms.
#
#   bench/local_new.sh [RUNS]      (default 5; needs root and a built base image)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/work.sh
source bench/work.sh
runs="${1:-5}"
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
cargo build -q --release -p azlin
azlin="$PWD/target/release/azlin"
work="$(mktemp -d)"
export AZLIN_HOME="$work/home"
trap 'for n in $(seq 1 "$runs") warm; do "$azlin" delete "bench-$n" --yes >/dev/null 2>&1 || true; done; raw_cleanup 2>/dev/null || true; remove_work "$work"' EXIT

"$azlin" image build >/dev/null
image="$("$azlin" image list -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["dir"])')/rootfs"

ms() { date +%s%3N; }

# The seed azlin renders (user, keys, host key), taken from a warm-up VM, so that the raw boot
# does exactly the same cloud-init work.
"$azlin" new --provider nspawn --name bench-warm --no-connect >/dev/null 2>&1
folder="$("$azlin" status bench-warm -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["vm"]["details"]["folder"])')"
cp "$folder/rootfs/var/lib/cloud/seed/nocloud/user-data" "$work/user-data"
host_key="$("$azlin" status bench-warm -o json | python3 -c 'import json,sys; print(json.load(sys.stdin)["vm"]["host_key"])')"
"$azlin" delete bench-warm --yes >/dev/null 2>&1
key="$AZLIN_HOME/.ssh/azlin_key"

raw_dir="$work/raw"
raw_cleanup() {
  [ -f "$raw_dir/pid" ] && kill -9 "$(cat "$raw_dir/pid")" 2>/dev/null || true
  sleep 0.2
  umount "$raw_dir/rootfs" 2>/dev/null || true
  ip link del azvbench 2>/dev/null || true
  ip netns del azlin-bench 2>/dev/null || true
  rm -rf "$raw_dir"
}

# One raw boot: overlay, network namespace with a veth, NoCloud seed, systemd-nspawn; then poll
# SSH and wait for cloud-init, the way a script without azlin would.
raw_boot() {
  raw_cleanup
  mkdir -p "$raw_dir"/{upper,work,rootfs}
  local t0; t0=$(ms)
  mount -t overlay overlay -o "lowerdir=$image,upperdir=$raw_dir/upper,workdir=$raw_dir/work" "$raw_dir/rootfs"
  ip netns add azlin-bench
  ip link add azvbench type veth peer name eth0 netns azlin-bench
  ip addr add 10.213.254.1/30 dev azvbench && ip link set azvbench up
  ip -n azlin-bench addr add 10.213.254.2/30 dev eth0
  ip -n azlin-bench link set lo up && ip -n azlin-bench link set eth0 up
  ip -n azlin-bench route add default via 10.213.254.1
  mkdir -p "$raw_dir/rootfs/var/lib/cloud/seed/nocloud"
  printf 'instance-id: raw-%s\nlocal-hostname: raw\n' "$RANDOM$RANDOM" > "$raw_dir/rootfs/var/lib/cloud/seed/nocloud/meta-data"
  cp "$work/user-data" "$raw_dir/rootfs/var/lib/cloud/seed/nocloud/user-data"
  systemd-nspawn -q -b -D "$raw_dir/rootfs" --register=no --keep-unit -M azlin-bench \
    --network-namespace-path=/run/netns/azlin-bench --console=read-only --link-journal=no \
    > "$raw_dir/console.log" 2>&1 < /dev/null &
  echo $! > "$raw_dir/pid"
  echo "10.213.254.2 $host_key" > "$raw_dir/known_hosts"
  local ssh=(ssh -i "$key" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes
             -o "UserKnownHostsFile=$raw_dir/known_hosts" -o ConnectTimeout=2 azureuser@10.213.254.2)
  until timeout 0.5 bash -c 'echo > /dev/tcp/10.213.254.2/22' 2>/dev/null && "${ssh[@]}" true 2>/dev/null; do
    sleep 0.025
  done
  local t_ssh; t_ssh=$(ms)
  "${ssh[@]}" cloud-init status --wait >/dev/null
  local t_ci; t_ci=$(ms)
  echo "$((t_ssh - t0)) $((t_ci - t0))"
  raw_cleanup
}

declare -a raw_ssh raw_ci az_ssh az_ci az_prov az_wall
for i in $(seq 1 "$runs"); do
  read -r s c < <(raw_boot)
  raw_ssh+=("$s"); raw_ci+=("$c")
  t0=$(ms)
  "$azlin" new --provider nspawn --name "bench-$i" --no-connect -o json > "$work/new-$i.json" 2>/dev/null
  t1=$(ms)
  read -r s c p < <(python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["vms"][0]; print(v["since_start_ms"]["ssh_ready"], v["since_start_ms"]["cloud_init_done"], v["timings_ms"]["provision"])' "$work/new-$i.json")
  az_ssh+=("$s"); az_ci+=("$c"); az_prov+=("$p"); az_wall+=("$((t1 - t0))")
  "$azlin" delete "bench-$i" --yes >/dev/null 2>&1
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
pct() { python3 -c "import sys; a,b=float(sys.argv[1]),float(sys.argv[2]); print(f'{(a-b)/b*100:+.1f}%')" "$1" "$2"; }

echo
echo "azlin new on nspawn vs raw systemd-nspawn boot of the same image ($runs runs each, medians, ms)"
printf '%-28s %10s %10s %10s\n' "" "raw boot" "azlin new" "overhead"
m_rs=$(median "${raw_ssh[@]}"); m_as=$(median "${az_ssh[@]}")
m_rc=$(median "${raw_ci[@]}");  m_ac=$(median "${az_ci[@]}")
printf '%-28s %10s %10s %10s\n' "start -> SSH ready" "$m_rs" "$m_as" "$(pct "$m_as" "$m_rs")"
printf '%-28s %10s %10s %10s\n' "start -> cloud-init done" "$m_rc" "$m_ac" "$(pct "$m_ac" "$m_rc")"
printf '%-28s %10s %10s\n' "azlin provision stage" "-" "$(median "${az_prov[@]}")"
printf '%-28s %10s %10s\n' "azlin new wall (to exit)" "-" "$(median "${az_wall[@]}")"
echo "target: overhead <= +10%"
echo
echo "azlin --version (hyperfine) vs /bin/true; target <= 2 ms"
hyperfine -N --warmup 20 --runs 200 "$azlin --version" "/bin/true" 2>/dev/null | grep -E "Time|±|azlin|true" | grep -v Range
