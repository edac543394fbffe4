#!/usr/bin/env bash
# dev/bench/stock-push.sh: Server-Sent Events against polling, for the stock
# a visitor without an order sees (dev/bench/stock-push.mjs says what is
# measured). Its own order-api (release build unless ORDER_API_BIN says
# otherwise) on a fresh database; the figures go to
# artifacts/bench/stock-push.json and are quoted in dev/bench/notes.md.
#   bash dev/bench/stock-push.sh [CLIENTS] [POLL_MS]
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=/dev/null
source "${STACK_DIR:-$ROOT/.stack}/env"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
BIN=${ORDER_API_BIN:-$TARGET/release/order-api}
[[ -x $BIN ]] || { echo "stock-push: $BIN missing: cargo build --release -p order-api" >&2; exit 1; }
OUT=$ROOT/artifacts/bench
mkdir -p "$OUT"
ID=$$_$RANDOM
DB=stock_push_$ID
EXCHANGE=bench.stockpush.$ID
ADMIN_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export ADMIN_TOKEN
# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    stop_all
    drop_db "$DB"
    delete_broker_objects "stockpush.$ID" "$EXCHANGE"
}
trap cleanup EXIT
create_db "$DB"
# Many clients: the file descriptor limit is the first ceiling.
ulimit -n 65536 2>/dev/null || true
start_order_api "$BIN" "$(db_url "$DB")" "$EXCHANGE" "$OUT/stock-push-order-api.log"
node "$ROOT/dev/bench/stock-push.mjs" "$OA_URL" "$ADMIN_TOKEN" "$OA_PID" "${1:-1000}" "${2:-1000}" |
    tee "$OUT/stock-push.json"
