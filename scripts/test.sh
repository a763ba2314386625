#!/usr/bin/env bash
# Sets this machine up, then runs every test: unit tests, and end-to-end tests against real
# nspawn VMs, a real nats-server, real OpenSSH and the test doubles of Azure.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --debug
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
cargo nextest run --workspace --locked --no-fail-fast "$@"
