#!/usr/bin/env bash
# dev/chaos.sh: the fault harness, in the style of Jepsen (`make chaos`). In a
# private network namespace (as dev/ha-test.sh, whose helpers it shares in
# dev/chaos/lib.sh) it starts the replicated topology, then runs a paced drop
# of the simulator for every fault of issue #17's table, each in its own drop,
# and finally one drop with all of them in turn:
#
#   pg-primary-lost       SIGKILL to the leader's Patroni and postmaster; a standby is promoted
#   pg-postmaster-killed  SIGKILL to the postmaster alone; Patroni restarts it in place
#   pg-primary-paused     SIGSTOP to the leader's Patroni and PostgreSQL for TTL + 5 s, then
#                         SIGCONT: the zombie primary must not acknowledge a write
#   rabbit-leader-killed  the node leading pdf-generator.orders, killed, then restarted
#   order-api-killed      SIGKILL to a replica while requests are in flight, then restarted
#   pdf-generator-killed  SIGKILL to a replica: the other one's notifier carries on (checked)
#   redis-stopped         Redis stopped, then started
#   s3-stopped            the S3 gateway stopped, then started
#
# Every customer holds an Idempotency-Key and retries 503s, 5xx and timeouts
# with it (bounded), as the page does; the simulator records every request
# (--history). After each drop heals, dev/chaos/check.py checks the history
# against PostgreSQL (through the read-write entry point), the bucket and the
# published voucher_ready messages, and prints each count. dev/chaos/report.py
# writes docs/reliability.md and docs/reliability.json from the run.
#
#   CHAOS_ONLY="pg-primary-lost all"   runs only the named drops (no report written)
#
# The run fails if any count is wrong. Times are measured and reported, never
# asserted. Needs root (the namespace) and `cargo build --workspace --bins`.
set -euo pipefail

HARNESS=chaos
# shellcheck source=dev/chaos/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/chaos/lib.sh"

# Small, paced drops: the topology is heavy on a small machine.
# Slow enough that stock remains when a fault that takes a moment to inject
# (stopping Redis or the S3 gateway) has taken effect.
SINGLE=(150 250 12) # units, customers, customers/s
# Stock to spare for the drop with every fault: it ends once they are done.
ALL=(2000 4000 5)

wanted() { [[ -z ${CHAOS_ONLY:-} || " $CHAOS_ONLY " == *" $1 "* ]]; }

inner() {
    local t0=$SECONDS failed=() kind
    rm -f "$OUT"/*.check.json
    harness_up
    local up_s=$((SECONDS - t0))
    for kind in "${ALL_FAULTS[@]}"; do
        wanted "$kind" || continue
        fault_drop "$kind" "${SINGLE[@]}" "$kind" || failed+=("$kind")
    done
    if wanted all; then
        FAULT_GAP=30 STOP_AFTER_FAULTS=1 fault_drop all "${ALL[@]}" "${ALL_FAULTS[@]}" || failed+=(all)
    fi
    local total=$((SECONDS - t0))
    say "drops done in ${total}s (topology up in ${up_s}s); failed: ${failed[*]:-none}"
    if [[ -z ${CHAOS_ONLY:-} ]]; then
        "$STACK_PYTHON" dev/chaos/report.py --dir "$OUT" --faults "${ALL_FAULTS[*]} all" \
            --seconds "$total" --up-seconds "$up_s" --md docs/reliability.md --json docs/reliability.json
    fi
    ((${#failed[@]} == 0)) || fail "wrong counts in: ${failed[*]}"
    say "every count holds (${total}s)"
}

case ${1:-} in
inner) inner ;;
"") harness_outer "${BASH_SOURCE[0]}" ;;
*) echo "usage: dev/chaos.sh" >&2; exit 2 ;;
esac
