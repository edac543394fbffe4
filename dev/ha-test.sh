#!/usr/bin/env bash
# dev/ha-test.sh: the short form of the fault harness (`make test` runs it). It
# creates a private network namespace, so that the standard ports are free and
# nothing collides with the single-node stack, starts the replicated topology in
# it (`dev/stack.sh up-ha`, `dev/run.sh ha-background`), then:
#
#   1. An unknown outcome. The standbys' WAL receivers are paused, so a keyed
#      reservation's COMMIT waits for the synchronous standby; the leader's
#      Patroni and postmaster are SIGKILLed while it waits, the receivers resume.
#      The request must answer 503 `unavailable` with Retry-After. After the
#      failover, a retry with the same Idempotency-Key must return the order the
#      stored key names, as a replay, if the commit survived; if it did not, a
#      fresh reservation, which is then the one PostgreSQL holds.
#   2. A drop under faults: the drop simulator's customers (each with a key,
#      retrying errors as the page does) buy a product while the PostgreSQL
#      leader is lost (SIGKILL to its Patroni and postmaster together) and then
#      the RabbitMQ node leading pdf-generator.orders is killed. The simulator
#      checks, through the read-write entry point: every order id a client saw
#      in a 201 is in PostgreSQL and no order is there that no client saw,
#      orders <= stock and reserved = orders, no phone twice, every keyed retry
#      replayed its first answer. After the faults heal: every order reaches
#      voucher_ready, and no voucher exists in S3 for an order PostgreSQL lacks.
#
# Correctness is asserted; times are printed, never asserted. Needs root (the
# namespace) and the packages `dev/stack.sh install-ha` installs.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/ha-test
# Its own state, kept between runs (a warm Ceph starts in seconds).
HA_STATE=${HA_TEST_STACK_DIR:-${STACK_DIR:-$ROOT/.stack}/ha-test}
NS=${HA_TEST_NETNS:-drop-ha-test}
mkdir -p "$OUT" "$HA_STATE"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh"

say() { printf 'ha-test: %s\n' "$*"; }
fail() { printf 'ha-test: FAILED: %s\n' "$*" >&2; exit 1; }
# An order id is its holder's capability: only its first 8 characters print.
short() { printf '%s…' "${1:0:8}"; }

# ---------------------------------------------------------------- outside the namespace

in_ns() { ip netns exec "$NS" env STACK_DIR="$HA_STATE" HA_TEST_STACK_DIR="$HA_STATE" "$@"; }

# shellcheck disable=SC2317 # run by the EXIT trap
cleanup() {
    in_ns bash dev/run.sh stop >>"$OUT/down.log" 2>&1 || true
    in_ns bash dev/stack.sh down >>"$OUT/down.log" 2>&1 || true
    # Whatever this test started and `down` missed: only processes inside its
    # own namespace, by pid.
    local pids
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    if [[ -n $pids ]]; then
        echo "ha-test: killing leftovers in $NS: $(tr '\n' ' ' <<<"$pids")" >&2
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
}

outer() {
    [[ $(id -u) == 0 ]] || fail "needs root, for its network namespace"
    [[ -x $TARGET/order-api && -x $TARGET/pdf-generator && -x $TARGET/drop ]] ||
        fail "build first: cargo build --workspace --bins"
    # Packages and the venv come from the registries, which the namespace cannot reach.
    STACK_DIR=$HA_STATE bash dev/stack.sh install-ha
    if ip netns pids "$NS" >/dev/null 2>&1; then cleanup; fi # an interrupted run's
    ip netns add "$NS"
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns exec "$NS" ip link set lo up
    in_ns bash "${BASH_SOURCE[0]}" inner
}

# ---------------------------------------------------------------- inside it

psql_rw() { "$PG_BINDIR/psql" "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 "$@"; }

# psql as the superuser on member $1's private socket (not through HAProxy).
psql_member() {
    local i=$1
    shift
    runuser -u postgres -- "$PG_BINDIR/psql" -h "$HA_STATE/ha/pg$i/run" -p $((5432 + i)) \
        -U postgres -d postgres -qAt "$@"
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s; fails the test after SECONDS.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what not after ${secs}s"
        sleep 0.2
    done
}

# The probes wait_until polls.
none_alive() { local p; for p in "$@"; do [[ ! -d /proc/$p ]] || return 1; done; }
sync_rep_waiting() {
    (($(psql_member "$1" -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query = 'COMMIT' AND application_name = 'order-api'") >= 1))
}
reserved_at_least() { (($(psql_rw -c "SELECT coalesce(max(reserved), 0) FROM products WHERE sku = '$1'") >= $2)); }
vouchers_all_ready() { (($(psql_rw -c "SELECT count(*) FROM orders WHERE sku = '$1' AND status <> 'voucher_ready'") == 0)); }
leader_is_not() { local l; l=$(bash dev/stack.sh ha-leader) && [[ $l != "$1" ]] && psql_rw -c 'SELECT 1'; }

put_product() {
    curl -fsS -m 10 -X PUT "http://127.0.0.1:8080/v1/products/$1" -H "Authorization: Bearer $ADMIN_TOKEN" \
        -H 'content-type: application/json' -d "{\"name\": \"HA test\", \"stock\": $2}" >/dev/null
}

# post_order KEY SKU PHONE PREFIX: one keyed POST /v1/orders; status, headers
# and body land in PREFIX.{code,headers,body}.
post_order() {
    curl -sS -m 60 -o "$4.body" -D "$4.headers" -w '%{http_code}' -X POST http://127.0.0.1:8080/v1/orders \
        -H "Idempotency-Key: $1" -H 'content-type: application/json' \
        -d "{\"sku\": \"$2\", \"first_name\": \"Aino\", \"last_name\": \"Virtanen\", \"phone\": \"$3\"}" \
        >"$4.code" 2>"$4.err" || true
}

json_field() { /usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], ""))' "$1" "$2"; }

# 1. A keyed request whose COMMIT was in flight when the primary died.
unknown_outcome() {
    local sku key phone leader i pm paused=() t0
    sku=ha-unknown-$(random_hex 4)
    key=ha-unknown-$(random_hex 8)
    phone=+35840$(printf '%07d' $((16#$(random_hex 3) % 10000000)))
    put_product "$sku" 5
    leader=$(bash dev/stack.sh ha-leader)
    # Pause the standbys' WAL receivers: the commit is written and sent, and
    # waits for a standby's confirmation that cannot come yet.
    for i in 1 2 3; do
        [[ $i == "$leader" ]] && continue
        pm=$(head -n1 "$HA_STATE/ha/pg$i/data/postmaster.pid")
        mapfile -t -O "${#paused[@]}" paused < <(pgrep -P "$pm" -f walreceiver)
    done
    ((${#paused[@]} == 2)) || fail "expected two WAL receivers, found ${#paused[@]}"
    kill -STOP "${paused[@]}"
    post_order "$key" "$sku" "$phone" "$OUT/unknown" &
    local curl_pid=$!
    wait_until 20 "a COMMIT waiting for the synchronous standby on pg$leader" sync_rep_waiting "$leader"
    # The old primary's backends and WAL senders outlive its postmaster for a
    # moment. A receiver resumed while a WAL sender still runs would confirm
    # the commit, the waiting backend would be released and answer 201,
    # rightly (the standby has it). Resume them only once all are gone, so
    # that the outcome is unknown to the client: nobody is left to answer.
    local children
    mapfile -t children < <(pgrep -P "$(head -n1 "$HA_STATE/ha/pg$leader/data/postmaster.pid")")
    t0=$SECONDS
    bash dev/stack.sh ha-fault pg-primary-lost >/dev/null
    wait_until 30 "the old primary's processes exiting" none_alive "${children[@]}"
    kill -CONT "${paused[@]}"
    wait "$curl_pid"
    local code
    code=$(cat "$OUT/unknown.code")
    [[ $code == 503 ]] || fail "the request whose COMMIT was cut answered $code, not 503"
    [[ $(json_field "$OUT/unknown.body" error) == unavailable ]] || fail "the 503 is not 'unavailable'"
    grep -qi '^retry-after: [0-9]' "$OUT/unknown.headers" || fail "the 503 has no Retry-After"
    say "[ok] the request whose COMMIT was cut by the failover answered 503 unavailable with Retry-After"
    wait_until 60 "a new leader other than pg$leader, writable through :5432" leader_is_not "$leader"
    say "pg$leader lost; pg$(bash dev/stack.sh ha-leader) leads, writable through :5432 after $((SECONDS - t0))s"

    # What survived, read through the read-write entry point before the retry.
    local stored
    stored=$(psql_rw -c "SELECT order_id FROM idempotency_keys WHERE key = '$key'")
    local tries=0
    while :; do
        post_order "$key" "$sku" "$phone" "$OUT/retry"
        code=$(cat "$OUT/retry.code")
        [[ $code == 503 || $code == 000 ]] || break
        ((++tries < 60)) || fail "the retry still answers $code after $tries tries"
        sleep 1
    done
    [[ $code == 201 ]] || fail "the retry answered $code, not 201"
    local got replayed=no
    got=$(json_field "$OUT/retry.body" order_id)
    grep -qi '^idempotent-replayed: true' "$OUT/retry.headers" && replayed=yes
    if [[ -n $stored ]]; then
        [[ $got == "$stored" && $replayed == yes ]] ||
            fail "the commit survived (order $(short "$stored")) but the retry returned $(short "$got"), replayed=$replayed"
        say "[ok] the commit survived the failover: the retry replayed the original order $(short "$got")"
    else
        [[ $replayed == no ]] || fail "nothing survived, yet the retry claims a replay"
        say "[ok] the commit did not survive: the retry reserved afresh, order $(short "$got")"
    fi
    local rows
    rows=$(psql_rw -c "SELECT count(*) || ' ' || coalesce(bool_and(order_id = '$got'), false) FROM orders WHERE sku = '$sku'")
    [[ $rows == "1 true" ]] || fail "PostgreSQL holds '$rows' (orders, all the retried one) for $sku, not '1 true'"
    [[ $(psql_rw -c "SELECT reserved FROM products WHERE sku = '$sku'") == 1 ]] || fail "reserved is not 1 for $sku"
    say "[ok] PostgreSQL holds exactly that order, and reserved = 1"
    bash dev/stack.sh ha-heal
}

# 2. A drop while the PostgreSQL leader and the queue's RabbitMQ leader die.
drop_with_faults() {
    local sku units=400 customers=1200 t0 drop_rc=0
    sku=ha-drop-$(random_hex 4)
    t0=$SECONDS
    "$TARGET/drop" --sku "$sku" --units "$units" --customers "$customers" --concurrency 8 \
        --duplicates 0 --retries 0 --retry-errors 40 --allow-errors --no-vouchers --no-progress \
        --json "$OUT/drop.json" >"$OUT/drop.out" 2>&1 &
    local drop_pid=$!
    wait_until 60 "the first tenth of the units sold" reserved_at_least "$sku" $((units / 10))
    local pg rmq
    pg=$(bash dev/stack.sh ha-fault pg-primary-lost)
    say "drop: killed PostgreSQL leader pg$pg (Patroni and postmaster) at $((SECONDS - t0))s"
    wait_until 60 "a new leader other than pg$pg" leader_is_not "$pg"
    rmq=$(bash dev/stack.sh ha-fault rabbit-leader-killed)
    say "drop: pg$(bash dev/stack.sh ha-leader) leads; killed rabbit$rmq, the leader of pdf-generator.orders, at $((SECONDS - t0))s"
    wait "$drop_pid" || drop_rc=$?
    sed -n '/^\[/p;/^drop:/p' "$OUT/drop.out"
    ((drop_rc == 0)) || fail "the drop's invariants failed (exit $drop_rc; $OUT/drop.out)"
    bash dev/stack.sh ha-heal
    say "drop: healed (pg$pg rejoined as a standby, rabbit$rmq restarted) at $((SECONDS - t0))s"
    local left
    wait_until 300 "voucher_ready for every order of the drop" vouchers_all_ready "$sku"
    left=$(psql_rw -c "SELECT count(*) FROM orders WHERE sku = '$sku'")
    say "[ok] every order reached voucher_ready: $left of $left, at $((SECONDS - t0))s"
    # Every PDF in the bucket belongs to an order PostgreSQL holds.
    psql_rw -c 'SELECT order_id FROM orders' >"$OUT/order-ids"
    local unknown
    unknown=$("$STACK_PYTHON" - "$OUT/order-ids" <<'EOF'
import os, re, sys
import boto3
known = set(open(sys.argv[1]).read().split())
s3 = boto3.client("s3", endpoint_url=os.environ["S3_ENDPOINT"], region_name=os.environ["S3_REGION"],
                  aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
                  aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"])
unknown = 0
for page in s3.get_paginator("list_objects_v2").paginate(Bucket=os.environ["S3_BUCKET"]):
    for obj in page.get("Contents", []):
        m = re.search(r"[0-9a-f]{32}", obj["Key"])
        if m and m.group(0) not in known:
            unknown += 1
print(unknown)
EOF
    )
    [[ $unknown == 0 ]] || fail "$unknown vouchers in S3 for orders PostgreSQL does not hold"
    say "[ok] no voucher in S3 for an order PostgreSQL does not hold"
}

inner() {
    local t0=$SECONDS
    bash dev/stack.sh up-ha
    bash dev/run.sh ha-background >"$OUT/run.log" 2>&1 || { tail -20 "$OUT/run.log" >&2; fail "the replicas did not start"; }
    # shellcheck source=/dev/null
    source "$HA_STATE/env"
    ADMIN_TOKEN=$(cat "$HA_STATE/app/admin-token")
    export ADMIN_TOKEN
    say "topology up in $((SECONDS - t0))s"
    bash dev/stack.sh ha-status
    unknown_outcome
    drop_with_faults
    say "all checks hold ($((SECONDS - t0))s)"
}

case ${1:-} in
inner) inner ;;
"") outer ;;
*) echo "usage: dev/ha-test.sh" >&2; exit 2 ;;
esac
