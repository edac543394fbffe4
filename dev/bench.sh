#!/usr/bin/env bash
# dev/bench.sh: `make bench`. Measures side by side, in one run on the local
# stack, the rows of docs/benchmarks.md and writes it with docs/benchmarks.json
# and docs/benchmarks.svg:
#   1. pgbench on the stack's PostgreSQL: a single-statement hot-row
#      reservation, and order-api's own reservation transaction with 1 and 50
#      orders per transaction (dev/bench/pgbench_*.sql), at C clients;
#   2. the HTTP ceiling: GET /healthz on order-api (wrk, C connections);
#   3. the sold-out path: POST /v1/orders after sell-out (wrk, C);
#   4. reservations: POST /v1/orders, stock larger than the run, C and 256
#      (wrk), with order-api's peak RSS;
#   5. a full drop with vouchers (the `drop` simulator, with pdf-generator).
# The same load tool (wrk, dev/bench/wrk_count.lua) drives rows 2-4.
#
# Knobs: BENCH_SECS (10) per row, BENCH_C (64), BENCH_DROP_UNITS (1000),
# BENCH_DROP_CUSTOMERS (20000), BENCH_DROP_PREFETCH (96), BENCH_OUT (where the raw
# outputs go).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=/dev/null
source "${STACK_DIR:-$ROOT/.stack}/env"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh"

SECS=${BENCH_SECS:-10}
C=${BENCH_C:-64}
C_HIGH=256
DROP_UNITS=${BENCH_DROP_UNITS:-1000}
DROP_CUSTOMERS=${BENCH_DROP_CUSTOMERS:-20000}
# Orders pdf-generator holds unacked, so uploads in flight, during the drop. The
# local RGW holds each PUT until RabbitMQ confirms its event (100-150 ms), so this
# sets the voucher rate: 32 (the service default) caps it near 150/s here; from
# 96 on, the machine's CPU is the bound.
DROP_PREFETCH=${BENCH_DROP_PREFETCH:-96}
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$TARGET_DIR/bench/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
T_START=$SECONDS
log() { printf '[bench %4ss] %s\n' $((SECONDS - T_START)) "$*" >&2; }

# ---- tools ------------------------------------------------------------------
if ! command -v wrk >/dev/null; then
    log "installing wrk"
    if ! apt-get install -y -qq wrk >/dev/null 2>&1; then
        apt-get update -qq >/dev/null && apt-get install -y -qq wrk >/dev/null
    fi
fi
PGBENCH=${PG_BINDIR:-/usr/lib/postgresql/15/bin}/pgbench
[[ -x $PGBENCH ]] || PGBENCH=$(command -v pgbench)
log "building order-api and pdf-generator (release)"
cargo build --release --workspace --bins
REL=$TARGET_DIR/release
T_BUILT=$SECONDS

ID=$(random_hex 4)
PGDB=bench_pg_$ID
APPDB=bench_app_$ID
DROPDB=bench_drop_$ID
EXCHANGE=bench.orders.$ID
DROP_EXCHANGE=bench.drop.orders.$ID
ADMIN_TOKEN=bench-$(random_hex 16)
export ADMIN_TOKEN
cleanup() {
    stop_all
    drop_db "$PGDB"
    drop_db "$APPDB"
    drop_db "$DROPDB"
    delete_broker_objects "bench.$ID" "$EXCHANGE"
    delete_broker_objects "bench.$ID" "$DROP_EXCHANGE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "secs=$SECS"
    echo "c=$C"
    echo "c_high=$C_HIGH"
    echo "drop_prefetch=$DROP_PREFETCH"
    echo "cpus=$(nproc)"
    echo "cpu_model=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
    echo "postgres=$("$PGBENCH" --version | awk '{print $NF}')"
    echo "wrk=$(wrk -v 2>&1 | awk 'NR==1{print $2}')"
    echo "git=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo -dirty)"
    echo "build_secs=$((T_BUILT - T_START))"
} >"$OUT/meta.txt"

# ---- 1. pgbench ---------------------------------------------------------------
log "pgbench: fresh database $PGDB"
create_db "$PGDB"
PGURL=$(db_url "$PGDB")
# Every migration, in version order: the schema order-api runs on.
while read -r migration; do
    psql "$PGURL" -q -v ON_ERROR_STOP=1 -f "$migration"
done < <(find order-api/migrations -maxdepth 1 -name 'V*__*.sql' | sort -V)
psql "$PGURL" -q -v ON_ERROR_STOP=1 -c "INSERT INTO products (sku, name, stock) VALUES
    ('PGB-SINGLE', 'Bench product', 2000000000),
    ('PGB-TX1', 'Bench product', 2000000000),
    ('PGB-TX50', 'Bench product', 2000000000)"
pgbench_row() { # name script batch sku
    log "pgbench $1: $C clients, ${SECS}s"
    "$PGBENCH" -n -M prepared -c "$C" -j 2 -T "$SECS" -D sku="$4" -D n=0 -D batch="$3" \
        -D 'fmt=YYYY-MM-DD"T"HH24:MI:SS.US"Z"' -f "dev/bench/$2" "$PGURL" >"$OUT/pgbench_$1.txt" 2>&1
    psql "$PGURL" -qAt -c "SELECT count(*) FROM orders WHERE sku = '$4'" >"$OUT/pgbench_$1.orders"
}
pgbench_row single pgbench_single.sql 1 PGB-SINGLE
pgbench_row tx1 pgbench_batch.sql 1 PGB-TX1
pgbench_row tx50 pgbench_batch.sql 50 PGB-TX50
drop_db "$PGDB"

# ---- 2-4. order-api under wrk -------------------------------------------------
log "order-api (release): fresh database $APPDB"
create_db "$APPDB"
start_order_api "$REL/order-api" "$(db_url "$APPDB")" "$EXCHANGE" "$OUT/order-api.log"
echo "$OA_PID" >"$OUT/order-api.pid"

put_product() { # sku stock
    curl -fsS -o /dev/null -X PUT "$OA_URL/v1/products/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d "{\"name\": \"Bench $1\", \"stock\": $2}"
}
wrk_row() { # name connections VAR=VALUE...
    local name=$1 conns=$2
    shift 2
    log "wrk $name: $conns connections, ${SECS}s"
    env "$@" wrk -t2 -c"$conns" -d"${SECS}s" --timeout 10s -s dev/bench/wrk_count.lua "$OA_URL" \
        >"$OUT/wrk_$name.txt" 2>&1
    grep -q '^WRK_JSON ' "$OUT/wrk_$name.txt" || { cat "$OUT/wrk_$name.txt" >&2; return 1; }
}
count_orders() { psql "$(db_url "$APPDB")" -qAt -c "SELECT count(*) FROM orders WHERE sku = '$1'"; }

# Warm-up (not reported): connections, the allocator, the page cache.
env BENCH_MODE=get wrk -t2 -c"$C" -d2s -s dev/bench/wrk_count.lua "$OA_URL" >/dev/null 2>&1 || true

wrk_row ceiling "$C" BENCH_MODE=get BENCH_PATH=/healthz

put_product BENCH-SOLD 1
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$OA_URL/v1/orders" -H 'content-type: application/json' \
    -d '{"sku":"BENCH-SOLD","first_name":"Last","last_name":"Unit","phone":"+358409999999"}')
[[ $code == 201 ]] || { log "could not take the last unit of BENCH-SOLD (HTTP $code)"; exit 1; }
wrk_row sold_out "$C" BENCH_MODE=post BENCH_SKU=BENCH-SOLD BENCH_PHONE_BASE=0

put_product BENCH-R64 100000000
wrk_row reserve_c64 "$C" BENCH_MODE=post BENCH_SKU=BENCH-R64 BENCH_PHONE_BASE=0
count_orders BENCH-R64 >"$OUT/wrk_reserve_c64.orders"

put_product BENCH-R256 100000000
( # peak RSS while the C=256 row runs
    while kill -0 "$OA_PID" 2>/dev/null; do
        awk '/^VmRSS/{print $2}' "/proc/$OA_PID/status" 2>/dev/null || true
        sleep 0.2
    done
) >"$OUT/rss_c256.kib" &
SAMPLER=$!
wrk_row reserve_c256 "$C_HIGH" BENCH_MODE=post BENCH_SKU=BENCH-R256 BENCH_PHONE_BASE=0
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
count_orders BENCH-R256 >"$OUT/wrk_reserve_c256.orders"
awk '/^VmHWM/{print $2}' "/proc/$OA_PID/status" >"$OUT/order-api.vmhwm.kib"
curl -fsS "$OA_METRICS_URL/metrics" >"$OUT/order-api.metrics" || true
stop_pid "$OA_PID"
drop_db "$APPDB"

# ---- 5. a full drop -----------------------------------------------------------
log "full drop: S=$DROP_UNITS N=$DROP_CUSTOMERS C=$C, with pdf-generator (release, PREFETCH=$DROP_PREFETCH)"
create_db "$DROPDB"
start_order_api "$REL/order-api" "$(db_url "$DROPDB")" "$DROP_EXCHANGE" "$OUT/order-api-drop.log"
start_pdf_generator "$REL/pdf-generator" "$DROP_EXCHANGE" "bench.$ID" "$OUT/pdf-generator.log" \
    PREFETCH="$DROP_PREFETCH"
drop_status=0
"$REL/drop" --target "$OA_URL" --database-url "$(db_url "$DROPDB")" \
    --units "$DROP_UNITS" --customers "$DROP_CUSTOMERS" --concurrency "$C" \
    --duplicates 0.05 --retries 0.05 --voucher-timeout-secs 120 \
    --json "$OUT/drop.json" | tee "$OUT/drop.txt" || drop_status=$?
echo "$drop_status" >"$OUT/drop.status"
stop_all

echo "total_secs=$((SECONDS - T_START))" >>"$OUT/meta.txt"
log "writing docs/benchmarks.md, docs/benchmarks.json, docs/benchmarks.svg"
python3 dev/bench/report.py "$OUT" docs
log "done in $((SECONDS - T_START))s (raw outputs in $OUT)"
if ((drop_status != 0)); then
    log "the full drop's invariants FAILED (see $OUT/drop.txt)"
    exit 1
fi
