#!/usr/bin/env bash
# dev/assets.sh: build the browser page into res/web/dist (what order-api embeds).
#
#   npm ci        when node_modules does not match package-lock.json
#   npm run build when any input changed since the last build
#
# Idempotent, and a no-op (well under a second) when everything is up to date.
# Needs node >= 18 and npm (dev/browser-test.sh installs them on Debian).
# After a rebuild, rebuild order-api too: `cargo build --workspace --bins`.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEB=$ROOT/res/web
cd "$WEB"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "assets: node and npm are needed (Debian: apt-get install nodejs npm)" >&2
    exit 1
fi

digest() { sha256sum "$@" | sha256sum | cut -c1-64; }

deps_stamp=node_modules/.drop-deps-stamp
deps=$(digest package.json package-lock.json)
if [[ ! -d node_modules || $(cat "$deps_stamp" 2>/dev/null) != "$deps" ]]; then
    echo "assets: npm ci" >&2
    npm ci --no-audit --no-fund --loglevel=error >&2
    echo "$deps" >"$deps_stamp"
fi

build_stamp=node_modules/.drop-build-stamp
mapfile -t sources < <(find src -type f | sort)
inputs=$(digest package-lock.json build.mjs index.html scan.html "${sources[@]}")
if [[ ! -s dist/index.html || ! -s dist/scan.html || ! -s dist/assets/app.js || $(cat "$build_stamp" 2>/dev/null) != "$inputs" ]]; then
    echo "assets: npm run build -> res/web/dist" >&2
    npm run --silent build >&2
    echo "$inputs" >"$build_stamp"
fi
