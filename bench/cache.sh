#!/usr/bin/env bash
# Figures of issue "Caches and artifacts", in one run, on nspawn VMs:
#  1. cache restore throughput into a VM: the real actions/cache@v4 restoring a cache of
#     SIZE_MIB MiB of random data (bytes of the archive over the restore step's duration:
#     lookup, download, extraction), against the raw copy of the same bytes host→VM over SSH
#     (`azlin connect VM -- sh -c 'cat > FILE' < FILE`);
#  2. a workflow whose "build" makes those bytes: its second run, with a warm cache, against
#     its first run (wall time of `azlin run`).
#
#   bench/cache.sh [SIZE_MIB]        (default 512; needs root and the base image)
#   AZLIN_BIN=target/debug/azlin bench/cache.sh      measures an existing build instead
set -euo pipefail
cd "$(dirname "$0")/.."
size_mib="${1:-512}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
work="$(mktemp -d)"
export AZLIN_HOME="$work/home"
cleanup() {
  "$azlin" delete rawcopy --yes >/dev/null 2>&1 || true
  remove_work "$work"
}
trap cleanup EXIT

# The action source: actions/cache from its bundle, as a file:// folder of bare repositories.
mkdir -p "$work/actions/actions"
git init -q --bare "$work/actions/actions/cache.git"
git -C "$work/actions/actions/cache.git" fetch -q "$PWD/tests/conformance/actions/actions-cache.bundle" 'refs/*:refs/*'

repo="$work/app"
mkdir -p "$repo/.github/workflows"
cat > "$repo/.github/workflows/build.yml" <<EOF
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - uses: actions/cache@v4
        id: cache
        with:
          path: out
          key: out-${size_mib}
      - name: build
        if: steps.cache.outputs.cache-hit != 'true'
        run: mkdir -p out && head -c ${size_mib}M /dev/urandom > out/data
      - run: sha256sum out/data
EOF
git -C "$repo" init -q -b main
git -C "$repo" add -A
git -C "$repo" -c user.name=bench -c user.email=bench@example.com commit -qm bench

run_build() {
  "$azlin" -o json run "$repo/.github/workflows/build.yml" --provider nspawn -C "$repo" \
    --actions-url "file://$work/actions" 2>"$work/run.log"
}

now_ms() { date +%s%3N; }
start=$(now_ms)
run_build > "$work/first.json"
first_ms=$(( $(now_ms) - start ))
start=$(now_ms)
run_build > "$work/second.json"
second_ms=$(( $(now_ms) - start ))

# The restore step of the second run, and the archive it restored.
read -r restore_ms archive_bytes hit < <(python3 - "$work/second.json" <<'EOF'
import json, sys
job = json.load(open(sys.argv[1]))["workflows"][0]["jobs"][0]
step = next(s for s in job["steps"] if s["name"] == "Run actions/cache@v4")
use = next(c for c in job["caches"] if c["outcome"] == "hit")
print(step["duration_ms"], use["size"], use["outcome"])
EOF
)

# The same bytes, host→VM over SSH.
blob="$(ls -S "$AZLIN_HOME"/.local/state/azlin/services/blobs/* | head -1)"
"$azlin" new --provider nspawn --name rawcopy --no-connect >/dev/null 2>&1
start=$(now_ms)
"$azlin" connect rawcopy -- sh -c 'cat > /tmp/copy' < "$blob"
raw_ms=$(( $(now_ms) - start ))

python3 - "$archive_bytes" "$restore_ms" "$raw_ms" "$first_ms" "$second_ms" "$hit" "$size_mib" <<'EOF'
import sys
size, restore_ms, raw_ms, first_ms, second_ms = (int(x) for x in sys.argv[1:6])
hit, size_mib = sys.argv[6], sys.argv[7]
restore = size / 1e6 / (restore_ms / 1000)
raw = size / 1e6 / (raw_ms / 1000)
print(f"cache of {size_mib} MiB of random data ({size / 1e6:.0f} MB archive), second run: {hit}")
print(f"  cache restore into a VM (actions/cache@v4): {restore:7.1f} MB/s  ({restore_ms} ms)")
print(f"  raw copy host→VM over SSH:                  {raw:7.1f} MB/s  ({raw_ms} ms)")
print(f"  restore / raw:                              {restore / raw * 100:7.0f} %   (target ≥ 50 %)")
print(f"  anchors: GitHub-hosted cache 1–10 MB/s; actuated's local cache 276 MB/s (their hardware)")
print(f"workflow with a {size_mib} MiB build output:")
print(f"  first run (miss, build, save):  {first_ms / 1000:6.1f} s")
print(f"  second run (warm cache):        {second_ms / 1000:6.1f} s   ({first_ms / second_ms:.1f}x faster)")
EOF
