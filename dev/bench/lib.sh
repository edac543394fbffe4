#!/usr/bin/env bash
# dev/bench/lib.sh: helpers shared by dev/drop-smoke.sh and dev/bench.sh (and
# dev/browser-test.sh, for delete_broker_objects).
# Each run gets a fresh database, its own orders exchange and its own
# pdf-generator queues, so it never disturbs other processes on the stack.
# Source it after the stack's env file (.stack/env).

RUN_PIDS=()

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# The stack's URL with another database name.
db_url() { echo "${DATABASE_URL%/*}/$1"; }

create_db() { psql "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 -c "CREATE DATABASE \"$1\"" >/dev/null; }
drop_db() { psql "$DATABASE_URL" -qAt -c "DROP DATABASE IF EXISTS \"$1\" WITH (FORCE)" >/dev/null 2>&1 || true; }
# checkpoint DATABASE: a CHECKPOINT (as the cluster's superuser, over the local
# stack's socket), so that a measured run that follows starts with no dirty
# pages of an earlier one to write back, and with fresh full-page images.
checkpoint() {
    local port=${DATABASE_URL##*:}
    port=${port%%/*}
    runuser -u postgres -- psql -h "$PG_SOCKET_DIR" -p "$port" -d "$1" -qAt -c CHECKPOINT >/dev/null
}

# wait_http URL PID SECONDS: until URL answers 2xx, or the process died.
wait_http() {
    local url=$1 pid=$2 limit=$3 i
    for ((i = 0; i < limit * 5; i++)); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        kill -0 "$pid" 2>/dev/null || { echo "process $pid exited before $url answered" >&2; return 1; }
        sleep 0.2
    done
    echo "$url did not answer within ${limit}s" >&2
    return 1
}

# start_order_api BIN DATABASE_URL EXCHANGE LOG [VAR=VALUE...]: sets OA_PID, OA_URL
# and OA_METRICS_URL (its metrics listener, METRICS_ADDR).
start_order_api() {
    local bin=$1 dburl=$2 exchange=$3 log=$4 port metrics_port
    shift 4
    port=$(free_port)
    metrics_port=$(free_port)
    env LISTEN_ADDR="127.0.0.1:$port" METRICS_ADDR="127.0.0.1:$metrics_port" \
        DATABASE_URL="$dburl" ORDERS_EXCHANGE="$exchange" \
        VOUCHER_STATUS_QUEUE="order-api.voucher-status.$exchange" \
        ADMIN_TOKEN="$ADMIN_TOKEN" STOCK_RECONCILE_SECS=1 SHUTDOWN_TIMEOUT_SECS=5 \
        RUST_LOG="${APP_LOG:-warn}" NO_COLOR=1 "$@" "$bin" >"$log" 2>&1 &
    OA_PID=$!
    RUN_PIDS+=("$OA_PID")
    OA_URL="http://127.0.0.1:$port"
    # shellcheck disable=SC2034 # read by dev/bench.sh
    OA_METRICS_URL="http://127.0.0.1:$metrics_port"
    wait_http "$OA_URL/readyz" "$OA_PID" 60 || { tail -20 "$log" >&2; return 1; }
}

# put_product SKU STOCK: creates or updates a product on the order-api at
# $OA_URL, with $ADMIN_TOKEN.
put_product() {
    curl -fsS -o /dev/null -X PUT "$OA_URL/v1/products/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d "{\"name\": \"Bench $1\", \"stock\": $2}"
}

# start_pdf_generator BIN EXCHANGE SUFFIX LOG [VAR=VALUE...]: sets PDF_PID, PDF_URL.
start_pdf_generator() {
    local bin=$1 exchange=$2 suffix=$3 log=$4 port
    shift 4
    port=$(free_port)
    env METRICS_ADDR="127.0.0.1:$port" ORDERS_EXCHANGE="$exchange" \
        ORDERS_QUEUE="pdf-generator.orders.$suffix" EVENTS_QUEUE="pdf-generator.s3-events.$suffix" \
        STORED_QUEUE="pdf-generator.voucher-stored.$suffix" \
        SHUTDOWN_TIMEOUT_SECS=5 RUST_LOG="${APP_LOG:-warn}" NO_COLOR=1 "$@" "$bin" >"$log" 2>&1 &
    PDF_PID=$!
    RUN_PIDS+=("$PDF_PID")
    PDF_URL="http://127.0.0.1:$port"
    wait_http "$PDF_URL/readyz" "$PDF_PID" 60 || { tail -20 "$log" >&2; return 1; }
}

# stop_pid PID: SIGTERM, then SIGKILL after 10 s.
stop_pid() {
    local pid=$1 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

stop_all() {
    local pid
    for pid in "${RUN_PIDS[@]}"; do stop_pid "$pid"; done
    RUN_PIDS=()
}

# delete_broker_objects SUFFIX EXCHANGE: the run's private queues and exchange.
delete_broker_objects() {
    local suffix=$1 exchange=$2 api=${RABBITMQ_MANAGEMENT_URL:-http://127.0.0.1:15672}/api q
    for q in "pdf-generator.orders.$suffix" "pdf-generator.s3-events.$suffix" "pdf-generator.voucher-stored.$suffix" \
        "order-api.voucher-status.$exchange"; do
        curl -fsS -u guest:guest -X DELETE "$api/queues/%2f/$q" >/dev/null 2>&1 || true
    done
    curl -fsS -u guest:guest -X DELETE "$api/exchanges/%2f/$exchange" >/dev/null 2>&1 || true
}

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }
