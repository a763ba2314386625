#!/usr/bin/env bash
# Prepares this machine (Debian 12, as root) for azlin: system packages, nats-server, the azlin
# build and the base images for local VMs. Idempotent: a second run only checks.
#
#   scripts/setup.sh [--release|--debug] [--no-images]     (default: --release, with images)
#
# --no-images leaves the images to scripts/images.sh (the test script builds them while the
# tests compile).
set -euo pipefail
cd "$(dirname "$0")/.."

profile=release
images=yes
for arg in "$@"; do
  case "$arg" in
    --debug) profile=debug ;;
    --release) profile=release ;;
    --no-images) images=no ;;
    *) echo "usage: $0 [--release|--debug] [--no-images]" >&2; exit 64 ;;
  esac
done

if [ "$(id -u)" -ne 0 ]; then
  echo "setup needs root (local VMs use network namespaces and mounts): sudo $0 $*" >&2
  exit 2
fi

# System packages: nspawn machines, their network, image builds, QEMU VMs, SSH, benchmarks.
packages=(systemd-container debootstrap nftables iproute2 openssh-client tmux git ca-certificates
          util-linux qemu-system-x86 qemu-utils genisoimage passt hyperfine python3-pip)
# Image builds fetch Node.js with `npm pack`. Debian's npm only when there is no npm at all: a
# NodeSource nodejs brings its own and conflicts with Debian's.
command -v npm >/dev/null || packages+=(npm)
# The tests (a debug build) also drive the dashboard in a headless browser.
[ "$profile" = debug ] && packages+=(chromium)
# Which of them are not installed.
missing_packages() {
  local p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
  done
}
# Twice: installing one package can remove another that conflicts with it (a backported
# qemu-utils gives way to Debian's qemu-system-x86), and the second round puts back a
# compatible version of what was removed.
for round in 1 2; do
  mapfile -t missing < <(missing_packages)
  [ "${#missing[@]}" -eq 0 ] && break
  echo "installing: ${missing[*]}"
  [ "$round" -eq 1 ] && apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
done
mapfile -t missing < <(missing_packages)
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: could not install ${missing[*]}" >&2
  exit 2
fi

# QEMU VMs of users without root get their confined network from pasta, which opens the TUN
# device: open to every user, as Debian's udev rules make it (a machine without udev may have
# left it root's only).
if [ -c /dev/net/tun ] && [ "$(stat -c %a /dev/net/tun)" != 666 ]; then
  chmod 0666 /dev/net/tun
fi

# A nats-server new enough for JetStream key-value (Debian ships 2.9).
if [ -f scripts/install-nats.sh ]; then
  bash scripts/install-nats.sh
fi

if [ "$profile" = release ]; then
  cargo build --release --locked -p azlin
  # `azlin` on PATH, as the README's examples type it.
  ln -sf "$(realpath "${CARGO_TARGET_DIR:-target}/release/azlin")" /usr/local/bin/azlin
  echo "azlin is on PATH: /usr/local/bin/azlin → $(readlink /usr/local/bin/azlin)"
else
  cargo build --locked -p azlin
fi

if [ "$images" = yes ]; then
  bash scripts/images.sh "--$profile"
fi
