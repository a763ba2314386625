# Shared by the benchmarks: `azlin` is the binary to measure — $AZLIN_BIN when set (an existing
# build), else a fresh release build. Sourced from the repository root.
export AZLIN_IMAGE_DIR="${AZLIN_IMAGE_DIR:-/var/cache/azlin/images}"
if [ -n "${AZLIN_BIN:-}" ]; then
  azlin="$(realpath "$AZLIN_BIN")"
else
  cargo build -q --release -p azlin
  azlin="$PWD/target/release/azlin"
fi

# shellcheck source=bench/work.sh
source bench/work.sh
