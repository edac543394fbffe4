#!/usr/bin/env bash
# dev/bench/history_ab.sh: reservations at C=64 on a fresh database, then on
# the 5M-order history database of row 4c, each for 10 s after a CHECKPOINT,
# with the WAL each order cost (dev/bench/notes.md, "time-ordered order ids").
#
#   bash dev/bench/history_ab.sh [cold]
#
# `cold` drops the OS page cache before the history run (needs root), as if
# the history had been evicted. Needs the local stack, the history database
# that `make bench` loads and keeps, and target/release/order-api.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT"
# shellcheck source=/dev/null
source "${STACK_DIR:-$ROOT/.stack}/env"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh"

HISTDB=${HISTDB:-bench_history_v5_500x10000}
ADMIN_TOKEN=ab-$(random_hex 16)
SECS=${BENCH_SECS:-10}

[[ $(psql "$(db_url "$HISTDB")" -qAt -c "SELECT count(*) FROM orders" 2>/dev/null) -gt 1000000 ]] ||
    { echo "history_ab: $HISTDB is missing or small: run make bench first" >&2; exit 1; }

run() { # label database
    local label=$1 db=$2 url wal0 orders wal
    url=$(db_url "$db")
    start_order_api target/release/order-api "$url" "ab.orders.$db" "/tmp/history_ab.$label.log"
    put_product AB-WARM 100000000
    put_product AB-RUN 100000000
    BENCH_MODE=post BENCH_SKU=AB-WARM BENCH_PHONE_BASE=0 \
        wrk -t2 -c64 -d2s -s dev/bench/wrk_count.lua "$OA_URL" >/dev/null 2>&1 || true
    checkpoint "$db"
    wal0=$(psql "$url" -qAt -c "SELECT pg_current_wal_lsn()")
    BENCH_MODE=post BENCH_SKU=AB-RUN BENCH_PHONE_BASE=0 \
        wrk -t2 -c64 -d"${SECS}s" -s dev/bench/wrk_count.lua "$OA_URL" >/dev/null 2>&1
    orders=$(psql "$url" -qAt -c "SELECT count(*) FROM orders WHERE sku = 'AB-RUN'")
    wal=$(psql "$url" -qAt -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '$wal0')::bigint")
    echo "$label: $((orders / SECS)) accepted/s, $((wal / orders)) WAL bytes per order"
    stop_pid "$OA_PID"
    delete_broker_objects "ab-$label" "ab.orders.$db"
    psql "$url" -qAt -c "DELETE FROM orders WHERE sku NOT LIKE 'HIST-%'; DELETE FROM outbox;
        DELETE FROM idempotency_keys; DELETE FROM products WHERE sku NOT LIKE 'HIST-%'" >/dev/null
}

fresh=ab_fresh_$(random_hex 4)
trap 'stop_all; drop_db "$fresh"' EXIT
create_db "$fresh"
run fresh "$fresh"
if [[ ${1:-} == cold ]]; then
    sync
    echo 3 >/proc/sys/vm/drop_caches
fi
run history "$HISTDB"
