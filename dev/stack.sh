#!/usr/bin/env bash
# dev/stack.sh: the local stack of real services, on loopback only.
#
#   up                      install what is missing, start everything, apply the setup
#   down                    stop what this script started (never a service it reused)
#   status                  one line per service
#   env                     print `export VAR=...` lines for clients (also in $STATE/env)
#   start|stop|restart SVC  SVC is postgres | redis | rabbitmq | s3 (chaos tests use these)
#   check                   end-to-end self-test: S3 PUT -> AMQP event, browser STOMP permissions
#
# Services and names follow docs/design.md; the recipes (Ceph RGW as the S3 server
# with AMQP bucket notifications) follow shared/notes/local-stack.md.
#
# State lives under one git-ignored directory, $STACK_DIR (default: <repo>/.stack).
# A service that already listens on its port (another checkout's stack, a system
# daemon) is reused instead of failing; it is marked "reused" and never stopped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
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

PG_DIR=$STATE/postgres
PGDATA=$PG_DIR/data
PG_SOCK=$PG_DIR/run
PG_LOG=$PG_DIR/postgres.log
REDIS_DIR=$STATE/redis
RMQ_DIR=$STATE/rabbitmq
RMQ_NODENAME=drop@localhost
# rabbitmqctl (Debian's wrapper, run as root) switches to the rabbitmq user, whose
# HOME holds the Erlang cookie. Our node runs as root with the same HOME, so that
# plain `rabbitmqctl` with RABBITMQ_NODENAME set reaches it.
RMQ_HOME=/var/lib/rabbitmq
CEPH_DIR=$STATE/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf
VENV=$STATE/venv
PY=$VENV/bin/python
ENV_FILE=$STATE/env

VERBOSE=${STACK_VERBOSE:-0}

# ---------------------------------------------------------------- helpers

say() { [[ $VERBOSE == 1 ]] && printf 'stack: %s\n' "$*" >&2 || true; }
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

ensure_packages() {
    local missing=() p
    # One dpkg-query for all: the warm path must stay fast.
    local installed
    installed=$(dpkg-query -W -f '${db:Status-Status} ${Package}\n' "${PACKAGES[@]}" 2>/dev/null || true)
    for p in "${PACKAGES[@]}"; do
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
                apt-get install -y -q --no-install-recommends "${missing[@]}"
        } >"$log" 2>&1 || {
            if ((created_policy)); then rm -f "$policy"; fi
            die_log "apt-get install ${missing[*]} failed" "$log"
        }
        # An `((…)) && …` as the last statement would return 1 when the policy file
        # was already there (container-built images ship one) and end the script.
        if ((created_policy)); then rm -f "$policy"; fi
    fi
}

pg_bindir() {
    local d v best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb ]] || continue
        v=${d#/usr/lib/postgresql/}; v=${v%/bin}
        [[ $v =~ ^[0-9]+$ ]] && ((v >= 15)) || continue
        if [[ -z $best ]] || ((v > ${best#*:})); then best=$d:$v; fi
    done
    [[ -n $best ]] && echo "${best%:*}"
}

# The venv that runs dev/s3_setup.py and dev/stack_check.py: boto3 (S3 and SNS),
# pika (AMQP), websocket-client (Web-STOMP check). Debian's python, not a pyenv shim.
VENV_REQS="boto3 pika websocket-client"
ensure_venv() {
    if [[ -x $PY && $(cat "$VENV/.reqs" 2>/dev/null) == "$VENV_REQS" ]]; then return 0; fi
    local log=$STATE/venv.log
    /usr/bin/python3 -m venv "$VENV" >"$log" 2>&1 || die_log "python3 -m venv failed" "$log"
    "$VENV/bin/pip" install -q --disable-pip-version-check $VENV_REQS >>"$log" 2>&1 ||
        die_log "pip install $VENV_REQS failed" "$log"
    echo "$VENV_REQS" >"$VENV/.reqs"
}

# ---------------------------------------------------------------- PostgreSQL

pg_pid() { pid_alive "$PGDATA/postmaster.pid" postgres; }
as_postgres() { runuser -u postgres -- "$@"; }

pg_ready() { "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p $PG_PORT; }

pg_init() {
    local bin=$1
    [[ -s $PGDATA/PG_VERSION ]] && return 0
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
    # initdb refuses to run as root, and the server must own its data directory.
    as_postgres test -x "$PG_DIR" ||
        die "user postgres cannot reach $PG_DIR (a parent directory is not world-searchable); set STACK_DIR elsewhere"
    # Trust on the private Unix socket (only root/postgres can reach it), passwords on TCP.
    as_postgres "$bin/initdb" -D "$PGDATA" -U postgres -E UTF8 --locale=C \
        --auth-local=trust --auth-host=scram-sha-256 >"$PG_DIR/initdb.log" 2>&1 ||
        die_log "initdb failed" "$PG_DIR/initdb.log"
    echo "include 'stack.conf'" >>"$PGDATA/postgresql.conf"
}

pg_write_conf() {
    # Rewritten on every start, so changes here apply on the next restart.
    cat >"$PGDATA/stack.conf" <<EOF
# written by dev/stack.sh
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_SOCK'
# Tests run several API replicas, each with a pool, plus a database per test.
max_connections = 400
shared_buffers = 128MB
# Durability is a property the tests check: keep fsync and synchronous commits.
fsync = on
synchronous_commit = on
full_page_writes = on
log_min_messages = warning
log_line_prefix = '%m [%p] '
EOF
    chown postgres:postgres "$PGDATA/stack.conf"
}

pg_start() {
    local bin
    bin=$(pg_bindir) || die "no PostgreSQL >= 15 server found under /usr/lib/postgresql"
    pg_init "$bin"
    pg_write_conf
    install -d -o postgres -g postgres -m 0755 "$PG_SOCK"
    # The server appends to the log as postgres.
    touch "$PG_LOG" && chown postgres:postgres "$PG_LOG"
    # -w waits until the server accepts connections (bounded by -t).
    setsid -w runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 -s start \
        </dev/null >>"$PG_LOG" 2>&1 || die_log "PostgreSQL did not start" "$PG_LOG"
}

pg_setup() {
    local sql
    sql=$(cat <<'EOF'
SELECT 'CREATE ROLE drop LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drop')\gexec
ALTER ROLE drop LOGIN CREATEDB PASSWORD 'drop';
SELECT 'CREATE DATABASE drop OWNER drop' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'drop')\gexec
EOF
)
    local bin
    bin=$(pg_bindir)
    if [[ $(owner postgres) == ours ]]; then
        as_postgres "$bin/psql" -h "$PG_SOCK" -p $PG_PORT -U postgres -d postgres -qAt \
            -v ON_ERROR_STOP=1 <<<"$sql" >/dev/null 2>"$PG_DIR/setup.err" ||
            die_log "creating role/database drop failed" "$PG_DIR/setup.err"
        return 0
    fi
    # Reused server: try as its superuser through the default socket (peer auth); if
    # that is not possible, it is enough that the contract's credentials work.
    if as_postgres psql -p $PG_PORT -d postgres -qAt -v ON_ERROR_STOP=1 <<<"$sql" >/dev/null 2>&1; then
        return 0
    fi
    "$bin/psql" "postgres://drop:drop@127.0.0.1:$PG_PORT/drop" -qAt -c 'SELECT 1' >/dev/null 2>&1 ||
        die "PostgreSQL on :$PG_PORT is not ours and role/database drop/drop cannot be set up or used"
}

postgres_start() {
    if pg_pid >/dev/null; then
        set_owner postgres ours
    elif port_open $PG_PORT; then
        say "postgres: reusing the server already on :$PG_PORT"
        set_owner postgres reused
    else
        pg_start
        set_owner postgres ours
    fi
    wait_for 60 "PostgreSQL on :$PG_PORT" "$PG_LOG" -- pg_ready
    pg_setup
}

postgres_stop() {
    pg_pid >/dev/null || return 0
    setsid -w runuser -u postgres -- "$(pg_bindir)/pg_ctl" -D "$PGDATA" -m fast -w -t 60 -s stop \
        </dev/null >>"$PG_LOG" 2>&1 || die_log "pg_ctl stop failed" "$PG_LOG"
}

postgres_status() {
    local pid
    if pid=$(pg_pid); then echo "postgres  up    ours    127.0.0.1:$PG_PORT  pid $pid  data $PGDATA"
    elif [[ -n $(pg_bindir) ]] && pg_ready 2>/dev/null; then echo "postgres  up    reused  127.0.0.1:$PG_PORT"
    else echo "postgres  down"; fi
}

# ---------------------------------------------------------------- Redis

REDIS_PID=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log
redis_pid() { pid_alive "$REDIS_PID" redis-server; }
redis_ready() { [[ $(redis-cli -h 127.0.0.1 -p $REDIS_PORT ping 2>/dev/null) == PONG ]]; }

redis_start() {
    if redis_pid >/dev/null; then
        set_owner redis ours
    elif port_open $REDIS_PORT; then
        say "redis: reusing the server already on :$REDIS_PORT"
        set_owner redis reused
    else
        mkdir -p "$REDIS_DIR"
        # A cache and pub/sub bus only: no snapshots, no AOF.
        setsid redis-server --daemonize yes --bind 127.0.0.1 --port $REDIS_PORT \
            --save "" --appendonly no --dir "$REDIS_DIR" \
            --pidfile "$REDIS_PID" --logfile "$REDIS_LOG" \
            </dev/null >>"$REDIS_LOG" 2>&1 || die_log "redis-server did not start" "$REDIS_LOG"
        set_owner redis ours
    fi
    wait_for 20 "Redis on :$REDIS_PORT" "$REDIS_LOG" -- redis_ready
}

redis_stop() {
    local pid
    pid=$(redis_pid) || return 0
    redis-cli -h 127.0.0.1 -p $REDIS_PORT shutdown nosave >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 20))
    while [[ -d /proc/$pid ]] && ((SECONDS < deadline)); do sleep 0.1; done
    stop_pid "$REDIS_PID" redis-server 5
}

redis_status() {
    local pid
    if pid=$(redis_pid); then echo "redis     up    ours    127.0.0.1:$REDIS_PORT  pid $pid"
    elif redis_ready; then echo "redis     up    reused  127.0.0.1:$REDIS_PORT"
    else echo "redis     down"; fi
}

# ---------------------------------------------------------------- RabbitMQ

RMQ_PID=$RMQ_DIR/rabbit.pid
RMQ_LOGDIR=$RMQ_DIR/log
RMQ_LOG=$RMQ_LOGDIR/$RMQ_NODENAME.log
RMQ_STARTLOG=$RMQ_LOGDIR/startup.log

# Everything the server and its CLI need to find this node and keep their state
# here. Exported by rmq_env (for our own processes) and written to $STATE/env.
rmq_env_vars() {
    cat <<EOF
RABBITMQ_NODENAME=$RMQ_NODENAME
RABBITMQ_CONF_ENV_FILE=$RMQ_DIR/rabbitmq-env.conf
RABBITMQ_CONFIG_FILE=$RMQ_DIR/rabbitmq.conf
RABBITMQ_ADVANCED_CONFIG_FILE=$RMQ_DIR/advanced.config
RABBITMQ_ENABLED_PLUGINS_FILE=$RMQ_DIR/enabled_plugins
RABBITMQ_MNESIA_BASE=$RMQ_DIR/mnesia
RABBITMQ_LOG_BASE=$RMQ_LOGDIR
RABBITMQ_PID_FILE=$RMQ_PID
ERL_EPMD_ADDRESS=127.0.0.1
EOF
}

rmq_env() {
    local line
    while IFS= read -r line; do export "${line?}"; done < <(rmq_env_vars)
    # Erlang distribution and CLI nodes on loopback too.
    export RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_CTL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
    export RABBITMQ_DIST_PORT=25672
    export HOME=$RMQ_HOME
}

rmq_write_conf() {
    mkdir -p "$RMQ_DIR" "$RMQ_LOGDIR" "$RMQ_DIR/mnesia"
    # Keep /etc/rabbitmq/rabbitmq-env.conf out of it: our env file is empty on purpose.
    : >"$RMQ_DIR/rabbitmq-env.conf"
    echo '[rabbitmq_management,rabbitmq_web_stomp].' >"$RMQ_DIR/enabled_plugins"
    cat >"$RMQ_DIR/rabbitmq.conf" <<EOF
# written by dev/stack.sh
listeners.tcp.1 = 127.0.0.1:$AMQP_PORT
management.tcp.ip = 127.0.0.1
management.tcp.port = $MGMT_PORT
web_stomp.tcp.ip = 127.0.0.1
web_stomp.tcp.port = $STOMP_PORT
web_stomp.ws_path = /ws
# guest may log in from loopback only (RGW publishes as guest from 127.0.0.1).
loopback_users.guest = true
# No ANONYMOUS login: every client names a user.
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
log.file.level = info
log.console = false
EOF
    # The STOMP plugin (which Web-STOMP runs on) defaults to logging clients that
    # send no credentials in as guest/guest, and to a plain STOMP listener on 61613:
    # switch off both, so browsers must use the browser user over Web-STOMP only.
    cat >"$RMQ_DIR/advanced.config" <<'EOF'
[{rabbitmq_stomp, [{default_user, []}, {tcp_listeners, []}, {ssl_listeners, []}]}].
EOF
}

# GET/PUT on the management API as guest (allowed from loopback only).
mgmt() {
    local method=$1 path=$2 body=${3:-}
    local args=(-fsS -m 10 -u guest:guest -X "$method" -H 'content-type: application/json')
    [[ -n $body ]] && args+=(--data "$body")
    curl "${args[@]}" "http://127.0.0.1:$MGMT_PORT$path"
}

# Ready = AMQP accepts connections and the Web-STOMP listener is registered.
rmq_ready() {
    port_open $AMQP_PORT || return 1
    mgmt GET /api/overview 2>/dev/null | grep -q '"protocol":"http/web-stomp"'
}

rmq_pid() { pid_alive "$RMQ_PID" beam; }

rmq_start_node() {
    rmq_write_conf
    # The Erlang cookie lives in the rabbitmq user's HOME (created by the package).
    if [[ ! -s $RMQ_HOME/.erlang.cookie ]]; then
        mkdir -p "$RMQ_HOME"
        tr -dc A-Z </dev/urandom | head -c 20 >"$RMQ_HOME/.erlang.cookie"
        chmod 400 "$RMQ_HOME/.erlang.cookie"
        chown rabbitmq:rabbitmq "$RMQ_HOME/.erlang.cookie" 2>/dev/null || true
    fi
    port_open 4369 || touch "$RUN/epmd.ours" # epmd is started by the node below
    (
        rmq_env
        cd "$RMQ_DIR"
        # Run the real script, not Debian's /usr/sbin wrapper, which would switch to
        # the rabbitmq user and log to /var/log/rabbitmq.
        setsid /usr/lib/rabbitmq/bin/rabbitmq-server -detached </dev/null >>"$RMQ_STARTLOG" 2>&1
    ) || die_log "rabbitmq-server did not start" "$RMQ_STARTLOG" "$RMQ_LOG"
}

rmq_wait() {
    local deadline=$((SECONDS + 120))
    until rmq_ready; do
        if ((SECONDS >= deadline)); then
            die_log "RabbitMQ (AMQP :$AMQP_PORT, Web-STOMP :$STOMP_PORT) not ready after 120s" \
                "$RMQ_STARTLOG" "$RMQ_LOG"
        fi
        # Fail fast on a boot failure instead of waiting out the timeout.
        if [[ $(owner rabbitmq) == ours ]] && grep -qs 'BOOT FAILED' "$RMQ_LOG" "$RMQ_STARTLOG"; then
            die_log "RabbitMQ failed to boot" "$RMQ_STARTLOG" "$RMQ_LOG"
        fi
        sleep 0.5
    done
}

rmq_ctl() { (rmq_env && timeout 60 /usr/lib/rabbitmq/bin/rabbitmqctl -q "$@"); }

# Users, permissions and the exchange RGW publishes to. All idempotent PUTs.
rmq_setup() {
    local err=$RMQ_DIR/setup.err
    if mgmt GET /api/whoami >/dev/null 2>&1; then
        {
            mgmt PUT /api/users/drop '{"password":"drop","tags":""}' &&
                mgmt PUT /api/permissions/%2F/drop '{"configure":".*","write":".*","read":".*"}' &&
                mgmt PUT /api/users/browser '{"password":"browser","tags":""}' &&
                mgmt PUT /api/permissions/%2F/browser \
                    '{"configure":"^stomp-subscription-.*","write":"^stomp-subscription-.*","read":"^(stomp-subscription-.*|amq\\.topic)$"}' &&
                mgmt PUT /api/topic-permissions/%2F/browser \
                    '{"exchange":"amq.topic","write":"^$","read":"^(voucher\\.[0-9a-f]{32}|stock\\.[A-Za-z0-9_.-]{1,64})$"}' &&
                # RGW does not declare its target exchange; without it, events are dropped.
                mgmt PUT "/api/exchanges/%2F/$EVENTS_EXCHANGE" \
                    '{"type":"topic","durable":true,"auto_delete":false,"internal":false,"arguments":{}}'
        } >/dev/null 2>"$err" || die_log "RabbitMQ setup through the management API failed" "$err"
        return 0
    fi
    # Reused broker without guest access to the management API: fall back to the CLI
    # (needs its Erlang cookie and node name) and to AMQP as the app user.
    warn "RabbitMQ management API refused guest; applying users with rabbitmqctl"
    {
        rmq_ctl add_user drop drop 2>/dev/null || rmq_ctl change_password drop drop
        rmq_ctl set_permissions -p / drop '.*' '.*' '.*'
        rmq_ctl add_user browser browser 2>/dev/null || rmq_ctl change_password browser browser
        rmq_ctl set_permissions -p / browser '^stomp-subscription-.*' '^stomp-subscription-.*' \
            '^(stomp-subscription-.*|amq\.topic)$'
        rmq_ctl set_topic_permissions -p / browser amq.topic '^$' \
            '^(voucher\.[0-9a-f]{32}|stock\.[A-Za-z0-9_.-]{1,64})$'
    } >/dev/null 2>"$err" || die_log "RabbitMQ user setup failed" "$err"
    ensure_venv
    "$PY" "$ROOT/dev/s3_setup.py" declare-exchange 2>"$err" || die_log "declaring $EVENTS_EXCHANGE failed" "$err"
}

rabbitmq_start() {
    if rmq_pid >/dev/null; then
        set_owner rabbitmq ours
    elif port_open $AMQP_PORT; then
        say "rabbitmq: reusing the broker already on :$AMQP_PORT"
        set_owner rabbitmq reused
    else
        set_owner rabbitmq ours
        mkdir -p "$RMQ_LOGDIR"
        : >"$RMQ_STARTLOG"
        rmq_start_node
    fi
    rmq_wait
    rmq_setup
}

rabbitmq_stop() {
    local pid
    pid=$(rmq_pid) || return 0
    # `rabbitmqctl stop <pidfile>` returns once the VM has exited. Bounded by rmq_ctl.
    rmq_ctl stop "$RMQ_PID" >>"$RMQ_STARTLOG" 2>&1 || warn "rabbitmqctl stop failed; sending SIGTERM"
    stop_pid "$RMQ_PID" beam 30
}

rabbitmq_status() {
    local pid
    if pid=$(rmq_pid); then echo "rabbitmq  up    ours    127.0.0.1:$AMQP_PORT (mgmt :$MGMT_PORT, web-stomp :$STOMP_PORT/ws)  pid $pid  node $RMQ_NODENAME"
    elif port_open $AMQP_PORT; then echo "rabbitmq  up    reused  127.0.0.1:$AMQP_PORT"
    else echo "rabbitmq  down"; fi
}

# ---------------------------------------------------------------- Ceph (S3)

CEPH_RUN=$CEPH_DIR/run
CEPH_LOGDIR=$CEPH_DIR/log
ceph_c() { timeout 60 "$@" -c "$CEPH_CONF"; }
ceph_log() { echo "$CEPH_LOGDIR/$1.log"; }
ceph_pid() { pid_alive "$CEPH_RUN/$1.pid" "$2"; }
mon_pid() { ceph_pid mon.a ceph-mon; }
osd_pid() { ceph_pid osd.0 ceph-osd; }
rgw_pid() { ceph_pid client.rgw.a radosgw; }

# An anonymous GET / answers 200 once the gateway serves requests.
s3_ready() { [[ $(curl -s -m 5 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$S3_PORT/") == 200 ]]; }

ceph_write_conf() {
    mkdir -p "$CEPH_DIR" "$CEPH_RUN" "$CEPH_LOGDIR" "$CEPH_DIR/mon" "$CEPH_DIR/osd" "$CEPH_DIR/rgw"
    [[ -s $CEPH_DIR/fsid ]] || cat /proc/sys/kernel/random/uuid >"$CEPH_DIR/fsid"
    cat >"$CEPH_CONF" <<EOF
# written by dev/stack.sh: one mon, one OSD, one radosgw, all on 127.0.0.1, no mgr.
[global]
fsid = $(cat "$CEPH_DIR/fsid")
mon_host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public_addr = 127.0.0.1
cluster_addr = 127.0.0.1
ms_bind_ipv6 = false
# A local dev cluster: no cephx.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
keyring = $CEPH_DIR/keyring
# Single node, single OSD: pools of size 1, failure domain "osd".
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
# Every file of every daemon under the state directory.
run_dir = $CEPH_RUN
pid_file = $CEPH_RUN/\$name.pid
admin_socket = $CEPH_RUN/\$name.asok
log_file = $CEPH_LOGDIR/\$name.log
log_to_stderr = false
err_to_stderr = false
mon_cluster_log_file = $CEPH_LOGDIR/cluster.log
crash_dir = $CEPH_DIR/crash
# Keep the footprint of a dev box.
osd_memory_target = 939524096
# Errors only in the files (level 0), the last 5 levels kept in memory for crash
# dumps: per-request and per-PG lines would cost CPU and disk under a benchmark.
# For an access log, set debug_rgw = 1 here and restart s3.
debug_rgw = 0/5
debug_osd = 0/5

[mon.a]
mon_data = $CEPH_DIR/mon/a

[osd.0]
osd_data = $CEPH_DIR/osd/0
# bluestore on a sparse file survives kill -9 (memstore would lose every object).
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = 8589934592

[client]
# Without this, with auth none, radosgw (and radosgw-admin) insist on a secure mon
# session and hang for minutes ("failed to fetch mon config", -13).
ms_mon_client_mode = crc

[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:$S3_PORT
rgw_data = $CEPH_DIR/rgw/a
# Beast runs requests as coroutines on this many threads (default 512). On a
# 2-core box, 2 cost about 1.6 ms of radosgw CPU per voucher PUT against 2.2 ms
# with 512. Fewer idle threads also make radosgw's AMQP crash rare (see
# dev/s3_setup.py): one drop in four crashed it with 8 threads, none in 50 with 2.
rgw_thread_pool_size = 2
EOF
    touch "$CEPH_DIR/keyring"
}

# Runs a ceph daemon in the background (they daemonize themselves).
ceph_daemon() {
    local name=$1; shift
    setsid "$@" -c "$CEPH_CONF" </dev/null >>"$(ceph_log "$name").out" 2>&1 ||
        die_log "$name did not start" "$(ceph_log "$name").out" "$(ceph_log "$name")"
}

mon_start() {
    mon_pid >/dev/null && return 0
    local data=$CEPH_DIR/mon/a
    if [[ ! -e $data/stack.done ]]; then
        rm -rf "$data" && mkdir -p "$data"
        monmaptool --create --clobber --fsid "$(cat "$CEPH_DIR/fsid")" \
            --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' "$CEPH_DIR/monmap" >/dev/null ||
            die "monmaptool failed"
        ceph-mon -c "$CEPH_CONF" --mkfs -i a --monmap "$CEPH_DIR/monmap" \
            >"$(ceph_log mon.a).out" 2>&1 || die_log "ceph-mon --mkfs failed" "$(ceph_log mon.a).out" "$(ceph_log mon.a)"
        touch "$data/stack.done"
    fi
    ceph_daemon mon.a ceph-mon -i a
    # `ceph mon stat`-like probe without the slow python CLI: the mon's v1 port.
    wait_for 30 "ceph-mon" "$(ceph_log mon.a)" -- port_open 6789
}

osd_start() {
    osd_pid >/dev/null && return 0
    local data=$CEPH_DIR/osd/0
    if [[ ! -e $data/stack.done ]]; then
        rm -rf "$data" && mkdir -p "$data"
        # Keep the uuid: `ceph osd new` with the same uuid is idempotent, so a retry
        # after a failed mkfs gets id 0 again.
        [[ -s $CEPH_DIR/osd.0.uuid ]] || cat /proc/sys/kernel/random/uuid >"$CEPH_DIR/osd.0.uuid"
        local uuid
        uuid=$(cat "$CEPH_DIR/osd.0.uuid")
        local id
        id=$(ceph_c ceph osd new "$uuid" 2>"$(ceph_log osd.0).out") ||
            die_log "ceph osd new failed" "$(ceph_log osd.0).out"
        [[ $id == 0 ]] || die "expected OSD id 0, the monitor gave $id (stale $CEPH_DIR? remove it)"
        ceph-osd -c "$CEPH_CONF" -i 0 --mkfs --osd-uuid "$uuid" \
            >>"$(ceph_log osd.0).out" 2>&1 || die_log "ceph-osd --mkfs failed" "$(ceph_log osd.0).out" "$(ceph_log osd.0)"
        touch "$data/stack.done"
    fi
    ceph_daemon osd.0 ceph-osd -i 0
}

rgw_start() {
    rgw_pid >/dev/null && return 0
    ceph_daemon client.rgw.a radosgw -n client.rgw.a
}

# radosgw-admin connects to the cluster directly (not through the S3 port).
s3_user() {
    [[ -e $CEPH_DIR/user.done ]] && return 0
    local out=$CEPH_DIR/user.out
    if ! ceph_c radosgw-admin user info --uid dev >"$out" 2>&1; then
        ceph_c radosgw-admin user create --uid dev --display-name "drop dev" \
            --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" >"$out" 2>&1 ||
            die_log "radosgw-admin user create failed" "$out" "$(ceph_log client.rgw.a)"
    fi
    touch "$CEPH_DIR/user.done"
}

s3_setup() {
    ensure_venv
    local err=$CEPH_DIR/setup.err rc=0
    "$PY" "$ROOT/dev/s3_setup.py" setup 2>"$err" || rc=$?
    if ((rc == 3)) && [[ $(owner s3) == ours ]]; then
        # The keys are unknown to this gateway (e.g. user.done survived a wipe): retry.
        rm -f "$CEPH_DIR/user.done"
        s3_user
        rc=0
        "$PY" "$ROOT/dev/s3_setup.py" setup 2>"$err" || rc=$?
    fi
    ((rc == 0)) || die_log "S3 setup (bucket $S3_BUCKET, topic $S3_TOPIC, notification) failed" "$err"
}

s3_start() {
    if rgw_pid >/dev/null; then
        set_owner s3 ours
    elif port_open $S3_PORT; then
        say "s3: reusing the server already on :$S3_PORT"
        set_owner s3 reused
    else
        set_owner s3 ours
        ceph_write_conf
        mon_start
        osd_start
        rgw_start
    fi
    # The first start creates RGW's pools: that takes a while on a small machine.
    wait_for 180 "S3 (radosgw on :$S3_PORT)" "$(ceph_log client.rgw.a)" "$(ceph_log osd.0)" -- s3_ready
    if [[ $(owner s3) == ours ]]; then s3_user; fi
    s3_setup
    if [[ $(owner s3) == ours ]]; then rgw_watchdog_start; fi
}

# stop s3 stops the gateway only: that is "the S3 server is down". The mon and OSD
# keep running (they hold the data) and go down with `down`.
s3_stop() {
    rgw_watchdog_stop
    stop_pid "$CEPH_RUN/client.rgw.a.pid" radosgw 30
}

# radosgw 16.2's AMQP thread can crash under load (a confirm callback unlocks a
# waiter its PUT already freed; see dev/s3_setup.py). A watchdog restarts the gateway, as
# a process supervisor would in production: PUTs in flight fail, pdf-generator
# retries them, and the retried PUTs emit their events. `stop s3` stops the
# watchdog first, so an outage a test asks for stays an outage.
RGW_WATCHDOG_PID=$RUN/rgw-watchdog.pid
rgw_watchdog_start() {
    pid_alive "$RGW_WATCHDOG_PID" "stack.sh rgw-watchdog" >/dev/null && return 0
    setsid bash "$ROOT/dev/stack.sh" rgw-watchdog </dev/null >>"$(ceph_log rgw-watchdog)" 2>&1 &
    echo $! >"$RGW_WATCHDOG_PID"
}
rgw_watchdog_stop() { stop_pid "$RGW_WATCHDOG_PID" "stack.sh rgw-watchdog" 5; }
cmd_rgw_watchdog() {
    while sleep 2; do
        [[ $(owner s3) == ours ]] || exit 0
        rgw_pid >/dev/null && continue
        echo "$(date -u +%FT%TZ) radosgw is not running; restarting it"
        (rgw_start) || echo "$(date -u +%FT%TZ) restarting radosgw failed; retrying"
    done
}

ceph_stop_all() {
    s3_stop
    stop_pid "$CEPH_RUN/osd.0.pid" ceph-osd 60
    stop_pid "$CEPH_RUN/mon.a.pid" ceph-mon 30
}

s3_status() {
    local r o m
    r=$(rgw_pid) || r=""
    o=$(osd_pid) || o=""
    m=$(mon_pid) || m=""
    if [[ -n $r ]]; then echo "s3        up    ours    127.0.0.1:$S3_PORT  radosgw $r, osd $o, mon $m"
    elif [[ -n $o$m ]]; then echo "s3        down  ours    radosgw stopped (osd ${o:-down}, mon ${m:-down})"
    elif s3_ready; then echo "s3        up    reused  127.0.0.1:$S3_PORT"
    else echo "s3        down"; fi
}

# ---------------------------------------------------------------- env

write_env() {
    local bindir
    bindir=$(pg_bindir) || bindir=/usr/lib/postgresql/15/bin
    local nodename=$RMQ_NODENAME
    if [[ $(owner rabbitmq) == reused ]]; then
        # Another node: guess its name from epmd (another checkout's stack is "drop").
        local names
        names=$(epmd -names 2>/dev/null || true)
        if grep -q '^name drop ' <<<"$names"; then nodename=drop@localhost
        elif grep -q '^name rabbit ' <<<"$names"; then nodename=rabbit@$(hostname -s)
        fi
    fi
    local tmp=$ENV_FILE.tmp
    cat >"$tmp" <<EOF
# written by dev/stack.sh env: source it (or eval "\$(dev/stack.sh env)")
export STACK_DIR=$STATE
export LISTEN_ADDR=127.0.0.1:8080
export DATABASE_URL=postgres://drop:drop@127.0.0.1:$PG_PORT/drop
export PG_BINDIR=$bindir
export PGDATA_STACK=$PGDATA
export PG_SOCKET_DIR=$PG_SOCK
export REDIS_URL=redis://127.0.0.1:$REDIS_PORT
export AMQP_URL=amqp://drop:drop@127.0.0.1:$AMQP_PORT/%2f
export RABBITMQ_MANAGEMENT_URL=http://127.0.0.1:$MGMT_PORT
export RABBITMQ_NODENAME=$nodename
export S3_ENDPOINT=http://127.0.0.1:$S3_PORT
export S3_PUBLIC_ENDPOINT=http://127.0.0.1:$S3_PORT
export S3_REGION=us-east-1
export S3_BUCKET=$S3_BUCKET
export S3_ACCESS_KEY_ID=$S3_ACCESS_KEY
export S3_SECRET_ACCESS_KEY=$S3_SECRET_KEY
export S3_FORCE_PATH_STYLE=true
export S3_EVENTS_EXCHANGE=$EVENTS_EXCHANGE
export S3_EVENTS_ROUTING_KEY=$S3_TOPIC
export STOMP_URL=ws://127.0.0.1:$STOMP_PORT/ws
export STOMP_LOGIN=browser
export STOMP_PASSCODE=browser
export STOMP_VHOST=/
export CEPH_CONF=$CEPH_CONF
export STACK_PYTHON=$PY
EOF
    mv "$tmp" "$ENV_FILE"
}

# ---------------------------------------------------------------- commands

SERVICES=(postgres redis rabbitmq s3)

check_service() {
    local s
    for s in "${SERVICES[@]}"; do [[ $1 == "$s" ]] && return 0; done
    die "unknown service '$1' (one of: ${SERVICES[*]})"
}

svc_start() {
    case $1 in
    postgres) postgres_start ;;
    redis) redis_start ;;
    rabbitmq) rabbitmq_start ;;
    s3) s3_start ;;
    esac
}

svc_stop() {
    local s=$1
    if [[ $(owner "$s") == reused ]]; then
        die "$s on its port was not started by this script (reused); refusing to stop it"
    fi
    case $s in
    postgres) postgres_stop ;;
    redis) redis_stop ;;
    rabbitmq) rabbitmq_stop ;;
    s3) s3_stop ;;
    esac
}

cmd_up() {
    local t0=$SECONDS
    ensure_packages
    # RGW's notifications need the exchange, so RabbitMQ comes before S3.
    postgres_start
    redis_start
    rabbitmq_start
    s3_start
    write_env
    local s summary=""
    for s in "${SERVICES[@]}"; do summary+=" $s($(owner "$s"))"; done
    printf 'stack: up in %ss:%s; env: %s\n' $((SECONDS - t0)) "$summary" "$ENV_FILE" >&2
}

cmd_down() {
    # Reverse order; reused services are left alone.
    if [[ $(owner s3) == ours ]]; then ceph_stop_all; fi
    if [[ $(owner rabbitmq) == ours ]]; then
        rabbitmq_stop
        # epmd refuses -kill while any node is still registered, so this is safe.
        if [[ -e $RUN/epmd.ours ]]; then
            ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
            rm -f "$RUN/epmd.ours"
        fi
    fi
    if [[ $(owner redis) == ours ]]; then redis_stop; fi
    if [[ $(owner postgres) == ours ]]; then postgres_stop; fi
    rm -f "$RUN"/*.owner
}

cmd_status() {
    local rc=0 line
    for line in "$(postgres_status)" "$(redis_status)" "$(rabbitmq_status)" "$(s3_status)"; do
        echo "$line"
        [[ $line == *" up "* ]] || rc=3
    done
    return $rc
}

usage() {
    sed -n '2,10p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd=${1:-}
    case $cmd in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    rgw-watchdog) cmd_rgw_watchdog ;; # internal: started by `start s3`
    env) write_env && grep '^export ' "$ENV_FILE" ;;
    start | stop | restart)
        [[ $# -eq 2 ]] || usage
        check_service "$2"
        case $cmd in
        start) ensure_packages && svc_start "$2" && write_env ;;
        stop) svc_stop "$2" ;;
        restart) svc_stop "$2" && svc_start "$2" ;;
        esac
        ;;
    check)
        ensure_venv
        write_env
        # shellcheck source=/dev/null
        (set -a && . "$ENV_FILE" && "$PY" "$ROOT/dev/stack_check.py")
        ;;
    *) usage ;;
    esac
}

main "$@"
