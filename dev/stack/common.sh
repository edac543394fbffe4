#!/usr/bin/env bash
# dev/stack/common.sh: what every service file of dev/stack.sh uses: the state
# paths, the ports, messages, probes, pid files, ownership markers, and the
# installs (Debian packages, the Python venv). Sourced by dev/stack.sh, which
# sets ROOT (the repository) first.
#
# The constants and paths here are read by the files that source this one.
# shellcheck disable=SC2034

STATE=${STACK_DIR:-$ROOT/.stack}
mkdir -p "$STATE"
STATE=$(cd "$STATE" && pwd)
RUN=$STATE/run # ownership markers: <svc>.owner holds "ours" or "reused"
mkdir -p "$RUN"

# Fixed by docs/design.md.
PG_PORT=5432
REDIS_PORT=6379
AMQP_PORT=5672
MGMT_PORT=15672
STOMP_PORT=15674
S3_PORT=7480
S3_ACCESS_KEY=dropdev
S3_SECRET_KEY=dropdevsecret
S3_BUCKET=vouchers
S3_TOPIC=voucher-events
EVENTS_EXCHANGE=s3.events

VENV=$STATE/venv
PY=$VENV/bin/python
ENV_FILE=$STATE/env

VERBOSE=${STACK_VERBOSE:-0}

# ---------------------------------------------------------------- helpers

say() { if [[ $VERBOSE == 1 ]]; then printf 'stack: %s\n' "$*" >&2 || true; fi; }
warn() { printf 'stack: warning: %s\n' "$*" >&2; }
die() { printf 'stack: ERROR: %s\n' "$*" >&2; exit 1; }

# die, showing the end of the log(s) that explain the failure.
die_log() {
    local msg=$1; shift
    printf 'stack: ERROR: %s\n' "$msg" >&2
    local f
    for f in "$@"; do
        [[ -f $f ]] || continue
        printf -- '---- last lines of %s ----\n' "$f" >&2
        tail -n 30 "$f" >&2
    done
    exit 1
}

# A TCP probe without any client installed: bash's /dev/tcp, bounded by timeout.
port_open() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

# wait_for SECONDS WHAT LOG... -- CMD...: poll CMD every 0.25 s until it succeeds.
wait_for() {
    local secs=$1 what=$2; shift 2
    local logs=()
    while [[ $1 != -- ]]; do logs+=("$1"); shift; done
    shift
    local deadline=$((SECONDS + secs))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die_log "$what not ready after ${secs}s" "${logs[@]}"
        sleep 0.25
    done
}

# pid_alive PIDFILE PATTERN: prints the pid if the file names a live process whose
# command line contains PATTERN (guards against a stale file and a recycled pid).
pid_alive() {
    local file=$1 pat=$2 pid
    [[ -s $file ]] || return 1
    pid=$(head -n1 "$file" | tr -dc 0-9)
    [[ -n $pid && -r /proc/$pid/cmdline ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$pat" || return 1
    echo "$pid"
}

# stop_pid PIDFILE PATTERN SECONDS: SIGTERM, wait, then SIGKILL as a last resort.
stop_pid() {
    local file=$1 pat=$2 secs=$3 pid
    pid=$(pid_alive "$file" "$pat") || return 0
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + secs))
    while [[ -d /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.2; done
    if [[ -d /proc/$pid ]]; then
        warn "$pat (pid $pid) ignored SIGTERM for ${secs}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$file"
}

owner() { cat "$RUN/$1.owner" 2>/dev/null || echo none; }
set_owner() { echo "$2" >"$RUN/$1.owner"; }

# Daemons are started in their own session (setsid) with stdio on files, so that
# neither a caller's `$(stack.sh up)` nor a test killing its process group takes
# them down or hangs on their open pipes.

# ---------------------------------------------------------------- packages

PACKAGES=(postgresql redis-server rabbitmq-server ceph-mon ceph-osd radosgw python3-venv curl)

# ensure_packages [PACKAGE...]: the given packages, or PACKAGES when none are named.
ensure_packages() {
    local wanted=("$@")
    ((${#wanted[@]})) || wanted=("${PACKAGES[@]}")
    local missing=() p
    # One dpkg-query for all: the warm path must stay fast.
    local installed
    installed=$(dpkg-query -W -f '${db:Status-Status} ${Package}\n' "${wanted[@]}" 2>/dev/null || true)
    for p in "${wanted[@]}"; do
        grep -qx "installed $p" <<<"$installed" || missing+=("$p")
    done
    if ((${#missing[@]})); then
        [[ $(id -u) == 0 ]] || die "missing packages (${missing[*]}); run as root to install them"
        command -v apt-get >/dev/null || die "missing packages (${missing[*]}) and no apt-get"
        printf 'stack: installing %s (apt-get, about 40 s)\n' "${missing[*]}" >&2
        local log=$STATE/apt.log
        export DEBIAN_FRONTEND=noninteractive
        # Debian's postinst scripts may try to start daemons through invoke-rc.d; we
        # start our own, so forbid that for the duration of the install.
        local policy=/usr/sbin/policy-rc.d created_policy=0
        if [[ ! -e $policy ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && created_policy=1
        fi
        {
            apt-get update -q &&
                apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}"
        } >"$log" 2>&1 || {
            if ((created_policy)); then rm -f "$policy"; fi
            die_log "apt-get install ${missing[*]} failed" "$log"
        }
        # An `((…)) && …` as the last statement would return 1 when the policy file
        # was already there (container-built images ship one) and end the script.
        if ((created_policy)); then rm -f "$policy"; fi
    fi
}

# The venv that runs dev/s3_setup.py and dev/stack_check.py: boto3 (S3 and SNS),
# pika (AMQP), websocket-client (Web-STOMP check); PyJWT with cryptography, the
# JOSE library that is not ours, with which order-api's stack tests verify a
# voucher code against the JWKS. Debian's python, not a pyenv shim.
VENV_REQS=(boto3 pika websocket-client PyJWT cryptography)
ensure_venv() {
    if [[ -x $PY && $(cat "$VENV/.reqs" 2>/dev/null) == "${VENV_REQS[*]}" ]]; then return 0; fi
    local log=$STATE/venv.log
    /usr/bin/python3 -m venv "$VENV" >"$log" 2>&1 || die_log "python3 -m venv failed" "$log"
    "$VENV/bin/pip" install -q --disable-pip-version-check "${VENV_REQS[@]}" >>"$log" 2>&1 ||
        die_log "pip install ${VENV_REQS[*]} failed" "$log"
    echo "${VENV_REQS[*]}" >"$VENV/.reqs"
}
