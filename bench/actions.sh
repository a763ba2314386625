#!/usr/bin/env bash
# Figures of issue "Run real workflows": on one nspawn VM, in one run,
#  1. the cost of a JavaScript action step (the hello-world action) next to a `run:` step;
#  2. a remote action's first use (fetch on the host, copy to the VM, run) next to its cached use.
# The act corpus figure (cases passed on nspawn) comes from the e2e test `act_corpus_on_nspawn_vms`.
#
#   bench/actions.sh [STEPS]      (default 20; needs root and a built base image)
#   AZLIN_BIN=target/debug/azlin bench/actions.sh   measures an existing build instead
set -euo pipefail
cd "$(dirname "$0")/.."
steps="${1:-20}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
work="$(mktemp -d)"
export AZLIN_HOME="$work/home"
trap 'remove_work "$work"' EXIT

# The action source: the hello-world action's bundle as a bare repository, over file://.
mkdir -p "$work/actions/actions" "$work/repo"
git clone -q --mirror tests/conformance/actions/actions-hello-world-javascript-action.bundle \
  "$work/actions/actions/hello-world-javascript-action.git"
# A repository holding the same action as a local copy.
git clone -q "$work/actions/actions/hello-world-javascript-action.git" "$work/repo/hello" 2>/dev/null
git -C "$work/repo/hello" checkout -q v1

# Mean duration of the steps whose name starts with $2 in report $1, in milliseconds.
mean_ms() {
  python3 -c '
import json,sys
r=json.load(open(sys.argv[1])); j=r["workflows"][0]["jobs"][0]
assert j["result"]=="success", j
d=[s["duration_ms"] for s in j["steps"] if s["name"].startswith(sys.argv[2])]
print(round(sum(d)/len(d),1))' "$@"
}

{
  printf 'on: push\njobs:\n  steps:\n    runs-on: ubuntu-latest\n    steps:\n'
  printf '      - uses: actions/checkout@v4\n'
  for i in $(seq 1 "$steps"); do
    printf '      - name: js %s\n        uses: ./hello\n        with: {who-to-greet: bench}\n' "$i"
    printf '      - name: run %s\n        run: echo "Hello bench"\n' "$i"
  done
} > "$work/repo/steps.yml"
"$azlin" run "$work/repo/steps.yml" -C "$work/repo" --provider nspawn -o json \
  > "$work/steps.json" 2>"$work/steps.log" || { tail -20 "$work/steps.log"; exit 1; }
js=$(mean_ms "$work/steps.json" "js ")
run=$(mean_ms "$work/steps.json" "run ")

printf 'on: push\njobs:\n  remote:\n    runs-on: ubuntu-latest\n    steps:\n      - name: remote\n        uses: actions/hello-world-javascript-action@v1\n        with: {who-to-greet: bench}\n' \
  > "$work/repo/remote.yml"
remote() {
  "$azlin" run "$work/repo/remote.yml" -C "$work/repo" --provider nspawn \
    --actions-url "file://$work/actions" -o json > "$work/remote.json" 2>"$work/remote.log" \
    || { tail -20 "$work/remote.log"; exit 1; }
  mean_ms "$work/remote.json" remote
}
first=$(remote)
cached=$(remote)

echo
echo "actions on one nspawn VM (mean step duration, milliseconds)"
printf '%-58s %8s\n' "run: step (echo), baseline" "$run"
printf '%-58s %8s   (%s x run:)\n' "JavaScript action step (hello-world, node)" "$js" \
  "$(python3 -c "print(round($js/$run, 2))")"
printf '%-58s %8s\n' "remote action, cached use (copy to the VM, run)" "$cached"
printf '%-58s %8s   (%s x cached)\n' "remote action, first use (fetch on the host, copy, run)" "$first" \
  "$(python3 -c "print(round($first/$cached, 2))")"
