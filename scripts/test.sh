#!/usr/bin/env bash
# Sets this machine up, then runs every test: unit tests, and end-to-end tests against real
# nspawn VMs, a real nats-server, real OpenSSH and the test doubles of Azure; then a short run of
# each fuzz target. Arguments go to `cargo nextest run` (a filter skips the fuzz run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --debug
# The official artifact client (npm), bundled into two small JavaScript actions the artifact
# tests use; installed again only when its lock file changes.
client=tests/artifact-client
if ! cmp -s "$client/package-lock.json" "$client/node_modules/.azlin-installed-lock" || [ ! -f "$client/dist/upload.js" ]; then
    npm ci --prefix "$client" --no-audit --no-fund --loglevel=error
    npm run --prefix "$client" --silent build
    cp "$client/package-lock.json" "$client/node_modules/.azlin-installed-lock"
fi
# The fuzz targets are a workspace of their own: a stale lock file fails here, in seconds,
# rather than after the whole suite.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
cargo nextest run --workspace --locked --no-fail-fast "$@"
if [ "$#" -eq 0 ]; then
    bash scripts/fuzz-smoke.sh
fi
