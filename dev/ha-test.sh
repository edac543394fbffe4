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
#   2. A small drop under faults (dev/chaos/lib.sh: fault_drop): the drop
#      simulator's customers (each with a key, retrying errors as the page
#      does) buy a product while the PostgreSQL leader is lost (SIGKILL to its
#      Patroni and postmaster together) and then the RabbitMQ node leading
#      pdf-generator.orders is killed; each heals before the next. After the
#      drop, the harness's one checker (dev/chaos/check.py, as in make chaos)
#      reads the recorded history against PostgreSQL through the read-write
#      entry point, the bucket and the published voucher_ready messages.
#
# Correctness is asserted; times are printed, never asserted. Needs root (the
# namespace) and the packages `dev/stack.sh install-ha` installs.
set -euo pipefail

HARNESS=ha-test
# shellcheck source=dev/chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/chaos/lib.sh"

# The probes of the unknown outcome (the shared ones are in dev/chaos/lib.sh).
sync_rep_waiting() {
    (($(psql_member "$1" -c "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'SyncRep' AND query = 'COMMIT' AND application_name = 'order-api'") >= 1))
}

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

inner() {
    local t0=$SECONDS
    harness_up
    unknown_outcome
    # 2. A small drop while the PostgreSQL leader is lost, then the RabbitMQ
    # node leading pdf-generator.orders is killed; the checker after healing.
    fault_drop ha-drop 300 600 60 pg-primary-lost rabbit-leader-killed ||
        fail "the checker found a wrong count (see $OUT/ha-drop.check.json)"
    say "all checks hold ($((SECONDS - t0))s)"
}

case ${1:-} in
inner) inner ;;
"") harness_outer "${BASH_SOURCE[0]}" ;;
*) echo "usage: dev/ha-test.sh" >&2; exit 2 ;;
esac
