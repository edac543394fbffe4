#!/usr/bin/env bash
# dev/run.sh foreground | background | ha-background | ha-heal | stop
#
# Runs order-api and pdf-generator (debug builds, already built by `make`)
# against the local stack. `foreground` keeps them attached to the terminal
# until Ctrl-C; `background` leaves them running (logs and pids under
# .stack/app/) until `stop`. `ha-background` runs two replicas of each on the
# replicated topology (`make up-ha`): order-api-1 and -2 on 127.0.0.1:8081 and
# 8082 behind HAProxy's 8080 (metrics on 9094 and 9095), pdf-generator-1 and -2
# with metrics on 9092 and 9093; `ha-heal` restarts any of them that is not
# running (the fault harness kills them). ADMIN_TOKEN comes from the environment, or a dev
# token is generated, kept in .stack/app/admin-token and printed.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE=${STACK_DIR:-$ROOT/.stack}
APP=$STATE/app
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
mkdir -p "$APP"

stop_one() {
    local name=$1 pidfile=$APP/$1.pid pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then kill -KILL "$pid" 2>/dev/null || true; fi
        echo "run: stopped $name (pid $pid)" >&2
    fi
    rm -f "$pidfile"
}

stop_all() {
    local f
    for f in "$APP"/order-api*.pid "$APP"/pdf-generator*.pid; do
        [[ -e $f ]] && stop_one "$(basename "$f" .pid)"
    done
    return 0
}

if [[ ${1:-} == stop ]]; then
    stop_all
    exit 0
fi

[[ -f $STATE/env ]] || { echo "run: no $STATE/env; run 'make up' (or dev/stack.sh up) first" >&2; exit 1; }
# shellcheck source=/dev/null
source "$STATE/env"
if [[ -z ${ADMIN_TOKEN:-} ]]; then
    [[ -s $APP/admin-token ]] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$APP/admin-token"
    ADMIN_TOKEN=$(cat "$APP/admin-token")
    # The banner never prints the token itself, only where it is.
    token_where="a dev token, in $APP/admin-token (set ADMIN_TOKEN to choose one)"
    token_shell="\$(cat $APP/admin-token)"
else
    token_where="from ADMIN_TOKEN in your environment"
    token_shell="\$ADMIN_TOKEN"
fi
export ADMIN_TOKEN
# The voucher signing key (docs/design.md, "Voucher lifecycle"): a dev
# Ed25519 key pair generated once into the stack directory, unless
# VOUCHER_SIGNING_KEY and VOUCHER_PUBLIC_KEYS come from the environment.
# Raw keys are the last 32 bytes of OpenSSL's PKCS#8 and SPKI DER forms.
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
if [[ -z ${VOUCHER_SIGNING_KEY:-} ]]; then
    if [[ ! -s $APP/voucher-signing-key ]]; then
        der=$(mktemp)
        openssl genpkey -algorithm ed25519 -outform DER -out "$der" 2>/dev/null
        (umask 077 && echo "dev-$(date -u +%Y%m%d):$(tail -c 32 "$der" | b64url)" >"$APP/voucher-signing-key")
        echo "dev-$(date -u +%Y%m%d):$(openssl pkey -inform DER -in "$der" -pubout -outform DER | tail -c 32 | b64url)" \
            >"$APP/voucher-public-keys"
        rm -f "$der"
    fi
    VOUCHER_SIGNING_KEY=$(cat "$APP/voucher-signing-key")
    VOUCHER_PUBLIC_KEYS=${VOUCHER_PUBLIC_KEYS:-$(cat "$APP/voucher-public-keys")}
fi
export VOUCHER_SIGNING_KEY VOUCHER_PUBLIC_KEYS
export RUST_LOG=${RUST_LOG:-info}
# Both services read METRICS_ADDR (docs/design.md): pdf-generator takes it
# from the environment, order-api gets its own, ORDER_API_METRICS_ADDR.
OA_METRICS_ADDR=${ORDER_API_METRICS_ADDR:-127.0.0.1:9091}

for bin in order-api pdf-generator; do
    [[ -x $TARGET/$bin ]] || { echo "run: $TARGET/$bin is not built; run 'make build'" >&2; exit 1; }
done

banner() {
    local url=http://$LISTEN_ADDR
    cat >&2 <<MSG

  order-api      $url            (page: $url/, API docs: $url/openapi.json)
                 metrics: http://$OA_METRICS_ADDR/metrics
  pdf-generator  http://${METRICS_ADDR:-127.0.0.1:9090}/metrics
  ADMIN_TOKEN    $token_where

  Create the demo product:
    curl -X PUT $url/v1/products/SNEAKER-42 -H "Authorization: Bearer $token_shell" \\
         -H 'content-type: application/json' -d '{"name": "Sneaker 42", "stock": 100}'

MSG
}

# wait_ready [NAME [ADDR]]: until order-api NAME answers /readyz on ADDR.
wait_ready() {
    local name=${1:-order-api} addr=${2:-$LISTEN_ADDR}
    for _ in $(seq 1 300); do
        curl -fsS "http://$addr/readyz" >/dev/null 2>&1 && return 0
        kill -0 "$(cat "$APP/$name.pid")" 2>/dev/null || { echo "run: $name exited; see $APP/$name.log" >&2; tail -20 "$APP/$name.log" >&2; return 1; }
        sleep 0.2
    done
    echo "run: $name not ready after 60 s; see $APP/$name.log" >&2
    return 1
}

# start_one NAME BIN VAR=VALUE...: a replica in its own session, logs and pid under $APP.
start_one() {
    local name=$1 bin=$2
    shift 2
    setsid env "$@" "$TARGET/$bin" >>"$APP/$name.log" 2>&1 </dev/null &
    echo $! >"$APP/$name.pid"
}

# ha_start BIN I: replica I (1 or 2) of BIN, on its own ports.
ha_start() {
    case $1 in
    pdf-generator) start_one "pdf-generator-$2" pdf-generator "METRICS_ADDR=127.0.0.1:$((9091 + $2))" ;;
    order-api)
        start_one "order-api-$2" order-api "LISTEN_ADDR=127.0.0.1:$((8080 + $2))" \
            "METRICS_ADDR=127.0.0.1:$((9093 + $2))"
        ;;
    esac
}

case ${1:-} in
foreground)
    stop_one order-api
    stop_one pdf-generator
    "$TARGET/pdf-generator" > >(tee -a "$APP/pdf-generator.log") 2>&1 &
    echo $! >"$APP/pdf-generator.pid"
    METRICS_ADDR=$OA_METRICS_ADDR "$TARGET/order-api" > >(tee -a "$APP/order-api.log") 2>&1 &
    echo $! >"$APP/order-api.pid"
    trap 'stop_one order-api; stop_one pdf-generator; exit 0' INT TERM
    wait_ready
    banner
    echo "  Ctrl-C stops both services (the stack keeps running; 'make down' stops it)." >&2
    wait
    ;;
background)
    stop_one order-api
    stop_one pdf-generator
    setsid "$TARGET/pdf-generator" >>"$APP/pdf-generator.log" 2>&1 </dev/null &
    echo $! >"$APP/pdf-generator.pid"
    METRICS_ADDR=$OA_METRICS_ADDR setsid "$TARGET/order-api" >>"$APP/order-api.log" 2>&1 </dev/null &
    echo $! >"$APP/order-api.pid"
    wait_ready
    banner
    echo "  Logs: $APP/*.log.  'make down' stops the services and the stack." >&2
    ;;
ha-background)
    stop_all
    for i in 1 2; do
        ha_start pdf-generator "$i"
        ha_start order-api "$i"
    done
    for i in 1 2; do wait_ready "order-api-$i" "127.0.0.1:$((8080 + i))"; done
    # Through HAProxy, once its health check has seen a replica ready.
    wait_ready order-api-1
    banner
    echo "  Two replicas of each; 'dev/stack.sh ha-status' shows the topology. 'make down' stops it all." >&2
    ;;
ha-heal)
    # The fault harness's: every HA replica that is not running starts again.
    for bin in pdf-generator order-api; do
        for i in 1 2; do
            pid=$(cat "$APP/$bin-$i.pid" 2>/dev/null) || pid=""
            if [[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null; then
                ha_start "$bin" "$i"
                echo "run: restarted $bin-$i" >&2
                if [[ $bin == order-api ]]; then wait_ready "order-api-$i" "127.0.0.1:$((8080 + i))"; fi
            fi
        done
    done
    ;;
*)
    echo "usage: dev/run.sh foreground | background | ha-background | ha-heal | stop" >&2
    exit 2
    ;;
esac
