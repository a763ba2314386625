#!/usr/bin/env bash
# Builds the base images of local VMs with the azlin that scripts/setup.sh built, once: they are
# reused, and rebuilt only when their recipe changes. The nspawn rootfs first, then the qemu disk
# made from it (kernel, initramfs, qcow2).
#
#   scripts/images.sh [--release|--debug]     (default: --release)
set -euo pipefail
cd "$(dirname "$0")/.."

case "${1:---release}" in
  --debug) profile=debug ;;
  --release) profile=release ;;
  *) echo "usage: $0 [--release|--debug]" >&2; exit 64 ;;
esac

export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
azlin="${CARGO_TARGET_DIR:-target}/$profile/azlin"
"$azlin" image build --provider nspawn
"$azlin" image build --provider qemu
