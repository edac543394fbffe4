#!/usr/bin/env bash
# dev/bootstrap.sh: installs the build and test prerequisites that are not
# services (dev/stack.sh installs those). Idempotent and quick when everything
# is there; needs root (apt-get) only when something is missing.
#
# Rust itself comes from the machine's rustup toolchain (1.85 or newer, for
# edition 2024); no toolchain file pins it, because a pinned channel that is
# not installed would make rustup try to download one.
set -euo pipefail

# poppler-utils, ffmpeg and zbar-tools: the scanner page's browser tests render
# a voucher PDF into their fake camera's video (res/web/test/scan-helpers.mjs).
PACKAGES=(build-essential pkg-config ca-certificates curl make git python3-venv poppler-utils ffmpeg zbar-tools nodejs npm)

missing=()
installed=$(dpkg-query -W -f '${db:Status-Status} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null || true)
for p in "${PACKAGES[@]}"; do
    grep -qx "installed $p" <<<"$installed" || missing+=("$p")
done
# The machine may ship node and npm outside Debian's packages: accept those.
if command -v node >/dev/null && command -v npm >/dev/null; then
    missing=("${missing[@]/nodejs/}")
    missing=("${missing[@]/npm/}")
fi
read -r -a missing <<<"${missing[*]}"
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || { echo "bootstrap: missing ${missing[*]}; run as root to install them" >&2; exit 1; }
    echo "bootstrap: installing ${missing[*]}" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || {
    echo "bootstrap: cargo not found; install Rust with rustup (https://rustup.rs) first" >&2
    exit 1
}
# rustfmt and clippy for `make lint`; a no-op when present.
if command -v rustup >/dev/null; then
    rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
