#!/usr/bin/env bash
# dev/stack/ha.sh: the replicated topology (`dev/stack.sh up-ha`), built from
# Debian's HA software, the local stand-in for what k8s/ runs:
#
#   etcd (one member)          127.0.0.1:2379        Patroni's store (etcd3 API)
#   PostgreSQL pg1..pg3        127.0.0.1:5433..5435  Patroni REST 127.0.0.1:8008..8010
#   RabbitMQ rabbit1..3        AMQP 5681..5683, management 15681..15683,
#                              Web-STOMP 15691..15693, distribution 25681..25683
#   HAProxy                    5432 -> the member whose GET /primary answers 200
#                              5672 (AMQP), 15674 (Web-STOMP), 15672 (management)
#                              -> any live RabbitMQ node; 8080 -> order-api replicas
#                              (started by dev/run.sh ha-background on 8081, 8082)
#   Redis, S3 (Ceph RGW)       single, as in `up` (dev/stack/redis.sh, s3.sh)
#
# So DATABASE_URL, AMQP_URL, STOMP_URL and the management URL are the same as for
# the single-node stack, and neither the services nor the tests change.
# Sourced by dev/stack.sh after the other service files.

HA_PACKAGES=(patroni etcd-server haproxy)
HA_DIR=$STATE/ha
HA_MEMBERS=(1 2 3)
# Patroni: ttl >= loop_wait + 2 * retry_timeout, which Patroni enforces.
HA_TTL=10
HA_LOOP_WAIT=2
HA_RETRY_TIMEOUT=4
HAPROXY_CFG=$HA_DIR/haproxy.cfg
HAPROXY_PID=$HA_DIR/haproxy.pid
HAPROXY_STATS_PORT=8404
ORDER_API_PORTS=(8081 8082)

ha_pg_port() { echo $((PG_PORT + $1)); }
ha_rest_port() { echo $((8007 + $1)); }
ha_pg_dir() { echo "$HA_DIR/pg$1"; }
ha_rmq_node() { echo "rabbit$1@localhost"; }

# ---------------------------------------------------------------- etcd

ETCD_DIR=$HA_DIR/etcd
etcd_pid() { pid_alive "$ETCD_DIR/etcd.pid" etcd; }
etcd_ready() { curl -fsS -m 2 http://127.0.0.1:2379/health | grep -q '"health":"true"'; }

etcd_start() {
    etcd_pid >/dev/null && return 0
    mkdir -p "$ETCD_DIR"
    # One member: Patroni needs a consistent store, not a replicated one here
    # (the store's own failure is not in the fault table).
    setsid etcd --name ha --data-dir "$ETCD_DIR/data" \
        --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
        --listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
        --initial-cluster ha=http://127.0.0.1:2380 --initial-cluster-state new \
        </dev/null >>"$ETCD_DIR/etcd.log" 2>&1 &
    echo $! >"$ETCD_DIR/etcd.pid"
    wait_for 30 "etcd on :2379" "$ETCD_DIR/etcd.log" -- etcd_ready
}

# ---------------------------------------------------------------- Patroni

# Passwords for the superuser and the replication user, made once and kept
# readable by root and postgres only; they never print.
ha_secrets() {
    local f=$HA_DIR/secrets
    if [[ ! -s $f ]]; then
        (umask 077 && {
            echo "SUPERUSER_PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
            echo "REPLICATION_PASSWORD=$(head -c 18 /dev/urandom | od -An -tx1 | tr -d ' \n')"
        } >"$f")
    fi
    # shellcheck source=/dev/null
    source "$f"
}

patroni_write_conf() {
    local i=$1 dir
    dir=$(ha_pg_dir "$i")
    install -d -o postgres -g postgres -m 0700 "$dir" "$dir/run"
    ha_secrets
    local conf=$dir/patroni.yml
    # Written on every start; Patroni reads the local part at start, the
    # bootstrap.dcs part only when it initialises the cluster.
    (umask 077 && cat >"$conf" <<EOF
# written by dev/stack.sh up-ha
scope: drop
name: pg$i
restapi:
  listen: 127.0.0.1:$(ha_rest_port "$i")
  connect_address: 127.0.0.1:$(ha_rest_port "$i")
etcd3:
  hosts: 127.0.0.1:2379
watchdog:
  mode: off
bootstrap:
  dcs:
    ttl: $HA_TTL
    loop_wait: $HA_LOOP_WAIT
    retry_timeout: $HA_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    # A commit returns only once a standby has it, and only that standby
    # may be promoted: what CNPG's synchronous replication does in k8s/.
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      parameters:
        wal_log_hints: 'on'
        max_connections: 400
        synchronous_commit: 'on'
        fsync: 'on'
        full_page_writes: 'on'
  initdb:
  - encoding: UTF8
  - locale: C
postgresql:
  listen: 127.0.0.1:$(ha_pg_port "$i")
  connect_address: 127.0.0.1:$(ha_pg_port "$i")
  data_dir: $dir/data
  bin_dir: /usr/lib/postgresql/15/bin
  pgpass: $dir/pgpass
  authentication:
    superuser:
      username: postgres
      password: $SUPERUSER_PASSWORD
    replication:
      username: replicator
      password: $REPLICATION_PASSWORD
  parameters:
    unix_socket_directories: '$dir/run'
    shared_buffers: 64MB
    log_min_messages: warning
    log_line_prefix: '%m [%p] '
  pg_hba:
  - local all all trust
  - host replication replicator 127.0.0.1/32 md5
  - host all all 127.0.0.1/32 md5
EOF
    )
    chown postgres:postgres "$conf"
}

patroni_pid() { pid_alive "$(ha_pg_dir "$1")/patroni.pid" patroni; }

patroni_start() {
    local i=$1 dir
    dir=$(ha_pg_dir "$i")
    patroni_pid "$i" >/dev/null && return 0
    patroni_write_conf "$i"
    touch "$dir/patroni.log" && chown postgres:postgres "$dir/patroni.log"
    # setpriv execs (runuser would stay as the parent), so the pid is Patroni's.
    setsid setpriv --reuid=postgres --regid=postgres --init-groups \
        env HOME=/var/lib/postgresql patroni "$dir/patroni.yml" \
        </dev/null >>"$dir/patroni.log" 2>&1 &
    echo $! >"$dir/patroni.pid"
}

# The member names with their roles, from any live member's GET /cluster.
patroni_cluster() {
    local i
    for i in "${HA_MEMBERS[@]}"; do
        curl -fsS -m 2 "http://127.0.0.1:$(ha_rest_port "$i")/cluster" 2>/dev/null && return 0
    done
    return 1
}

# The number of the member that leads (1..3), from GET /cluster.
patroni_leader() {
    patroni_cluster | /usr/bin/python3 -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    if m["role"] == "leader" and m["state"] == "running":
        print(m["name"][2:])
        break
else:
    sys.exit(1)'
}

# Ready: a leader that HAProxy would pick, and a synchronous standby streaming.
patroni_ready() {
    patroni_cluster | /usr/bin/python3 -c '
import json, sys
ms = json.load(sys.stdin)["members"]
roles = [m["role"] for m in ms if m["state"] in ("running", "streaming")]
sys.exit(0 if "leader" in roles and "sync_standby" in roles and len(roles) == 3 else 1)'
}

patroni_setup() {
    local leader dir
    leader=$(patroni_leader) || die "no Patroni leader"
    dir=$(ha_pg_dir "$leader")
    pg_setup_sql | as_postgres /usr/lib/postgresql/15/bin/psql -h "$dir/run" -p "$(ha_pg_port "$leader")" \
        -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null 2>"$HA_DIR/setup.err" ||
        die_log "creating role/database drop on pg$leader failed" "$HA_DIR/setup.err"
}

# Debian's Patroni 3.0.2 can keep a stale etcd3 cache after its process was
# paused (SIGSTOP) or starved: the leader then logs "Synchronous replication
# key updated by someone else" on every loop and never names a synchronous
# standby again, so no standby is promotable (fixed upstream in Patroni 3.1.0:
# "Invalidate cache if txn failed due to revision mismatch", patroni#2783).
# The fix an operator applies: restart that Patroni, in maintenance mode so
# that PostgreSQL keeps running and serving (Patroni's "Pause/Resume" docs: a
# Patroni stopped while paused leaves PostgreSQL alone), and the stale /sync
# key deleted while it is down, so the new process writes it afresh.
patroni_unstick() {
    local n dir
    n=$(patroni_leader) || return 0
    dir=$(ha_pg_dir "$n")
    # Patroni's REST API logs a traceback for every health check HAProxy cuts
    # short, so the message may be a few hundred lines up.
    tail -n 400 "$dir/patroni.log" | grep -q 'Synchronous replication key updated by someone else' || return 0
    warn "pg$n's Patroni has a stale view of the sync key (Patroni 3.0.2); restarting it, paused"
    local ctl=(setpriv --reuid=postgres --regid=postgres --init-groups env HOME=/var/lib/postgresql
        patronictl -c "$dir/patroni.yml")
    "${ctl[@]}" pause --wait >>"$HA_DIR/unstick.log" 2>&1 || warn "patronictl pause failed (see $HA_DIR/unstick.log)"
    stop_pid "$dir/patroni.pid" patroni 30
    # And the key it could not update: absent, the restarted leader writes it
    # afresh, with no revision to compare (etcd's v3 JSON gateway).
    curl -fsS -m 5 -X POST http://127.0.0.1:2379/v3/kv/deleterange \
        -d "{\"key\": \"$(printf '/service/drop/sync' | base64)\"}" >>"$HA_DIR/unstick.log" 2>&1 ||
        warn "deleting the sync key failed (see $HA_DIR/unstick.log)"
    patroni_start "$n"
    local deadline=$((SECONDS + 60))
    until curl -fsS -m 2 "http://127.0.0.1:$(ha_rest_port "$n")/patroni" >/dev/null 2>&1 || ((SECONDS >= deadline)); do
        sleep 0.5
    done
    "${ctl[@]}" resume --wait >>"$HA_DIR/unstick.log" 2>&1 || warn "patronictl resume failed (see $HA_DIR/unstick.log)"
}

patroni_stop() {
    local i=$1 dir
    dir=$(ha_pg_dir "$i")
    # Patroni stops its PostgreSQL (fast shutdown) on SIGTERM.
    stop_pid "$dir/patroni.pid" patroni 60
    local pid
    if pid=$(pid_alive "$dir/data/postmaster.pid" postgres); then
        warn "pg$i's postmaster (pid $pid) outlived Patroni; stopping it"
        stop_pid "$dir/data/postmaster.pid" postgres 30
    fi
}

# ---------------------------------------------------------------- RabbitMQ

# Runs "$@" with the variables of dev/stack/rabbitmq.sh set for node $1, so its
# functions (rmq_start_node, rmq_ctl, mgmt, rmq_ready) act on that node: bash's
# locals are seen by the functions called from here.
ha_rmq() {
    local i=$1
    shift
    # shellcheck disable=SC2034 # read by rabbitmq.sh's functions
    local RMQ_NODENAME RMQ_DIR RMQ_PID RMQ_LOGDIR RMQ_LOG RMQ_STARTLOG \
        AMQP_PORT=$((5680 + i)) MGMT_PORT=$((15680 + i)) STOMP_PORT=$((15690 + i)) \
        RMQ_DIST_PORT=$((25680 + i))
    RMQ_NODENAME=$(ha_rmq_node "$i")
    RMQ_DIR=$HA_DIR/rabbit$i
    RMQ_PID=$RMQ_DIR/rabbit.pid
    RMQ_LOGDIR=$RMQ_DIR/log
    RMQ_LOG=$RMQ_LOGDIR/$RMQ_NODENAME.log
    RMQ_STARTLOG=$RMQ_LOGDIR/startup.log
    # As the k8s base's RabbitmqCluster: the minority side of a partition pauses.
    # shellcheck disable=SC2034 # read by rmq_write_conf
    local RMQ_EXTRA_CONF="cluster_partition_handling = pause_minority"
    "$@"
}

ha_rmq_start_one() {
    rmq_pid >/dev/null && return 0
    mkdir -p "$RMQ_LOGDIR"
    : >"$RMQ_STARTLOG"
    # The node's log outlives its boots: only what this boot writes counts
    # when looking for a failed one (ha_rmq_wait_one).
    ha_rmq_log_end >"$RMQ_DIR/boot-log-offset"
    rmq_start_node
}

ha_rmq_wait_one() {
    local deadline=$((SECONDS + 120)) from
    from=$(cat "$RMQ_DIR/boot-log-offset" 2>/dev/null || echo 1)
    until rmq_ready; do
        ((SECONDS < deadline)) || die_log "$RMQ_NODENAME not ready after 120s" "$RMQ_STARTLOG" "$RMQ_LOG"
        if ha_rmq_boot_failed_since "$from" || grep -qs 'BOOT FAILED' "$RMQ_STARTLOG"; then
            die_log "$RMQ_NODENAME failed to boot" "$RMQ_STARTLOG" "$RMQ_LOG"
        fi
        sleep 0.5
    done
}

# Joins this node to rabbit1's cluster unless it is already a member.
#
# Debian 12's RabbitMQ 3.10 can fail to start the app right after the join,
# while it copies the cluster's feature flags (`incompatible_feature_flags`,
# `{badmap,undefined}` in rabbit_feature_flags:enable_dependencies/2). The
# cluster then counts the node a member while the node thinks it stands alone,
# and every later join is refused as inconsistent (rabbitmq-server PR #8140,
# "Synchronise feature flags before any changes to Mnesia membership", merged
# in May 2023, changed that order). So a failed join is undone on both sides,
# rabbit1 forgetting the node and the node resetting, and tried again.
ha_rmq_join() {
    local first me=$RMQ_NODENAME log=$RMQ_LOGDIR/join.log attempt from
    first=$(ha_rmq_node 1)
    if rmq_ctl cluster_status --formatter json 2>/dev/null | grep -qF "\"$first\""; then return 0; fi
    for attempt in 1 2 3; do
        say "rabbitmq: $me joins $first (attempt $attempt)"
        # Only this attempt's lines count when looking for a failed boot.
        from=$(ha_rmq_log_end)
        if { rmq_ctl stop_app && rmq_ctl join_cluster "$first" && rmq_ctl start_app; } >>"$log" 2>&1 &&
            ha_rmq_booted_since "$from"; then
            return 0
        fi
        warn "rabbitmq: $me did not join $first; undoing the join on both sides"
        {
            rmq_ctl stop_app
            rmq_ctl force_reset
            ha_rmq 1 rmq_ctl forget_cluster_node "$me"
        } >>"$log" 2>&1 || true
        sleep 2
    done
    die_log "$me could not join $first" "$log" "$RMQ_LOG"
}

# The offset (bytes, 1-based) where the node's log goes on from now.
ha_rmq_log_end() { echo $(($(stat -c %s "$RMQ_LOG" 2>/dev/null || echo 0) + 1)); }

# ha_rmq_boot_failed_since OFFSET: the node's log from OFFSET on shows a failed boot.
ha_rmq_boot_failed_since() { tail -c +"$1" "$RMQ_LOG" 2>/dev/null | grep -q 'BOOT FAILED'; }
ha_rmq_die_boot() { die_log "$RMQ_NODENAME $1" "$RMQ_STARTLOG" "$RMQ_LOG"; }

# ha_rmq_booted_since OFFSET: the node answers as a ready broker, and its log
# from OFFSET (bytes, 1-based) on shows no failed boot.
ha_rmq_booted_since() {
    local deadline=$((SECONDS + 120))
    until rmq_ready; do
        ha_rmq_boot_failed_since "$1" && return 1
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

ha_rmq_stop_one() {
    rmq_pid >/dev/null || return 0
    rmq_ctl stop "$RMQ_PID" >>"$RMQ_STARTLOG" 2>&1 || warn "rabbitmqctl stop $RMQ_NODENAME failed; sending SIGTERM"
    stop_pid "$RMQ_PID" beam 30
}

ha_rabbitmq_start() {
    local i
    port_open 4369 || touch "$RUN/epmd.ours"
    # All at once: a node that was a cluster member waits at boot for the one
    # that stopped last, so they cannot be started one after the other. On the
    # first start each boots alone, then rabbit2 and rabbit3 join rabbit1.
    local -A tries=()
    for i in "${HA_MEMBERS[@]}"; do
        tries[$i]=1
        ha_rmq "$i" ha_rmq_start_one
    done
    # Until every member is ready. A member that boots while its peers are
    # still booting can crash copying their feature flags (RabbitMQ 3.10:
    # `incompatible_feature_flags`, `{badmap,undefined}`, see ha_rmq_join);
    # started again, it boots, so a failed boot is retried twice. The others
    # are not waited for one by one: a member waits at boot for the one that
    # stopped last, which may be the one that crashed.
    local deadline=$((SECONDS + 180)) pending
    while :; do
        pending=0
        for i in "${HA_MEMBERS[@]}"; do
            ha_rmq "$i" rmq_ready && continue
            pending=1
            ha_rmq "$i" ha_rmq_boot_failed_since "$(cat "$HA_DIR/rabbit$i/boot-log-offset" 2>/dev/null || echo 1)" || continue
            ((tries[$i] < 3)) || ha_rmq "$i" ha_rmq_die_boot "failed to boot ${tries[$i]} times"
            tries[$i]=$((tries[$i] + 1))
            warn "rabbitmq: rabbit$i failed to boot; starting it again (attempt ${tries[$i]})"
            ha_rmq "$i" ha_rmq_stop_one
            ha_rmq "$i" ha_rmq_start_one
        done
        ((pending)) || break
        ((SECONDS < deadline)) || die "RabbitMQ members not ready after 180s (logs: $HA_DIR/rabbit*/log)"
        sleep 0.5
    done
    for i in "${HA_MEMBERS[@]:1}"; do ha_rmq "$i" ha_rmq_join; done
}

# ---------------------------------------------------------------- HAProxy

haproxy_write_conf() {
    local i servers_pg="" servers_amqp="" servers_stomp="" servers_mgmt="" servers_api="" p
    for i in "${HA_MEMBERS[@]}"; do
        servers_pg+="    server pg$i 127.0.0.1:$(ha_pg_port "$i") maxconn 400 check port $(ha_rest_port "$i")"$'\n'
        servers_amqp+="    server rabbit$i 127.0.0.1:$((5680 + i)) check"$'\n'
        servers_stomp+="    server rabbit$i 127.0.0.1:$((15690 + i)) check"$'\n'
        servers_mgmt+="    server rabbit$i 127.0.0.1:$((15680 + i)) check"$'\n'
    done
    for p in "${ORDER_API_PORTS[@]}"; do
        servers_api+="    server api$((p - 8080)) 127.0.0.1:$p check"$'\n'
    done
    cat >"$HAPROXY_CFG" <<EOF
# written by dev/stack.sh up-ha
global
    maxconn 8192
    stats socket $HA_DIR/haproxy.sock mode 600 level admin

defaults
    mode tcp
    retries 2
    timeout connect 2s
    # AMQP and PostgreSQL sessions are long-lived; AMQP heartbeats keep them busy.
    timeout client 1h
    timeout server 1h
    timeout check 2s
    # A server marked down has its sessions cut, so no client keeps talking
    # to an old primary or a dead broker node through a half-open socket.
    default-server inter 1s fall 2 rise 1 on-marked-down shutdown-sessions

# Read-write: the member whose Patroni answers GET /primary with 200 (CNPG's -rw
# Service). The others answer 503 and get no traffic.
listen postgres_rw
    bind 127.0.0.1:$PG_PORT
    option httpchk GET /primary
    http-check expect status 200
$servers_pg
listen amqp
    bind 127.0.0.1:$AMQP_PORT
    balance roundrobin
$servers_amqp
listen web_stomp
    bind 127.0.0.1:$STOMP_PORT
    balance roundrobin
$servers_stomp
listen rabbitmq_management
    bind 127.0.0.1:$MGMT_PORT
    mode http
    timeout client 30s
    timeout server 30s
    balance roundrobin
$servers_mgmt
listen order_api
    bind 127.0.0.1:8080
    mode http
    timeout client 30s
    timeout server 30s
    # Only a ready replica gets requests; a request that could not reach a
    # replica at all is sent to another one.
    option httpchk GET /readyz
    option redispatch
    balance roundrobin
    # With no replica ready (PostgreSQL failing over), the answer is order-api's
    # own contract: 503 unavailable with Retry-After, which clients retry.
    http-error status 503 content-type application/json hdr Retry-After 1 string '{"error": "unavailable", "message": "no order-api replica is ready; retry later"}'
$servers_api
listen stats
    bind 127.0.0.1:$HAPROXY_STATS_PORT
    mode http
    timeout client 30s
    timeout server 30s
    stats enable
    stats uri /stats
EOF
}

haproxy_pid() { pid_alive "$HAPROXY_PID" haproxy; }

haproxy_start() {
    haproxy_write_conf
    haproxy -c -q -f "$HAPROXY_CFG" >"$HA_DIR/haproxy.check" 2>&1 ||
        die_log "haproxy rejected $HAPROXY_CFG" "$HA_DIR/haproxy.check"
    if haproxy_pid >/dev/null; then return 0; fi
    setsid haproxy -D -f "$HAPROXY_CFG" -p "$HAPROXY_PID" </dev/null >>"$HA_DIR/haproxy.log" 2>&1 ||
        die_log "haproxy did not start" "$HA_DIR/haproxy.log"
}

# ---------------------------------------------------------------- up, down, status

ha_check_ports() {
    local p
    for p in "$PG_PORT" "$AMQP_PORT" "$STOMP_PORT" "$MGMT_PORT" 8080; do
        if port_open "$p" && ! haproxy_pid >/dev/null; then
            die "port $p is taken (the single-node stack? run 'make down' first, or use a network namespace)"
        fi
    done
}

cmd_up_ha() {
    local t0=$SECONDS i
    ensure_packages
    ensure_packages "${HA_PACKAGES[@]}"
    ha_check_ports
    mkdir -p "$HA_DIR"
    set_owner ha ours
    etcd_start
    for i in "${HA_MEMBERS[@]}"; do patroni_start "$i"; done
    ha_rabbitmq_start
    haproxy_start
    local logs=()
    for i in "${HA_MEMBERS[@]}"; do logs+=("$(ha_pg_dir "$i")/patroni.log"); done
    wait_for 120 "Patroni: a leader and a synchronous standby" "${logs[@]}" -- patroni_ready
    patroni_setup
    wait_for 30 "PostgreSQL through HAProxy on :$PG_PORT" "$HAPROXY_CFG" -- pg_ready
    set_owner postgres ha
    set_owner rabbitmq ha
    # The users, permissions and s3.events exchange, through HAProxy's
    # management port: they are cluster-wide.
    rmq_setup
    redis_start
    s3_start
    write_env
    printf 'stack: up-ha in %ss; env: %s\n' $((SECONDS - t0)) "$ENV_FILE" >&2
}

cmd_down_ha() {
    local i
    stop_pid "$HAPROXY_PID" haproxy 10
    for i in "${HA_MEMBERS[@]}"; do ha_rmq "$i" ha_rmq_stop_one; done
    for i in "${HA_MEMBERS[@]}"; do patroni_stop "$i"; done
    stop_pid "$ETCD_DIR/etcd.pid" etcd 20
    if [[ -e $RUN/epmd.ours ]]; then
        ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
        rm -f "$RUN/epmd.ours"
    fi
    rm -f "$RUN/ha.owner" "$RUN/postgres.owner" "$RUN/rabbitmq.owner"
}

cmd_ha_status() {
    echo "== PostgreSQL (Patroni GET /cluster)"
    patroni_cluster | /usr/bin/python3 -c '
import json, sys
for m in json.load(sys.stdin)["members"]:
    print("  %-4s %-13s %-10s %s:%s  timeline %s  lag %s" % (m["name"], m["role"], m["state"],
          m["host"], m["port"], m.get("timeline", "-"), m.get("lag", "-")))' ||
        echo "  no Patroni member answers"
    echo "== RabbitMQ (management API through HAProxy)"
    {
        mgmt GET /api/nodes && echo && mgmt GET /api/queues/%2F/pdf-generator.orders 2>/dev/null
        echo && mgmt GET '/api/connections?columns=node,user,client_properties.connection_name'
    } 2>/dev/null | /usr/bin/python3 -c '
import json, sys
docs = [json.loads(l) for l in sys.stdin.read().split("\n") if l.strip()]
nodes = docs[0] if docs else []
for n in nodes:
    print("  %-20s %s" % (n["name"], "running" if n.get("running") else "down"))
q = next((d for d in docs[1:] if isinstance(d, dict)), None)
if q:
    print("  pdf-generator.orders: leader %s, members %s" % (q.get("leader"), ", ".join(q.get("members", []))))
else:
    print("  pdf-generator.orders: not declared yet")
conns = next((d for d in docs[1:] if isinstance(d, list)), [])
per = {}
for c in conns:
    name = (c.get("client_properties") or {}).get("connection_name") or c.get("user", "?")
    per.setdefault(c["node"], []).append(name)
for node, names in sorted(per.items()):
    print("  connected to %s: %s" % (node, ", ".join("%s x%d" % (n, names.count(n)) for n in sorted(set(names)))))' ||
        echo "  the management API does not answer"
    echo "== HAProxy backends"
    curl -fsS -m 2 "http://127.0.0.1:$HAPROXY_STATS_PORT/stats;csv" 2>/dev/null | /usr/bin/python3 -c '
import csv, sys
for r in csv.DictReader(l.lstrip("# ") for l in sys.stdin):
    if r["svname"] not in ("FRONTEND", "BACKEND") and r["pxname"] != "stats":
        print("  %-20s %-8s %s" % (r["pxname"], r["svname"], r["status"]))' || echo "  HAProxy does not answer"
    echo "== replicas"
    local f pid name
    for f in "$STATE"/app/*.pid; do
        [[ -e $f ]] || continue
        name=$(basename "$f" .pid)
        if pid=$(pid_alive "$f" "${name%-[0-9]}"); then echo "  $name  up    pid $pid"
        else echo "  $name  down"; fi
    done
}

# ---------------------------------------------------------------- faults (tests, chaos)

# The node (1..3) that leads quorum queue $1, from the management API.
ha_queue_leader() {
    mgmt GET "/api/queues/%2F/$1" | /usr/bin/python3 -c '
import json, sys
leader = json.load(sys.stdin).get("leader") or ""
if not leader.startswith("rabbit"):
    sys.exit(1)
print(leader[len("rabbit"):].split("@")[0])'
}

# The pids of member $1's Patroni, its postmaster and the postmaster's children
# (backends, WAL senders, checkpointer…): the whole "node".
ha_member_pids() {
    local dir pid
    dir=$(ha_pg_dir "$1")
    pid=$(patroni_pid "$1") && echo "$pid"
    if pid=$(pid_alive "$dir/data/postmaster.pid" postgres); then
        echo "$pid"
        pgrep -P "$pid" || true
    fi
}

# ha-fault KIND: injects one fault and prints the member, node or replica it hit.
#   pg-primary-lost       SIGKILL to the leader's Patroni and its postmaster together
#   pg-postmaster-killed  SIGKILL to the leader's postmaster alone (Patroni restarts it)
#   pg-primary-paused     SIGSTOP to the leader's Patroni and every PostgreSQL process
#                         of it; `ha-heal` sends SIGCONT (a paused node outliving
#                         Patroni's TTL is a zombie primary)
#   rabbit-leader-killed  SIGKILL to the RabbitMQ node leading pdf-generator.orders
#   order-api-killed      SIGKILL to order-api-1 (dev/run.sh ha-heal restarts it)
#   pdf-generator-killed  SIGKILL to pdf-generator-1, whose notifier consumes
#                         pdf-generator.s3-events as pdf-generator-2's does
#   redis-stopped         Redis stopped (`ha-heal` starts it)
#   s3-stopped            the S3 gateway stopped (`ha-heal` starts it)
cmd_ha_fault() {
    local kind=${1:-} n pids=() signal=KILL pid
    case $kind in
    pg-primary-lost)
        n=$(patroni_leader) || die "no Patroni leader to kill"
        pid=$(patroni_pid "$n") && pids+=("$pid")
        pid=$(pid_alive "$(ha_pg_dir "$n")/data/postmaster.pid" postgres) && pids+=("$pid")
        ;;
    pg-postmaster-killed)
        n=$(patroni_leader) || die "no Patroni leader"
        pid=$(pid_alive "$(ha_pg_dir "$n")/data/postmaster.pid" postgres) && pids+=("$pid")
        ;;
    pg-primary-paused)
        n=$(patroni_leader) || die "no Patroni leader to pause"
        mapfile -t pids < <(ha_member_pids "$n")
        signal=STOP
        ;;
    rabbit-leader-killed)
        n=$(ha_queue_leader pdf-generator.orders) || die "no leader for pdf-generator.orders"
        pid=$(ha_rmq "$n" rmq_pid) && pids+=("$pid")
        ;;
    order-api-killed | pdf-generator-killed)
        n=${kind%-killed}-1
        pid=$(pid_alive "$STATE/app/$n.pid" "${kind%-killed}") && pids+=("$pid")
        ;;
    redis-stopped)
        redis_stop
        echo redis
        return 0
        ;;
    s3-stopped)
        s3_stop
        echo s3
        return 0
        ;;
    *) die "unknown fault '$kind' (see dev/stack/ha.sh: cmd_ha_fault)" ;;
    esac
    ((${#pids[@]})) || die "$kind: no process found for $n"
    kill -"$signal" "${pids[@]}"
    echo "$n"
}

# ha-heal: continues a paused member, starts every member, node or service
# (Redis, the S3 gateway) that is not running, and waits until the topology is
# whole again: a leader with a synchronous standby and three members, three
# running broker nodes. A killed primary rejoins as a standby (Patroni rewinds
# it with pg_rewind when its timeline diverged). The replicas are dev/run.sh's:
# `dev/run.sh ha-heal` restarts them.
cmd_ha_heal() {
    local i logs=() pid
    # A paused member first: every process of it continues.
    for i in "${HA_MEMBERS[@]}"; do
        for pid in $(ha_member_pids "$i"); do
            [[ $(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null) == T ]] && kill -CONT "$pid"
        done
    done
    for i in "${HA_MEMBERS[@]}"; do
        if ! patroni_pid "$i" >/dev/null; then
            # A postmaster whose Patroni was killed is still running: stop it, so
            # the restarted Patroni finds its data directory as a crash left it.
            local dir pid
            dir=$(ha_pg_dir "$i")
            if pid=$(pid_alive "$dir/data/postmaster.pid" postgres); then kill -KILL "$pid"; fi
            patroni_start "$i"
        fi
        logs+=("$(ha_pg_dir "$i")/patroni.log")
    done
    for i in "${HA_MEMBERS[@]}"; do ha_rmq "$i" ha_rmq_start_one; done
    for i in "${HA_MEMBERS[@]}"; do ha_rmq "$i" ha_rmq_wait_one; done
    redis_pid >/dev/null || redis_start
    rgw_pid >/dev/null || s3_start
    local deadline=$((SECONDS + 45))
    until patroni_ready >/dev/null 2>&1 || ((SECONDS >= deadline)); do sleep 0.5; done
    patroni_ready >/dev/null 2>&1 || patroni_unstick
    wait_for 300 "Patroni: three members, a leader and a synchronous standby" "${logs[@]}" -- patroni_ready
}
