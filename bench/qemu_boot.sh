#!/usr/bin/env bash
# Figures of the qemu provider: time from `azlin new --provider qemu` to SSH ready and to
# cloud-init done, under the accelerator azlin chose on this host (KVM if it runs guests, else
# TCG; the script says which and why), next to `azlin new --provider nspawn` of the same image
# profile measured in the same run.
#
#   bench/qemu_boot.sh [RUNS]      (default 3; needs root for the nspawn side and for building
#                                   the images if they are not built yet)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=bench/work.sh
source bench/work.sh
runs="${1:-3}"
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
cargo build -q --release -p azlin
azlin="$PWD/target/release/azlin"
work="$(mktemp -d)"
export AZLIN_HOME="$work/home"
cleanup() {
  for n in $(seq 1 "$runs"); do
    "$azlin" delete "qb-$n" --yes >/dev/null 2>&1 || true
    "$azlin" delete "nb-$n" --yes >/dev/null 2>&1 || true
  done
  remove_work "$work"
}
trap cleanup EXIT

nspawn=yes
[ "$(id -u)" -eq 0 ] || nspawn=no
[ "$nspawn" = yes ] && "$azlin" image build --provider nspawn >/dev/null
"$azlin" image build --provider qemu >/dev/null

# Prints "ssh_ready cloud_init_done provision" (ms since `new` started) of one VM.
new_vm() {
  local provider="$1" name="$2"
  "$azlin" new --provider "$provider" --name "$name" --no-connect -o json > "$work/$name.json" 2>"$work/$name.err" \
    || { echo "azlin new --provider $provider failed:" >&2; cat "$work/$name.err" >&2; exit 1; }
  python3 -c 'import json,sys; v=json.load(open(sys.argv[1]))["vms"][0]; print(v["since_start_ms"]["ssh_ready"], v["since_start_ms"]["cloud_init_done"], v["timings_ms"]["provision"])' "$work/$name.json"
}

declare -a q_ssh q_ci q_prov n_ssh n_ci
accel="" reason="" vcpus="" memory=""
for i in $(seq 1 "$runs"); do
  read -r s c p < <(new_vm qemu "qb-$i")
  q_ssh+=("$s"); q_ci+=("$c"); q_prov+=("$p")
  read -r accel vcpus memory reason < <("$azlin" status "qb-$i" -o json | python3 -c '
import json, sys
d = json.load(sys.stdin)["vm"]["details"]
print(d["accel"], d["vcpus"], d["memory_mib"], d.get("accel_reason", ""))')
  "$azlin" delete "qb-$i" --yes >/dev/null 2>&1
  echo "run $i: qemu ($accel) SSH ${s} ms, cloud-init ${c} ms" >&2
  if [ "$nspawn" = yes ]; then
    read -r s c _ < <(new_vm nspawn "nb-$i")
    n_ssh+=("$s"); n_ci+=("$c")
    "$azlin" delete "nb-$i" --yes >/dev/null 2>&1
    echo "run $i: nspawn SSH ${s} ms, cloud-init ${c} ms" >&2
  fi
done

median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
secs() { python3 -c "import sys; print(f'{float(sys.argv[1])/1000:.1f} s')" "$1"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1])/float(sys.argv[2]):.0f}x')" "$1" "$2"; }

echo
echo "azlin new, minimal image, $runs runs each, medians (host: $(nproc) CPUs)"
echo "qemu accelerator: $accel ($reason); VM: $vcpus vCPUs, $memory MiB"
printf '%-30s %12s %12s %8s\n' "" "qemu ($accel)" "nspawn" "ratio"
m_qs=$(median "${q_ssh[@]}"); m_qc=$(median "${q_ci[@]}")
if [ "$nspawn" = yes ]; then
  m_ns=$(median "${n_ssh[@]}"); m_nc=$(median "${n_ci[@]}")
  printf '%-30s %12s %12s %8s\n' "start -> SSH ready" "$(secs "$m_qs")" "$(secs "$m_ns")" "$(ratio "$m_qs" "$m_ns")"
  printf '%-30s %12s %12s %8s\n' "start -> cloud-init done" "$(secs "$m_qc")" "$(secs "$m_nc")" "$(ratio "$m_qc" "$m_nc")"
else
  printf '%-30s %12s %12s\n' "start -> SSH ready" "$(secs "$m_qs")" "(not root)"
  printf '%-30s %12s %12s\n' "start -> cloud-init done" "$(secs "$m_qc")" "(not root)"
fi
printf '%-30s %12s\n' "qemu: provision (to init)" "$(secs "$(median "${q_prov[@]}")")"
