#!/usr/bin/env bash
# dev/drop-smoke.sh: the drop simulator at small scale, as a correctness test
# (`make test` runs it). It starts its own order-api and pdf-generator on free
# ports with a fresh database (created by the `drop` role, which has CREATEDB)
# and a private orders exchange and queues, then runs two drops:
#   1. sell-out:  S=100 units, N=300 customers, 10% duplicates, 10% keyed retries;
#   2. leftover:  S=50 units,  N=40 customers (every customer is accepted).
# The simulator checks the invariants (accepted == min(S, N), the database holds
# exactly the accepted orders, no phone twice, every accepted order got its
# voucher on voucher.<id>, retries replayed) and exits non-zero if one fails.
# Timings are reported, never asserted.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=/dev/null
source "${STACK_DIR:-$ROOT/.stack}/env"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh"

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/drop-smoke
mkdir -p "$OUT"

# The same target selection as make test's build step, so features resolve the
# same way and nothing is compiled a second time (a `--bins` build leaves out the
# dev-dependencies, and with them one feature of hashbrown).
cargo build --quiet --workspace --all-targets

ID=$(random_hex 4)
DB=dropsmoke_$ID
EXCHANGE=dropsmoke.orders.$ID
ADMIN_TOKEN=smoke-$(random_hex 16)
export ADMIN_TOKEN

# shellcheck disable=SC2317 # run by the EXIT trap below
cleanup() {
    stop_all
    drop_db "$DB"
    delete_broker_objects "dropsmoke.$ID" "$EXCHANGE"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

create_db "$DB"
export APP_LOG=info
start_order_api "$TARGET/order-api" "$(db_url "$DB")" "$EXCHANGE" "$OUT/order-api.log"
start_pdf_generator "$TARGET/pdf-generator" "$EXCHANGE" "dropsmoke.$ID" "$OUT/pdf-generator.log"
echo "drop-smoke: order-api $OA_URL, pdf-generator $PDF_URL, database $DB, logs in $OUT"

run_drop() {
    local name=$1
    shift
    echo "drop-smoke: $name"
    if ! "$TARGET/drop" --target "$OA_URL" --database-url "$(db_url "$DB")" --no-progress \
        --voucher-timeout-secs 120 --json "$OUT/$name.json" "$@"; then
        echo "drop-smoke: $name FAILED (order-api log: $OUT/order-api.log, pdf-generator log: $OUT/pdf-generator.log)" >&2
        return 1
    fi
}

status=0
run_drop sell-out --units 100 --customers 300 --concurrency 32 --duplicates 0.1 --retries 0.1 || status=1
run_drop leftover --units 50 --customers 40 --concurrency 8 --duplicates 0.2 --retries 0.2 || status=1
if ((status == 0)); then
    echo "drop-smoke: 2 passed, 0 failed"
else
    echo "drop-smoke: FAILED" >&2
fi
exit "$status"
