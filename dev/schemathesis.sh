#!/usr/bin/env bash
# dev/schemathesis.sh: Schemathesis against a running order-api (`make test`
# runs it), so that /openapi.json stays true. It starts its own order-api on
# free ports with a fresh database and a private orders exchange, creates one
# product so that reads and reservations find something, and runs every check
# Schemathesis has (status codes, content types, headers and bodies against
# the document; invalid data refused, valid data accepted; methods the
# document does not list refused), positive and negative data, a bounded
# number of examples per operation and a fixed seed. Any finding fails the
# step. Schemathesis is installed in a venv under .stack/ (PyPI).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
STATE=${STACK_DIR:-$ROOT/.stack}
# shellcheck source=/dev/null
source "$STATE/env"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh"

SCHEMATHESIS_VERSION=4.32.5
VENV=$STATE/schemathesis
if [[ $(cat "$VENV/.version" 2>/dev/null) != "$SCHEMATHESIS_VERSION" ]]; then
    echo "schemathesis: installing $SCHEMATHESIS_VERSION in $VENV" >&2
    /usr/bin/python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
    echo "$SCHEMATHESIS_VERSION" >"$VENV/.version"
fi

TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/schemathesis
mkdir -p "$OUT"
# As make test's build step selects it (the whole workspace, every target), so
# this is a no-op after that step: `-p order-api` alone resolves other features
# and rebuilt much of the dependency tree (minutes on a cold target dir).
cargo build --quiet --locked --workspace --all-targets

ID=$(random_hex 4)
DB=schemathesis_$ID
EXCHANGE=schemathesis.orders.$ID
STATUS_QUEUE=schemathesis.voucher-status.$ID
ADMIN_TOKEN=st-$(random_hex 16)
export ADMIN_TOKEN

# shellcheck disable=SC2317 # run by the EXIT trap below
cleanup() {
    stop_all
    drop_db "$DB"
    delete_broker_objects "schemathesis.$ID" "$EXCHANGE"
    curl -fsS -u guest:guest -X DELETE \
        "${RABBITMQ_MANAGEMENT_URL:-http://127.0.0.1:15672}/api/queues/%2f/$STATUS_QUEUE" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

create_db "$DB"
# The stock event stream (GET /v1/products/{sku}/events) ends after
# STOCK_EVENTS_MAX_SECS; one second here, so that each of Schemathesis's
# requests to it gets a whole response well inside --request-timeout.
start_order_api "$TARGET/order-api" "$(db_url "$DB")" "$EXCHANGE" "$OUT/order-api.log" \
    VOUCHER_STATUS_QUEUE="$STATUS_QUEUE" STOCK_EVENTS_MAX_SECS=1
curl -fsS -o /dev/null -X PUT "$OA_URL/v1/products/SNEAKER-42" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -H 'content-type: application/json' --data '{"name": "Schemathesis", "stock": 1000000}'

# Every check; `ignored_auth` sends PUT without the token and expects 401.
# dev/schemathesis.toml says which answers valid data may get, and why.
# Run from $OUT, where Schemathesis keeps its cache (.schemathesis/).
cd "$OUT"
"$VENV/bin/schemathesis" --config-file "$ROOT/dev/schemathesis.toml" run "$OA_URL/openapi.json" \
    --checks all \
    --mode all \
    --max-examples "${SCHEMATHESIS_EXAMPLES:-25}" \
    --seed 20 \
    --workers 2 \
    --request-timeout 10 \
    --header "Authorization: Bearer $ADMIN_TOKEN" \
    --report junit --report-dir "$OUT" \
    --warnings off
