#!/usr/bin/env bash
# dev/stack/s3.sh: the S3 server, Ceph's RADOS Gateway on a one-mon, one-OSD
# cluster, its S3 user, bucket and AMQP bucket notification, and the watchdog
# that restarts radosgw. Sourced by dev/stack.sh.

CEPH_DIR=$STATE/ceph
CEPH_CONF=$CEPH_DIR/ceph.conf

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
    mkdir -p "$CEPH_DIR" # not made yet when the gateway is reused
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
    elif port_open "$S3_PORT"; then
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
