#!/usr/bin/env bash
# dev/browser-test.sh: the browser tests (res/web/test) in a real headless Chromium.
#
# One self-contained command, also on a fresh Debian as root:
#   - installs what is missing (apt: chromium, nodejs, npm; poppler-utils, ffmpeg and
#     zbar-tools, which turn a voucher PDF into the scanner tests' fake camera video),
#     brings the local stack up,
#   - builds the page's assets (dev/assets.sh) and makes sure order-api embeds them,
#   - starts order-api (fresh database, free port, APP_PROFILE=dev, ADMIN_TOKEN) and
#     pdf-generator (free metrics port) against the stack,
#   - runs `node --test` (node's test runner: standard summary lines), stops its
#     children, and exits non-zero on any failure.
# BROWSER_TESTS=test/flow.test.mjs runs a subset. Screenshots, the downloaded vouchers and the services' logs go to artifacts/browser/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
ART=$ROOT/artifacts/browser
mkdir -p "$ART"

log() { printf 'browser-test: %s\n' "$*" >&2; }
die() { printf 'browser-test: ERROR: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- packages

missing=()
[[ -x /usr/bin/chromium ]] || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
command -v pdftoppm >/dev/null || missing+=(poppler-utils)
command -v ffmpeg >/dev/null || missing+=(ffmpeg)
command -v zbarimg >/dev/null || missing+=(zbar-tools)
if ((${#missing[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; run as root to install them"
    log "installing ${missing[*]} (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } \
        >"$ART/apt.log" 2>&1 || { tail -n 30 "$ART/apt.log" >&2; die "apt-get install failed"; }
fi
node -e 'process.exit(Number(process.versions.node.split(".")[0]) >= 18 ? 0 : 1)' ||
    die "node >= 18 is needed, found $(node --version)"

# ---------------------------------------------------------------- stack, assets, binaries

bash dev/stack.sh up
# shellcheck source=/dev/null
source "${STACK_DIR:-$ROOT/.stack}/env"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh" # delete_broker_objects

bash dev/assets.sh
# order-api embeds res/web/dist at compile time: a no-op when it is up to date.
if command -v cargo >/dev/null; then
    # As make test's build step selects them: nothing is compiled twice.
    cargo build -q --workspace --all-targets
fi
for bin in order-api pdf-generator; do
    [[ -x $CARGO_TARGET_DIR/debug/$bin ]] || die "$CARGO_TARGET_DIR/debug/$bin is missing: cargo build --workspace"
done

# ---------------------------------------------------------------- services

free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

PIDS=()
DB=""
RUN_ID=""
cleanup() {
    local rc=$? pid
    for pid in "${PIDS[@]}"; do
        kill -CONT "$pid" 2>/dev/null || true # the reconnect test pauses pdf-generator
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 100); do [[ -d /proc/$pid ]] || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [[ -n $DB ]]; then
        "$PG_BINDIR/psql" "postgres://drop:drop@127.0.0.1:5432/postgres" -qAt \
            -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    fi
    if [[ -n $RUN_ID ]]; then delete_broker_objects "browser.$RUN_ID" "$ORDERS_EXCHANGE"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

RUN_ID=$$_$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
DB=browser_test_$RUN_ID
# Its own orders exchange and queues, as the other suites have: the stack's
# default queues collect every bucket event and any leftover order while no
# `make run` consumes them, and this run must not wait behind that backlog.
export ORDERS_EXCHANGE=browser.orders.$RUN_ID
export ORDERS_QUEUE=pdf-generator.orders.browser.$RUN_ID
export EVENTS_QUEUE=pdf-generator.s3-events.browser.$RUN_ID
export STORED_QUEUE=pdf-generator.voucher-stored.browser.$RUN_ID
export VOUCHER_STATUS_QUEUE=order-api.voucher-status.$ORDERS_EXCHANGE
"$PG_BINDIR/psql" "postgres://drop:drop@127.0.0.1:5432/postgres" -qAt -v ON_ERROR_STOP=1 \
    -c "CREATE DATABASE $DB" >/dev/null

# A voucher signing key of this run's own: pdf-generator signs the QR codes
# with the private half, order-api verifies them with (and publishes at
# /v1/voucher-keys) the public half. Ed25519 as a JWK: `d` is the 32-byte
# seed, `x` the public key, both base64url (RFC 8037).
read -r SIGNING_SEED SIGNING_PUBLIC < <(node -e '
const { generateKeyPairSync } = require("node:crypto");
const { privateKey, publicKey } = generateKeyPairSync("ed25519");
console.log(privateKey.export({ format: "jwk" }).d, publicKey.export({ format: "jwk" }).x);')
SIGNING_KID=browser-test

API_PORT=$(free_port)
API_METRICS_PORT=$(free_port)
PDF_PORT=$(free_port)
ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export BASE_URL=http://127.0.0.1:$API_PORT

LISTEN_ADDR=127.0.0.1:$API_PORT METRICS_ADDR=127.0.0.1:$API_METRICS_PORT DATABASE_URL=postgres://drop:drop@127.0.0.1:5432/$DB \
    APP_PROFILE=dev ADMIN_TOKEN=$ADMIN_TOKEN RUST_LOG=${RUST_LOG:-info} \
    VOUCHER_PUBLIC_KEYS=$SIGNING_KID:$SIGNING_PUBLIC \
    "$CARGO_TARGET_DIR/debug/order-api" >"$ART/order-api.log" 2>&1 &
PIDS+=($!)
API_PID=$!
METRICS_ADDR=127.0.0.1:$PDF_PORT RUST_LOG=${RUST_LOG:-info} \
    VOUCHER_SIGNING_KEY=$SIGNING_KID:$SIGNING_SEED \
    "$CARGO_TARGET_DIR/debug/pdf-generator" >"$ART/pdf-generator.log" 2>&1 &
PIDS+=($!)
PDF_PID=$!

wait_ready() {
    local what=$1 url=$2 pid=$3 logf=$4 deadline=$((SECONDS + 90))
    until curl -fsS -m 2 -o /dev/null "$url" 2>/dev/null; do
        [[ -d /proc/$pid ]] || { tail -n 30 "$logf" >&2; die "$what exited"; }
        ((SECONDS < deadline)) || { tail -n 30 "$logf" >&2; die "$what not ready after 90 s"; }
        sleep 0.25
    done
}
wait_ready order-api "$BASE_URL/readyz" "$API_PID" "$ART/order-api.log"
wait_ready pdf-generator "http://127.0.0.1:$PDF_PORT/readyz" "$PDF_PID" "$ART/pdf-generator.log"
log "order-api on $BASE_URL (database $DB), pdf-generator pid $PDF_PID"

# ---------------------------------------------------------------- tests

cd res/web
# Unquoted on purpose: BROWSER_TESTS is a list of files, the default a glob.
# shellcheck disable=SC2086
ADMIN_TOKEN=$ADMIN_TOKEN PDF_GENERATOR_PID=$PDF_PID ARTIFACTS_DIR=$ART CHROMIUM=/usr/bin/chromium \
    node --test --test-concurrency=1 ${BROWSER_TESTS:-test/*.test.mjs}
