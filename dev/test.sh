#!/usr/bin/env bash
# dev/test.sh: the whole suite on the real local stack (`make test` runs
# `make stack assets` first). Each step is a suite of its own; a failing step
# fails the run, and the last line says how many steps passed.
#
#   TEST_ONLY="rust-unit order-api"  runs only the named steps.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source=/dev/null
source "${STACK_DIR:-$ROOT/.stack}/env"
export RUST_BACKTRACE=${RUST_BACKTRACE:-0}
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

STEPS=(build rust-unit router order-api e2e drop-smoke ha browser stack-check schemathesis k8s shellcheck)
passed=0
failed=()
t_start=$SECONDS
# Each step's output also goes to a log of its own, so the end of the run can
# repeat why a step failed: CI shows only the last lines of a run.
LOGS=${CARGO_TARGET_DIR:-$ROOT/target}/test-logs
mkdir -p "$LOGS"

run_step() {
    local name=$1
    shift
    if [[ -n ${TEST_ONLY:-} && " $TEST_ONLY " != *" $name "* ]]; then return 0; fi
    local t0=$SECONDS
    printf '\n==== %s ====\n' "$name"
    local rc=0
    # pipefail: the pipeline's status is the step's, not tee's.
    "$@" 2>&1 | tee "$LOGS/$name.log" || rc=$?
    if ((rc == 0)); then
        passed=$((passed + 1))
        printf '==== %s: ok (%ss)\n' "$name" $((SECONDS - t0))
    else
        failed+=("$name")
        printf '==== %s: FAILED (%ss)\n' "$name" $((SECONDS - t0))
    fi
}

# Every cargo command selects the whole workspace, so features resolve the same
# way each time and each dependency compiles once (`-p CRATE` can resolve other
# features than the workspace build, and then builds a dependency again).
step_build() { cargo build --locked --workspace --all-targets; }
# Unit tests beside the code (no services needed).
step_rust_unit() { cargo test --locked --workspace --lib --bins; }
# The fast tier: order-api's router in-process, with no services.
step_router() { cargo test --locked --workspace --test router; }
# order-api against the stack; its chaos tests bring private servers.
step_order_api() { cargo test --locked --workspace --test api -- --test-threads=4; }
# The cross-service tests (dev/e2e): the voucher pipeline end to end, both
# services as processes. Its chaos tests restart the shared RabbitMQ and S3
# server, so its tests run one at a time and after the order-api suite.
step_e2e() { cargo test --locked --workspace --test e2e -- --test-threads=1; }
step_drop_smoke() { bash dev/drop-smoke.sh; }
# The short form of the fault harness: the replicated topology in a private
# network namespace, a PostgreSQL failover and a RabbitMQ node kill (dev/ha-test.sh).
step_ha() { cargo build --quiet --locked --workspace --all-targets && bash dev/ha-test.sh; }
step_browser() { bash dev/browser-test.sh; }
# The stack's own self-test: the browser user's STOMP permissions, limits,
# subscription policy and exclusive queues, with real clients.
step_stack_check() { bash dev/stack.sh check; }
# Schemathesis against a running order-api: its checks on, bounded in
# examples, failing on any finding.
step_schemathesis() { bash dev/schemathesis.sh; }
step_k8s() { bash dev/k8s-check.sh; }
# Every shell script in the repository, as shellcheck (Debian's) reads it.
step_shellcheck() {
    if ! command -v shellcheck >/dev/null; then
        echo "test: installing shellcheck (apt-get)" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck >/dev/null ||
            { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends shellcheck >/dev/null; }
    fi
    local scripts
    mapfile -t scripts < <(git ls-files '*.sh')
    shellcheck "${scripts[@]}" && echo "shellcheck: ${#scripts[@]} scripts clean"
}

for step in "${STEPS[@]}"; do
    run_step "$step" "step_${step//-/_}"
    # Nothing else can pass when the build failed.
    if [[ $step == build && ${#failed[@]} -gt 0 ]]; then break; fi
done

# The lines that say why, from each failed step's log: the simulator's and the
# checkers' [FAIL] lines, Rust panics and failed test names, scripts' FAILED.
for name in "${failed[@]}"; do
    printf '\n==== why %s failed (whole log: %s)\n' "$name" "$LOGS/$name.log"
    # (RabbitMQ's indented crash-report lines are left out: they bury the rest.)
    grep -a -E '\[FAIL\]|panicked at|^test .* FAILED|^    [a-z_:]+$|FAILED|ERROR:|error(\[E[0-9]+\])?:|Error:|assert|exited with reason' \
        "$LOGS/$name.log" | grep -v -E '^==== |\[error\] <[0-9.]+>  ' | tail -n 12 || tail -n 12 "$LOGS/$name.log"
done

printf '\nmake test: %ss; failed steps: %s\n' $((SECONDS - t_start)) "${failed[*]:-none}"
echo "suites: ${passed} passed, ${#failed[@]} failed"
((${#failed[@]} == 0))
