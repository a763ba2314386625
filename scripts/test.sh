#!/usr/bin/env bash
# Sets this machine up, then runs every test: unit tests, and end-to-end tests against real
# nspawn VMs, a real nats-server, real OpenSSH and the test doubles of Azure; then a short run of
# each fuzz target. Arguments go to `cargo nextest run` (a filter skips the fuzz run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --debug
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
cargo nextest run --workspace --locked --no-fail-fast "$@"
if [ "$#" -eq 0 ]; then
    bash scripts/fuzz-smoke.sh
fi
