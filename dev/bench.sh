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
#   4c. reservations at C after BENCH_HISTORY_ORDERS earlier orders (bulk-loaded
#      once by dev/bench/history.sql into a database kept between runs),
#      against an empty database in alternating slices, side by side;
#   4h. reservations at C on the replicated topology of `make up-ha`, synchronous
#      replication and HAProxy in front (dev/bench/ha.sh, in its own namespace);
#   5. a full drop with vouchers (the `drop` simulator, with pdf-generator), and
#   5b. a 10,000-unit drop, with the CPU every process spent on it (dev/bench/cpu.py)
#      and pdf-generator's own timings;
#   6. the renderer alone, whole against stamped (pdf-generator bench-render);
#   7. open pages: Web-STOMP connections in steps, each subscribed as the page
#      subscribes, with the broker's memory and CPU and delivery times
#      (dev/bench/browsers.py).
# The same load tool (wrk, dev/bench/wrk_count.lua) drives rows 2-4.
#
# Knobs: BENCH_SECS (10) per row, BENCH_ROW_SLICES (5) of BENCH_ROW_SLICE_SECS
# (2) for rows 2, 3 and 4a, BENCH_C (64), BENCH_DROP_UNITS (1000),
# BENCH_DROP_CUSTOMERS (20000), BENCH_DROP_PREFETCH (96), BENCH_BIG_DROP_UNITS (10000),
# BENCH_BIG_DROP_CUSTOMERS (30000), BENCH_HISTORY_ORDERS (5000000),
# BENCH_HISTORY_SLICES (5) of BENCH_HISTORY_SLICE_SECS (3) for row 4c,
# BENCH_RENDER_VOUCHERS (2000), BENCH_BROWSER_STEPS ("1000 5000 10000"),
# BENCH_OUT (where the raw outputs go).
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
BIG_DROP_UNITS=${BENCH_BIG_DROP_UNITS:-10000}
BIG_DROP_CUSTOMERS=${BENCH_BIG_DROP_CUSTOMERS:-30000}
# Earlier orders for row 4c, as drops of 10,000 (fewer if the count is smaller).
HISTORY_ORDERS=${BENCH_HISTORY_ORDERS:-5000000}
HISTORY_PER_DROP=$((HISTORY_ORDERS < 10000 ? HISTORY_ORDERS : 10000))
HISTORY_DROPS=$((HISTORY_ORDERS / HISTORY_PER_DROP))
RENDER_VOUCHERS=${BENCH_RENDER_VOUCHERS:-2000}
read -ra BROWSER_STEPS <<<"${BENCH_BROWSER_STEPS:-1000 5000 10000}"
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
BIG_DROPDB=bench_bigdrop_$ID
BIG_DROP_EXCHANGE=bench.bigdrop.orders.$ID
HISTORY_EXCHANGE=bench.history.orders.$ID
# Kept between runs: named for the schema (its last migration) and the load.
LAST_MIGRATION=$(find order-api/migrations -maxdepth 1 -name 'V*__*.sql' | sort -V | tail -n1 | sed -E 's|.*/V([0-9]+)__.*|\1|')
HISTDB=bench_history_v${LAST_MIGRATION}_${HISTORY_DROPS}x${HISTORY_PER_DROP}
HISTORY_SKU=BENCH-H64-$ID
HISTREF_DB=bench_histref_$ID
HISTREF_EXCHANGE=bench.histref.orders.$ID
ROW_SLICES=${BENCH_ROW_SLICES:-5}
ROW_SLICE_SECS=${BENCH_ROW_SLICE_SECS:-2}
HISTORY_SLICES=${BENCH_HISTORY_SLICES:-5}
HISTORY_SLICE_SECS=${BENCH_HISTORY_SLICE_SECS:-3}
ADMIN_TOKEN=bench-$(random_hex 16)
export ADMIN_TOKEN
cleanup() {
    stop_all
    drop_db "$PGDB"
    drop_db "$APPDB"
    drop_db "$DROPDB"
    drop_db "$BIG_DROPDB"
    drop_db "$HISTREF_DB"
    # The history database stays (reloading it is the slow part); only this
    # run's orders leave it.
    forget_history_run
    delete_broker_objects "bench.$ID" "$EXCHANGE"
    delete_broker_objects "bench.$ID" "$DROP_EXCHANGE"
    delete_broker_objects "bench.big.$ID" "$BIG_DROP_EXCHANGE"
    delete_broker_objects "bench.$ID" "$HISTORY_EXCHANGE"
    delete_broker_objects "bench.$ID" "$HISTREF_EXCHANGE"
}
forget_history_run() {
    psql "$(db_url "$HISTDB")" -qAt -c "DELETE FROM orders WHERE sku NOT LIKE 'HIST-%';
        DELETE FROM outbox; DELETE FROM idempotency_keys;
        DELETE FROM products WHERE sku NOT LIKE 'HIST-%'" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

{
    echo "date_utc=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "secs=$SECS"
    echo "c=$C"
    echo "c_high=$C_HIGH"
    echo "drop_prefetch=$DROP_PREFETCH"
    echo "history_orders=$((HISTORY_DROPS * HISTORY_PER_DROP))"
    echo "cpus=$(nproc)"
    echo "cpu_model=$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
    echo "postgres=$("$PGBENCH" --version | awk '{print $NF}')"
    echo "wrk=$(wrk -v 2>&1 | awk 'NR==1{print $2}')"
    echo "git=$(git rev-parse --short HEAD 2>/dev/null)$(git diff --quiet 2>/dev/null || echo -dirty)"
    echo "build_secs=$((T_BUILT - T_START))"
} >"$OUT/meta.txt"

# ---- 6. the renderer alone: whole against stamped, one thread ------------------
log "renderer: $RENDER_VOUCHERS vouchers each, rendered whole and stamped"
"$REL/pdf-generator" bench-render "$RENDER_VOUCHERS" >"$OUT/render_ab.json"

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

wrk_row() { # name connections VAR=VALUE...
    local name=$1 conns=$2
    shift 2
    log "wrk $name: $conns connections, ${SECS}s"
    env "$@" wrk -t2 -c"$conns" -d"${SECS}s" --timeout 10s -s dev/bench/wrk_count.lua "$OA_URL" \
        >"$OUT/wrk_$name.txt" 2>&1
    grep -q '^WRK_JSON ' "$OUT/wrk_$name.txt" || { cat "$OUT/wrk_$name.txt" >&2; return 1; }
}
count_orders() { psql "$(db_url "$APPDB")" -qAt -c "SELECT count(*) FROM orders WHERE sku = '$1'"; }

# wrk_slice NAME SLICE SECS VAR=VALUE...: one slice of a row run in slices,
# against OA_URL, into $OUT/wrk_NAME_sSLICE.txt (the report adds them up).
wrk_slice() {
    local name=$1 slice=$2 secs=$3
    shift 3
    env "$@" wrk -t2 -c"$C" -d"${secs}s" --timeout 10s -s dev/bench/wrk_count.lua "$OA_URL" \
        >"$OUT/wrk_${name}_s$slice.txt" 2>&1
    grep -q '^WRK_JSON ' "$OUT/wrk_${name}_s$slice.txt" || { cat "$OUT/wrk_${name}_s$slice.txt" >&2; return 1; }
}
# drain_outbox DATABASE_URL: waits (at most 60 s) until the outbox is empty;
# prints how long that took.
drain_outbox() {
    local t0=$SECONDS
    for _ in $(seq 1 600); do
        [[ $(psql "$1" -qAt -c "SELECT count(*) FROM outbox") == 0 ]] && break
        sleep 0.1
    done
    echo $((SECONDS - t0))
}

# Warm-up (not reported): connections, the allocator, the page cache.
env BENCH_MODE=get wrk -t2 -c"$C" -d2s -s dev/bench/wrk_count.lua "$OA_URL" >/dev/null 2>&1 || true

put_product BENCH-SOLD 1
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$OA_URL/v1/orders" -H 'content-type: application/json' \
    -d '{"sku":"BENCH-SOLD","first_name":"Last","last_name":"Unit","phone":"+358409999999"}')
[[ $code == 201 ]] || { log "could not take the last unit of BENCH-SOLD (HTTP $code)"; exit 1; }
for ((i = 1; i <= ROW_SLICES; i++)); do put_product "BENCH-R64-$i" 100000000; done
# Rows 2, 3 and 4a in turn, slice by slice: their ratios are the targets, and
# this host's speed drifts within minutes (dev/bench/notes.md), so each ratio
# is of runs interleaved in the same minute. Each reservation slice has a
# product of its own, and the next slice starts once the outbox relay has
# published its orders.
log "wrk ceiling, sold_out, reserve_c64: $ROW_SLICES slices of ${ROW_SLICE_SECS}s each, in turn"
for ((i = 1; i <= ROW_SLICES; i++)); do
    wrk_slice ceiling "$i" "$ROW_SLICE_SECS" BENCH_MODE=get BENCH_PATH=/healthz
    wrk_slice sold_out "$i" "$ROW_SLICE_SECS" BENCH_MODE=post BENCH_SKU=BENCH-SOLD BENCH_PHONE_BASE=0
    wrk_slice reserve_c64 "$i" "$ROW_SLICE_SECS" BENCH_MODE=post BENCH_SKU="BENCH-R64-$i" BENCH_PHONE_BASE=0
    drain_outbox "$(db_url "$APPDB")" >>"$OUT/rows_outbox_drain.secs"
done
psql "$(db_url "$APPDB")" -qAt -c "SELECT count(*) FROM orders WHERE sku LIKE 'BENCH-R64-%'" >"$OUT/wrk_reserve_c64.orders"

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

# ---- 4h. reservations on the replicated topology (what zero loss costs) ----------
log "reservations on the replicated topology: Patroni with a synchronous standby, HAProxy (dev/bench/ha.sh)"
ha_status=0
BENCH_HA_OUT=$OUT BENCH_SECS=$SECS BENCH_C=$C bash dev/bench/ha.sh >"$OUT/ha.txt" 2>&1 || ha_status=$?
((ha_status == 0)) || { tail -5 "$OUT/ha.txt" >&2; log "the replicated row failed (see $OUT/ha.txt)"; }

# ---- 4c. reservations after a season of drops ------------------------------------
history_url=$(db_url "$HISTDB")
history_loaded() {
    [[ $(psql "$history_url" -qAt -c "SELECT count(*) FROM products WHERE sku LIKE 'HIST-%'" 2>/dev/null) == "$HISTORY_DROPS" ]]
}
T_HISTORY=$SECONDS
if history_loaded; then
    log "history: $HISTDB is loaded (kept from an earlier run)"
    echo 0 >"$OUT/history_load.secs"
else
    log "history: loading $HISTDB: $HISTORY_DROPS earlier drops of $HISTORY_PER_DROP orders"
    drop_db "$HISTDB"
    create_db "$HISTDB"
    # order-api migrates it, as it would in production.
    start_order_api "$REL/order-api" "$history_url" "$HISTORY_EXCHANGE" "$OUT/order-api-history-migrate.log"
    stop_pid "$OA_PID"
    psql "$history_url" -q -v drops="$HISTORY_DROPS" -v per_drop="$HISTORY_PER_DROP" \
        -f dev/bench/history.sql >"$OUT/history_load.txt" 2>&1
    echo $((SECONDS - T_HISTORY)) >"$OUT/history_load.secs"
fi
forget_history_run
psql "$history_url" -qAt -c "SELECT count(*) FROM orders" >"$OUT/history.orders_before"
# The history against an empty database, side by side: this host's speed
# drifts within minutes (dev/bench/notes.md), so row 4a, run minutes earlier,
# is no steady reference (nor were single runs just before and after: they
# differed by 7% from each other). Two order-apis run at once, one on a fresh
# database (the reference) and one on the history; after a warm-up and a
# CHECKPOINT each, wrk alternates between them in HISTORY_SLICES slices of
# HISTORY_SLICE_SECS, the reference first, each slice on a product of its own.
# Earlier runs' orders were deleted from the history (forget_history_run);
# VACUUM takes their dead tuples out, as autovacuum would have in production,
# so the table is the history and nothing else.
psql "$history_url" -qAt -c "VACUUM (ANALYZE) orders" -c "VACUUM (ANALYZE) outbox" \
    -c "VACUUM (ANALYZE) idempotency_keys" -c "VACUUM (ANALYZE) products" >/dev/null
create_db "$HISTREF_DB"
start_order_api "$REL/order-api" "$(db_url "$HISTREF_DB")" "$HISTREF_EXCHANGE" "$OUT/order-api-history-ref.log"
REF_PID=$OA_PID REF_URL=$OA_URL
start_order_api "$REL/order-api" "$history_url" "$HISTORY_EXCHANGE" "$OUT/order-api-history.log"
HIST_PID=$OA_PID HIST_URL=$OA_URL
for side in ref hist; do
    if [[ $side == ref ]]; then OA_URL=$REF_URL; else OA_URL=$HIST_URL; fi
    for ((i = 0; i <= HISTORY_SLICES; i++)); do put_product "$HISTORY_SKU-$i" 100000000; done
    # Warm-up (not reported), as for rows 2-4: the indexes' pages into the cache.
    env BENCH_MODE=post BENCH_SKU="$HISTORY_SKU-0" BENCH_PHONE_BASE=0 \
        wrk -t2 -c"$C" -d2s -s dev/bench/wrk_count.lua "$OA_URL" >/dev/null 2>&1 || true
done
checkpoint "$HISTREF_DB"
checkpoint "$HISTDB"
log "wrk reserve_history: $HISTORY_SLICES slices of ${HISTORY_SLICE_SECS}s each, empty database and history in turn"
for ((i = 1; i <= HISTORY_SLICES; i++)); do
    for side in ref hist; do
        if [[ $side == ref ]]; then
            url=$REF_URL name=reserve_history_ref dburl=$(db_url "$HISTREF_DB")
        else
            url=$HIST_URL name=reserve_history dburl=$history_url
        fi
        OA_URL=$url wrk_slice "$name" "$i" "$HISTORY_SLICE_SECS" \
            BENCH_MODE=post BENCH_SKU="$HISTORY_SKU-$i" BENCH_PHONE_BASE=0
        # The outbox relay publishes the slice's orders after it; the next slice
        # starts once it is done, so neither side runs beside the other's relay.
        drain_outbox "$dburl" >>"$OUT/history_outbox_drain.secs"
    done
done
psql "$history_url" -qAt -c "SELECT count(*) FROM orders WHERE sku LIKE '$HISTORY_SKU-%' AND sku <> '$HISTORY_SKU-0'" \
    >"$OUT/wrk_reserve_history.orders"
psql "$(db_url "$HISTREF_DB")" -qAt -c "SELECT count(*) FROM orders WHERE sku <> '$HISTORY_SKU-0'" \
    >"$OUT/wrk_reserve_history_ref.orders"
psql "$history_url" -qAt -c "SELECT pg_database_size(current_database())" >"$OUT/history.db_bytes"
stop_pid "$REF_PID"
stop_pid "$HIST_PID"
drop_db "$HISTREF_DB"
forget_history_run

# ---- 5. full drops ----------------------------------------------------------------
# run_drop NAME DATABASE EXCHANGE SUFFIX UNITS CUSTOMERS: one drop on a fresh
# database, with the CPU each process of the stack spent on it and
# pdf-generator's metrics afterwards. Writes $OUT/NAME.{json,txt,status,cpu.json}.
run_drop() {
    local name=$1 db=$2 exchange=$3 suffix=$4 units=$5 customers=$6 status=0
    log "$name: S=$units N=$customers C=$C, with pdf-generator (release, PREFETCH=$DROP_PREFETCH)"
    create_db "$db"
    start_order_api "$REL/order-api" "$(db_url "$db")" "$exchange" "$OUT/order-api-$name.log"
    start_pdf_generator "$REL/pdf-generator" "$exchange" "$suffix" "$OUT/pdf-generator-$name.log" \
        PREFETCH="$DROP_PREFETCH"
    python3 dev/bench/cpu.py snapshot "$OUT/$name.cpu0"
    "$REL/drop" --target "$OA_URL" --database-url "$(db_url "$db")" \
        --units "$units" --customers "$customers" --concurrency "$C" \
        --duplicates 0.05 --retries 0.05 --voucher-timeout-secs 300 \
        --json "$OUT/$name.json" | tee "$OUT/$name.txt" || status=$?
    python3 dev/bench/cpu.py snapshot "$OUT/$name.cpu1"
    python3 dev/bench/cpu.py diff "$OUT/$name.cpu0" "$OUT/$name.cpu1" >"$OUT/$name.cpu.json"
    curl -fsS "$PDF_URL/metrics" >"$OUT/$name.pdf-generator.metrics" || true
    echo "$status" >"$OUT/$name.status"
    stop_all
    drop_db "$db"
}
run_drop drop "$DROPDB" "$DROP_EXCHANGE" "bench.$ID" "$DROP_UNITS" "$DROP_CUSTOMERS"
run_drop big_drop "$BIG_DROPDB" "$BIG_DROP_EXCHANGE" "bench.big.$ID" "$BIG_DROP_UNITS" "$BIG_DROP_CUSTOMERS"
drop_status=$(($(cat "$OUT/drop.status") | $(cat "$OUT/big_drop.status")))

# ---- 7. open pages ------------------------------------------------------------
# As the page connects (no credentials: the broker's browser user), in the
# vhost the stack's env names (STOMP_VHOST), publishing where the app does
# (FANOUT_AMQP_URL). One socket per page, within the hard limit on open files.
log "open pages: Web-STOMP connections in steps of ${BROWSER_STEPS[*]}"
(
    want=$((${BROWSER_STEPS[-1]} + 1024)) hard=$(ulimit -Hn)
    [[ $hard == unlimited ]] || ((want <= hard)) || want=$hard
    ulimit -n "$want"
    "${STACK_PYTHON:-python3}" dev/bench/browsers.py "$OUT/browsers.json" "${BROWSER_STEPS[@]}"
) >"$OUT/browsers.txt" 2>&1 || log "open pages: the load tool failed (see $OUT/browsers.txt)"

echo "total_secs=$((SECONDS - T_START))" >>"$OUT/meta.txt"
log "writing docs/benchmarks.md, docs/benchmarks.json, docs/benchmarks.svg"
python3 dev/bench/report.py "$OUT" docs
log "done in $((SECONDS - T_START))s (raw outputs in $OUT)"
if ((ha_status != 0)); then
    log "row 4h (the replicated topology) did not run (see $OUT/ha.txt)"
    exit 1
fi
if ((drop_status != 0)); then
    log "a full drop's invariants FAILED (see $OUT/drop.txt and $OUT/big_drop.txt)"
    exit 1
fi
