#!/usr/bin/env bash
# dev/stack.sh: the local stack of real services, on loopback only.
#
#   up                      install what is missing, start everything, apply the setup
#   up-ha                   the same as a replicated topology: Patroni, clustered RabbitMQ,
#                           HAProxy in front (dev/stack/ha.sh says what runs where)
#   down                    stop what this script started (never a service it reused)
#   status                  one line per service
#   ha-status               the replicated topology: roles, broker nodes, queue leader, replicas
#   ha-fault KIND | ha-heal  inject a fault into it (dev/stack/ha.sh lists them) | make it whole
#   install-ha              only the packages and the venv of up-ha (needs the registries)
#   env                     print `export VAR=...` lines for clients (also in $STATE/env)
#   start|stop|restart SVC  SVC is postgres | redis | rabbitmq | s3 (chaos tests use these)
#   fanout up|down|alarm|clear  a second RabbitMQ node for the browsers' side, and a
#                           real memory alarm on it (dev/stack/fanout.sh; e2e tests use it)
#   check                   end-to-end self-test: S3 PUT -> AMQP event, browser STOMP permissions
#
# Services and names follow docs/design.md. The S3 server is Ceph's RADOS Gateway
# (Debian's radosgw), which sends S3 event records to RabbitMQ through its bucket
# notifications: "Bucket Notifications" in Ceph's RGW documentation.
#
# State lives under one git-ignored directory, $STACK_DIR (default: <repo>/.stack).
# A service that already listens on its port (another checkout's stack, a system
# daemon) is reused instead of failing; it is marked "reused" and never stopped.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# One file per service under dev/stack/, each with its <svc>_start, <svc>_stop
# and <svc>_status; common.sh first, as the others use it.
# shellcheck source=dev/stack/common.sh
source "$ROOT/dev/stack/common.sh"
# shellcheck source=dev/stack/postgres.sh
source "$ROOT/dev/stack/postgres.sh"
# shellcheck source=dev/stack/redis.sh
source "$ROOT/dev/stack/redis.sh"
# shellcheck source=dev/stack/rabbitmq.sh
source "$ROOT/dev/stack/rabbitmq.sh"
# shellcheck source=dev/stack/s3.sh
source "$ROOT/dev/stack/s3.sh"
# shellcheck source=dev/stack/ha.sh
source "$ROOT/dev/stack/ha.sh"
# shellcheck source=dev/stack/fanout.sh
source "$ROOT/dev/stack/fanout.sh"

# ---------------------------------------------------------------- env

write_env() {
    local bindir
    bindir=$(pg_bindir) || bindir=/usr/lib/postgresql/15/bin
    local nodename=$RMQ_NODENAME pgdata=$PGDATA pgsock=$PG_SOCK
    if [[ $(owner ha) == ours ]]; then
        # The replicated topology: the CLI's default node, and the first member's
        # files (the leader moves; `ha-status` says which one leads).
        nodename=$(ha_rmq_node 1)
        pgdata=$(ha_pg_dir 1)/data
        pgsock=$(ha_pg_dir 1)/run
    elif [[ $(owner rabbitmq) == reused ]]; then
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
export PGDATA_STACK=$pgdata
export PG_SOCKET_DIR=$pgsock
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
export STOMP_VHOST=$BROWSER_VHOST
export FANOUT_AMQP_URL=amqp://drop:drop@127.0.0.1:$AMQP_PORT/$BROWSER_VHOST
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
    fanout_rmq fanout_down
    if [[ $(owner rabbitmq) == ours ]]; then rabbitmq_down; fi
    if [[ $(owner redis) == ours ]]; then redis_stop; fi
    if [[ $(owner ha) == ours ]]; then cmd_down_ha; fi
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
    sed -n '2,17p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd=${1:-}
    case $cmd in
    up) cmd_up ;;
    up-ha) cmd_up_ha ;;
    ha-status) cmd_ha_status ;;
    ha-leader) patroni_leader ;;
    ha-fault) shift && cmd_ha_fault "$@" ;;
    ha-heal) cmd_ha_heal ;;
    fanout) shift && cmd_fanout "$@" ;;
    install-ha) ensure_packages && ensure_packages "${HA_PACKAGES[@]}" && ensure_venv ;;
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
