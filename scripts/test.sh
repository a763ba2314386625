#!/usr/bin/env bash
# Sets this machine up, then runs every test: unit tests, and end-to-end tests against real
# nspawn VMs, a real nats-server, real OpenSSH and the test doubles of Azure; then a short run of
# each fuzz target. Arguments go to `cargo nextest run` (a filter skips the fuzz run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh --debug --no-images
# The VM images take minutes (mostly downloads and disk work): they build while the test
# binaries compile.
bash scripts/images.sh --debug &
images=$!
if ! cargo nextest run --workspace --locked --no-run; then
    wait "$images" || true
    exit 1
fi
wait "$images"
# npm packages of the tests, installed again only when a lock file changes: the official
# artifact client, bundled into two small JavaScript actions the artifact tests use, and
# playwright-core, which drives Debian's Chromium (setup.sh --debug installs it) through the
# dashboard test.
npm_install() {
    if ! cmp -s "$1/package-lock.json" "$1/node_modules/.azlin-installed-lock"; then
        npm ci --prefix "$1" --no-audit --no-fund --loglevel=error
        cp "$1/package-lock.json" "$1/node_modules/.azlin-installed-lock"
        return 0
    fi
    return 1
}
client=tests/artifact-client
if npm_install "$client" || [ ! -f "$client/dist/upload.js" ]; then
    npm run --prefix "$client" --silent build
fi
npm_install tests/dashboard || true
# The fuzz targets are a workspace of their own: a stale lock file fails here, in seconds,
# rather than after the whole suite.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
cargo nextest run --workspace --locked --no-fail-fast "$@"
if [ "$#" -eq 0 ]; then
    bash scripts/fuzz-smoke.sh
fi
