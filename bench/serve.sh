#!/usr/bin/env bash
# Figures of issue "azlin serve as a CI service", in one run:
#  1. webhook → first step started (the `workflow.step.started` event's time minus the time the
#     delivery arrived), p50 and p99, for a job whose `runs-on` a warm nspawn pool serves,
#     against the same job booting its nspawn VM cold (WARM_RUNS and COLD_RUNS deliveries, one
#     at a time; the pool is refilled between them);
#  2. signed webhook deliveries accepted per second (DELIVERIES, 32 at a time, one in ten a
#     replay that is de-duplicated), against `GET /healthz` on the same server: its HTTP floor.
#
#   bench/serve.sh [WARM_RUNS] [COLD_RUNS] [DELIVERIES]     (default 20, 5 and 5000; root and
#                                                            the base image)
#   AZLIN_BIN=target/debug/azlin bench/serve.sh      measures an existing build instead
set -euo pipefail
cd "$(dirname "$0")/.."
warm_runs="${1:-20}"
cold_runs="${2:-5}"
deliveries="${3:-5000}"
# shellcheck source=bench/lib.sh
source bench/lib.sh
cargo build -q --release -p azlin-ci --example webhook_load
load="$PWD/target/release/examples/webhook_load"
work="$(mktemp -d)"
export AZLIN_HOME="$work/home" AZLIN_CONFIG="$work/config.toml"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
nats="nats://127.0.0.1:$port"
secret="$work/secret"
echo "bench-secret" > "$secret"

# The repository: a warm job (main) and a cold one (branch cold), each one `run: "true"` step.
repo="$work/git/octo/app"
mkdir -p "$repo/.github/workflows"
cat > "$repo/.github/workflows/warm.yml" <<'EOF'
on:
  push:
    branches: [main]
jobs:
  warm:
    runs-on: [self-hosted, warm]
    steps:
      - run: "true"
EOF
cat > "$repo/.github/workflows/cold.yml" <<'EOF'
on:
  push:
    branches: [cold]
jobs:
  cold:
    runs-on: ubuntu-latest
    steps:
      - run: "true"
EOF
git -C "$repo" init -q -b main
git -C "$repo" add .
git -C "$repo" -c user.name=b -c user.email=b@example.com commit -q -m bench
sha="$(git -C "$repo" rev-parse HEAD)"

cat > "$AZLIN_CONFIG" <<EOF
provider = "nspawn"
nats_url = "$nats"

[serve]
webhook_secret_file = "$secret"
repo_url = "file://$work/git/{repository}"

[pool.warm]
provider = "nspawn"
min_ready = 2
max = 3
labels = ["self-hosted", "warm"]
EOF

pids=()
# VMs are deleted while the workers (who delete them) and the server still run; then the
# processes stop, nats-server last.
cleanup() {
  if [ "${#pids[@]}" -gt 1 ]; then
    "$azlin" pool drain >/dev/null 2>&1 || true
    for vm in $("$azlin" list -o json 2>/dev/null | python3 -c 'import json,sys; [print(v["name"]) for v in json.load(sys.stdin)]'); do
      "$azlin" delete "$vm" --yes >/dev/null 2>&1 || true
    done
  fi
  for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
    kill "${pids[$i]}" 2>/dev/null || true
    wait "${pids[$i]}" 2>/dev/null || true
  done
  remove_work "$work"
}
trap cleanup EXIT

nats-server -js -a 127.0.0.1 -p "$port" -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do (echo > "/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
"$azlin" serve --listen 127.0.0.1:0 2>"$work/serve.log" &
pids+=($!)
"$azlin" worker 2>"$work/worker.log" &
pids+=($!)
"$azlin" worker --runs --labels warm 2>"$work/runner.log" &
pids+=($!)
for _ in $(seq 1 300); do grep -q "listening on" "$work/serve.log" && grep -q "running workflow runs" "$work/runner.log" && break; sleep 0.1; done
addr="$(sed -n 's/.*listening on http:\/\/\([^ ]*\).*/\1/p' "$work/serve.log" | head -1)"

# Delivers a push of $sha to ref $1 with delivery id $2.
deliver() {
  python3 - "$addr" "$secret" "$1" "$2" "$sha" <<'EOF'
import hashlib, hmac, json, sys, urllib.request
addr, secret, ref, delivery, sha = sys.argv[1:]
body = json.dumps({"ref": ref, "before": "0" * 40, "after": sha, "created": False, "deleted": False,
    "forced": False, "repository": {"full_name": "octo/app", "name": "app", "owner": {"login": "octo"},
    "default_branch": "main"}, "pusher": {"name": "bench"}, "sender": {"login": "bench"},
    "head_commit": {"id": sha, "message": "bench", "added": [], "removed": [], "modified": ["x"]},
    "commits": []}).encode()
key = open(secret).read().strip().encode()
sig = "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()
request = urllib.request.Request(f"http://{addr}/webhook", data=body, method="POST", headers={
    "X-GitHub-Event": "push", "X-GitHub-Delivery": delivery, "X-Hub-Signature-256": sig,
    "Content-Type": "application/json"})
urllib.request.urlopen(request).read()
EOF
}

# Waits until $1 runs have ended.
await_runs() {
  for _ in $(seq 1 6000); do
    n="$("$azlin" events -o json | grep -c '"subject":"workflow.run.\(complete\|failed\)"' || true)"
    [ "$n" -ge "$1" ] && return 0
    sleep 0.1
  done
  echo "runs did not end" >&2
  exit 1
}

# Waits until the warm pool is full again and no refill runs.
await_pool() {
  for _ in $(seq 1 3000); do
    if ! pgrep -f "pool fill warm" >/dev/null &&
      "$azlin" pool status warm -o json | python3 -c '
import json,sys; s=json.load(sys.stdin)[0]; sys.exit(0 if s["ready"]>=2 and s["booting"]==0 else 1)'; then
      return 0
    fi
    sleep 0.1
  done
  echo "the warm pool was not refilled" >&2
  exit 1
}

"$azlin" pool fill warm >/dev/null
ended=0
for i in $(seq 1 "$warm_runs"); do
  await_pool
  deliver refs/heads/main "warm-$i"
  ended=$((ended + 1)); await_runs "$ended"
done
for i in $(seq 1 "$cold_runs"); do
  deliver refs/heads/cold "cold-$i"
  ended=$((ended + 1)); await_runs "$ended"
done

# Latency of each run's first step: its `at` minus the delivery's arrival.
"$azlin" events -o json | python3 -c '
import json, math, sys, datetime
first = {}
for line in sys.stdin:
    e = json.loads(line)
    if e["subject"] != "workflow.step.started":
        continue
    p = e["payload"]
    at = p["at"].rstrip("Z")
    whole, _, frac = at.partition(".")
    t = datetime.datetime.fromisoformat(whole).replace(tzinfo=datetime.timezone.utc).timestamp()
    t += float("0." + (frac or "0"))
    ms = t * 1000 - p["received_ms"]
    first.setdefault(p["run_id"], ms)
def pct(v, p):
    v = sorted(v); return v[max(0, math.ceil(p / 100 * len(v)) - 1)]
for kind in ("warm", "cold"):
    v = [ms for run, ms in first.items() if run.startswith(kind + "-")]
    print(f"webhook -> first step started, {kind} ({len(v)} runs): p50 {pct(v, 50):.0f} ms, p99 {pct(v, 99):.0f} ms")
'

# Deliveries per second: branch deletions (planned without a fetch), one in ten a replay.
python3 -c '
import json
print(json.dumps({"ref": "refs/heads/gone", "before": "1" * 40, "after": "0" * 40, "created": False,
    "deleted": True, "forced": False, "repository": {"full_name": "octo/app", "name": "app",
    "owner": {"login": "octo"}, "default_branch": "main"}, "pusher": {"name": "bench"},
    "sender": {"login": "bench"}, "head_commit": None, "commits": []}))' > "$work/deleted.json"
"$load" "http://$addr" "$deliveries" 32 "$secret" "$work/deleted.json" 10 > "$work/load.json"
python3 - "$work/load.json" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
webhooks, healthz = r["webhooks_per_s"], r["healthz_per_s"]
print(f"webhook deliveries accepted: {webhooks:.0f}/s over {r['deliveries']} "
      f"(statuses {r['webhook_statuses']}); GET /healthz on the same server: {healthz:.0f}/s")
EOF
