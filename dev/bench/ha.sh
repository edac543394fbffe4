#!/usr/bin/env bash
# dev/bench/ha.sh: row 4h of `make bench`, what zero loss costs (issue #17).
#
# The same measurement as row 4a (wrk at C connections, POST /v1/orders, every
# customer accepted, one release order-api), on the replicated topology of
# `make up-ha`: PostgreSQL through HAProxy's read-write entry point to the
# Patroni leader, whose commits wait for a synchronous standby
# (synchronous_mode_strict), and RabbitMQ's three clustered nodes behind
# HAProxy. It runs in the fault harnesses' private network namespace
# (dev/chaos/lib.sh), so the standard ports are free and the single-node stack
# that rows 1-7 use keeps running beside it. dev/bench/report.py divides its
# accepted orders/s by row 4a's, measured minutes earlier in the same run.
#
# Called by dev/bench.sh with BENCH_HA_OUT (where wrk_reserve_ha.* go),
# BENCH_SECS, BENCH_C and ADMIN_TOKEN in the environment, after the release build.
set -euo pipefail

HARNESS=bench-ha
# shellcheck source=dev/chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/../chaos/lib.sh"
# Release binaries, as every row of the bench.
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/release
: "${BENCH_HA_OUT:?set by dev/bench.sh}" "${ADMIN_TOKEN:?set by dev/bench.sh}"
SECS=${BENCH_SECS:-10}
C=${BENCH_C:-64}

put_product() { # sku stock
    curl -fsS -o /dev/null -X PUT "$OA_URL/v1/products/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d "{\"name\": \"Bench $1\", \"stock\": $2}"
}

inner() {
    local t0=$SECONDS id sku exchange db
    bash dev/stack.sh up-ha >"$OUT/up.log" 2>&1 || { tail -20 "$OUT/up.log" >&2; fail "the topology did not start (see $OUT/up.log)"; }
    # shellcheck source=/dev/null
    source "$HA_STATE/env"
    say "topology up in $((SECONDS - t0))s"
    id=$(random_hex 4)
    sku=BENCH-HA-$id
    exchange=bench.ha.orders.$id
    # A fresh database, as for row 4a, created through the read-write entry point.
    db=bench_ha_$id
    create_db "$db"
    # shellcheck disable=SC2064 # expanded now: the names are this function's
    trap "stop_all; drop_db '$db'; delete_broker_objects 'bench.ha.$id' '$exchange'" EXIT
    start_order_api "$TARGET/order-api" "$(db_url "$db")" "$exchange" "$BENCH_HA_OUT/order-api-ha.log"
    # What the measurement ran on: commits wait for this many synchronous standbys.
    # (as the superuser on the leader: pg_stat_replication hides its columns from the app's role)
    psql_member "$(bash dev/stack.sh ha-leader)" \
        -c "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'" >"$BENCH_HA_OUT/ha.sync_standbys"
    psql_rw -c "SHOW synchronous_commit" >"$BENCH_HA_OUT/ha.synchronous_commit"
    put_product "$sku" 100000000
    # Warm-up (not reported), as for rows 2-4.
    put_product "$sku-warm" 100000000
    env BENCH_MODE=post BENCH_SKU="$sku-warm" BENCH_PHONE_BASE=0 \
        wrk -t2 -c"$C" -d2s -s dev/bench/wrk_count.lua "$OA_URL" >/dev/null 2>&1 || true
    say "wrk reserve_ha: $C connections, ${SECS}s"
    env BENCH_MODE=post BENCH_SKU="$sku" BENCH_PHONE_BASE=0 \
        wrk -t2 -c"$C" -d"${SECS}s" --timeout 10s -s dev/bench/wrk_count.lua "$OA_URL" \
        >"$BENCH_HA_OUT/wrk_reserve_ha.txt" 2>&1
    grep -q '^WRK_JSON ' "$BENCH_HA_OUT/wrk_reserve_ha.txt" || { cat "$BENCH_HA_OUT/wrk_reserve_ha.txt" >&2; fail "wrk did not report"; }
    # Read back through the read-write entry point, from whichever member leads.
    PGCONNECT_TIMEOUT=5 timeout 20 "$PG_BINDIR/psql" "$(db_url "$db")" -qAt \
        -c "SELECT count(*) FROM orders WHERE sku = '$sku'" >"$BENCH_HA_OUT/wrk_reserve_ha.orders"
    say "done in $((SECONDS - t0))s"
}

case ${1:-} in
inner) inner ;;
"") harness_outer "${BASH_SOURCE[0]}" ;;
*) echo "usage: dev/bench/ha.sh (from dev/bench.sh)" >&2; exit 2 ;;
esac
