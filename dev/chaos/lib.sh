#!/usr/bin/env bash
# dev/chaos/lib.sh: what the two fault harnesses share, dev/ha-test.sh (make
# test's short form) and dev/chaos.sh (make chaos): the private network
# namespace the replicated topology runs in, the probes, the faults and their
# healing, and `fault_drop`, a drop of the simulator under a list of faults
# whose history dev/chaos/check.py (the one checker) checks afterwards.
#
# The sourcing script sets HARNESS (its name, for messages) and calls
# `harness_outer SCRIPT` from outside the namespace; SCRIPT is run again
# inside it with the argument `inner`.
# shellcheck disable=SC2034 # some constants are the sourcing script's

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$ROOT" || exit 1
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}/debug
OUT=${CARGO_TARGET_DIR:-$ROOT/target}/$HARNESS
# Their own state, kept between runs (a warm Ceph starts in seconds), shared
# by both harnesses: they use the same namespace, so never run at once.
HA_STATE=${HA_TEST_STACK_DIR:-${STACK_DIR:-$ROOT/.stack}/ha-test}
NS=${HA_TEST_NETNS:-drop-ha-test}
mkdir -p "$OUT" "$HA_STATE"
# shellcheck source=dev/bench/lib.sh
source "$ROOT/dev/bench/lib.sh"

say() { printf '%s: %s\n' "$HARNESS" "$*"; }
fail() { printf '%s: FAILED: %s\n' "$HARNESS" "$*" >&2; exit 1; }
# An order id is its holder's capability: only its first 8 characters print.
short() { printf '%s…' "${1:0:8}"; }

# ---------------------------------------------------------------- outside the namespace

in_ns() { ip netns exec "$NS" env STACK_DIR="$HA_STATE" HA_TEST_STACK_DIR="$HA_STATE" "$@"; }

# shellcheck disable=SC2317 # run by the EXIT trap
harness_cleanup() {
    in_ns bash dev/run.sh stop >>"$OUT/down.log" 2>&1 || true
    in_ns bash dev/stack.sh down >>"$OUT/down.log" 2>&1 || true
    # Whatever the harness started and `down` missed: only processes inside
    # its own namespace, by pid.
    local pids
    pids=$(ip netns pids "$NS" 2>/dev/null || true)
    if [[ -n $pids ]]; then
        echo "$HARNESS: killing leftovers in $NS: $(tr '\n' ' ' <<<"$pids")" >&2
        # shellcheck disable=SC2086 # one pid per word
        kill -KILL $pids 2>/dev/null || true
    fi
    ip netns del "$NS" 2>/dev/null || true
}

harness_outer() {
    local script=$1
    [[ $(id -u) == 0 ]] || fail "needs root, for its network namespace"
    [[ -x $TARGET/order-api && -x $TARGET/pdf-generator && -x $TARGET/drop ]] ||
        fail "build first: cargo build --workspace --bins"
    # Packages and the venv come from the registries, which the namespace cannot reach.
    STACK_DIR=$HA_STATE bash dev/stack.sh install-ha
    if ip netns pids "$NS" >/dev/null 2>&1; then harness_cleanup; fi # an interrupted run's
    ip netns add "$NS"
    trap harness_cleanup EXIT
    trap 'exit 130' INT TERM
    ip netns exec "$NS" ip link set lo up
    in_ns bash "$script" inner
}

# The topology and both replicas of each service, inside the namespace.
harness_up() {
    local t0=$SECONDS
    bash dev/stack.sh up-ha
    bash dev/run.sh ha-background >"$OUT/run.log" 2>&1 || { tail -20 "$OUT/run.log" >&2; fail "the replicas did not start"; }
    # shellcheck source=/dev/null
    source "$HA_STATE/env"
    ADMIN_TOKEN=$(cat "$HA_STATE/app/admin-token")
    export ADMIN_TOKEN
    say "topology up in $((SECONDS - t0))s"
    bash dev/stack.sh ha-status
}

# ---------------------------------------------------------------- probes

# Bounded: a probe must not hang on a paused primary's socket.
psql_rw() { PGCONNECT_TIMEOUT=5 timeout 20 "$PG_BINDIR/psql" "$DATABASE_URL" -qAt -v ON_ERROR_STOP=1 "$@"; }

# psql as the superuser on member $1's private socket (not through HAProxy).
psql_member() {
    local i=$1
    shift
    runuser -u postgres -- "$PG_BINDIR/psql" -h "$HA_STATE/ha/pg$i/run" -p $((5432 + i)) \
        -U postgres -d postgres -qAt "$@"
}

# wait_until SECONDS WHAT CMD...: polls CMD every 0.2 s; fails the run after SECONDS.
wait_until() {
    local secs=$1 what=$2
    shift 2
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || fail "$what not after ${secs}s"
        sleep 0.2
    done
}

none_alive() { local p; for p in "$@"; do [[ ! -d /proc/$p ]] || return 1; done; }
reserved() { psql_rw -c "SELECT coalesce(max(reserved), 0) FROM products WHERE sku = '$1'" 2>/dev/null || echo 0; }
reserved_at_least() { (($(reserved "$1") >= $2)); }
leader_is_not() { local l; l=$(bash dev/stack.sh ha-leader) && [[ $l != "$1" ]] && psql_rw -c 'SELECT 1'; }
rw_answers() { psql_rw -c 'SELECT 1'; }
# sold_or_done SKU N PID: N units sold, or the drop PID ended by itself.
sold_or_done() { ! kill -0 "$3" 2>/dev/null || reserved_at_least "$1" "$2"; }

mgmt_json() {
    curl -fsS -m 10 -u guest:guest -X "$1" -H 'content-type: application/json' ${3:+--data "$3"} \
        "$RABBITMQ_MANAGEMENT_URL$2"
}
# queue_field VHOST QUEUE FIELD: a field of a queue's management record (VHOST
# URL-encoded, as in the management API's paths).
queue_field() {
    mgmt_json GET "/api/queues/$1/$2" |
        /usr/bin/python3 -c 'import json, sys; print(json.load(sys.stdin).get(sys.argv[1]) or 0)' "$3"
}
# capture_messages_above N: the capture queue holds more than N messages.
capture_messages_above() { (($(queue_field "$(capture_vhost)" "$CAPTURE" messages) > $1)); }

# ---------------------------------------------------------------- the capture queue

# A quorum queue (three members) bound to every customer's voucher key: the
# checker counts the voucher_ready messages the notifiers published in it,
# whichever broker node a customer would have been connected to. It lives
# where the notifiers publish: the browsers' vhost of FANOUT_AMQP_URL.
capture_vhost() {
    local v=${FANOUT_AMQP_URL##*/}
    printf '%s' "${v:-%2F}"
}
capture_create() {
    local v
    v=$(capture_vhost)
    # guest (the management user of the local stack) reads the capture queue.
    mgmt_json PUT "/api/permissions/$v/guest" '{"configure": ".*", "write": ".*", "read": ".*"}' >/dev/null
    mgmt_json PUT "/api/queues/$v/$1" '{"durable": true, "arguments": {"x-queue-type": "quorum"}}' >/dev/null
    mgmt_json POST "/api/bindings/$v/e/amq.topic/q/$1" '{"routing_key": "voucher.*"}' >/dev/null
}
capture_delete() { mgmt_json DELETE "/api/queues/$(capture_vhost)/$1" >/dev/null 2>&1 || true; }

# ---------------------------------------------------------------- faults

# The fault table of issue #17, in the order make chaos runs them.
ALL_FAULTS=(pg-primary-lost pg-postmaster-killed pg-primary-paused rabbit-leader-killed
    order-api-killed pdf-generator-killed redis-stopped s3-stopped)
# Patroni's TTL (dev/stack/ha.sh): a pause must outlive it to make a zombie.
HA_TTL_SECS=10

# heal: the topology whole again, then every replica running.
heal() {
    bash dev/stack.sh ha-heal || fail "the topology did not heal (dev/stack.sh ha-heal)"
    bash dev/run.sh ha-heal >>"$OUT/run.log" 2>&1 || fail "the replicas did not restart (see $OUT/run.log)"
}

# strike KIND FAULTS_FILE: injects the fault, records when and on what, lets it
# last as that fault does, then heals. What happens in between is each fault's.
strike() {
    local kind=$1 faults=$2 target at t0=$SECONDS
    if [[ $kind == pdf-generator-killed ]]; then
        # Both replicas' notifiers consume the bucket events: each has its consumer.
        (($(queue_field %2F pdf-generator.s3-events consumers) >= 2)) ||
            fail "pdf-generator.s3-events has fewer than two consumers before the kill"
    fi
    local before
    before=$(queue_field "$(capture_vhost)" "$CAPTURE" messages)
    target=$(bash dev/stack.sh ha-fault "$kind") || fail "ha-fault $kind"
    # When the fault took effect: a request sent after this saw it.
    at=$(date +%s.%N)
    case $kind in
    pg-primary-lost)
        wait_until 60 "a leader other than pg$target, writable through :5432" leader_is_not "$target"
        ;;
    pg-postmaster-killed)
        wait_until 60 "PostgreSQL writable again after pg$target's postmaster was killed" rw_answers
        ;;
    pg-primary-paused)
        sleep $((HA_TTL_SECS + 5))
        ;;
    pdf-generator-killed)
        # The notifier survives the loss of its replica: while pdf-generator-1
        # is down, voucher_ready messages keep being published (by the other
        # replica's notifier, from the events the dead one left unacked too).
        wait_until 90 "a voucher_ready published while pdf-generator-1 is down" \
            capture_messages_above "$before"
        [[ -z $(pid_of_replica pdf-generator-1) ]] || fail "pdf-generator-1 came back by itself"
        say "  [ok] the notifier survived pdf-generator-1: announcements continued while it was down"
        ;;
    *) sleep 5 ;;
    esac
    heal
    local healed
    healed=$(/usr/bin/python3 -c 'import sys, time; print(round(time.time() - float(sys.argv[1]), 1))' "$at")
    printf '{"fault": "%s", "target": "%s", "at": %s, "healed_after_s": %s}\n' "$kind" "$target" "$at" "$healed" >>"$faults"
    say "  $kind on $target: healed (topology whole, replicas up) ${healed}s after it struck"
}

pid_of_replica() {
    local pid
    pid=$(cat "$HA_STATE/app/$1.pid" 2>/dev/null) && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

# fault_drop NAME UNITS CUSTOMERS RATE FAULT...: a paced drop of the simulator
# (every customer with a key, retrying errors as the page does) while each
# fault strikes in turn, once the previous one healed and FAULT_GAP more units
# sold (default: a share of the units that leaves stock after the last fault);
# then the checker. With STOP_AFTER_FAULTS=1 the drop is ended (SIGTERM: no
# further arrivals) once sales went on after the last fault, so a long drop
# lasts only as long as its faults. Its counts land in $OUT/NAME.check.json;
# returns the checker's status.
fault_drop() {
    local name=$1 units=$2 customers=$3 rate=$4
    shift 4
    local faults=("$@") sku t0=$SECONDS drop_rc=0 n=$#
    sku=$name-$(random_hex 4)
    CAPTURE=chaos.vouchers.$sku
    capture_create "$CAPTURE"
    local flog=$OUT/$name.faults.jsonl
    : >"$flog"
    say "drop $name: S=$units N=$customers at ${rate}/s, faults: ${faults[*]:-none}"
    "$TARGET/drop" --sku "$sku" --units "$units" --customers "$customers" --concurrency 16 \
        --rate "$rate" --duplicates 0 --retries 0 --retry-errors 40 --allow-errors --no-vouchers \
        --no-progress --json "$OUT/$name.drop.json" --history "$OUT/$name.history.jsonl" \
        >"$OUT/$name.drop.out" 2>&1 &
    local drop_pid=$! i gap=${FAULT_GAP:-$((units / (n + 2)))} base=0
    for ((i = 0; i < n; i++)); do
        # A drop that sells out strikes at fixed shares of its units; one that
        # is ended after its faults, once gap more units sold since the last heal.
        wait_until 300 "$((base + gap)) units sold before ${faults[i]}" sold_or_done "$sku" $((base + gap)) "$drop_pid"
        say "  ${faults[i]} at $((SECONDS - t0))s, $(reserved "$sku") sold"
        strike "${faults[i]}" "$flog"
        if [[ ${STOP_AFTER_FAULTS:-0} == 1 ]]; then base=$(reserved "$sku"); else base=$((base + gap)); fi
    done
    if [[ ${STOP_AFTER_FAULTS:-0} == 1 ]]; then
        wait_until 120 "sales after the last fault healed" sold_or_done "$sku" $((base + 10)) "$drop_pid"
        kill -TERM "$drop_pid" 2>/dev/null || true
    fi
    wait "$drop_pid" || drop_rc=$?
    ((drop_rc != 2)) || { tail -5 "$OUT/$name.drop.out" >&2; fail "the drop could not run"; }
    say "drop $name: load done at $((SECONDS - t0))s (simulator exit $drop_rc); checking"
    local rc=0
    "$STACK_PYTHON" dev/chaos/check.py --sku "$sku" --history "$OUT/$name.history.jsonl" \
        --faults "$flog" --queue "$CAPTURE" --json "$OUT/$name.check.json" || rc=$?
    capture_delete "$CAPTURE"
    say "drop $name: checked at $((SECONDS - t0))s"
    return "$rc"
}
