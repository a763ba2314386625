#!/usr/bin/env bash
# One command from nothing to a ready Linux machine: sets this machine up, then runs
# `azlin new` on the local default provider (arguments are passed on, e.g. --name dev).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --release
exec "${CARGO_TARGET_DIR:-target}/release/azlin" new "$@"
