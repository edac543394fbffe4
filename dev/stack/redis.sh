#!/usr/bin/env bash
# dev/stack/redis.sh: Redis, a cache and pub/sub bus without persistence.
# Sourced by dev/stack.sh.

REDIS_DIR=$STATE/redis
REDIS_PID=$REDIS_DIR/redis.pid
REDIS_LOG=$REDIS_DIR/redis.log
redis_pid() { pid_alive "$REDIS_PID" redis-server; }
redis_ready() { [[ $(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

redis_start() {
    if redis_pid >/dev/null; then
        set_owner redis ours
    elif port_open "$REDIS_PORT"; then
        say "redis: reusing the server already on :$REDIS_PORT"
        set_owner redis reused
    else
        mkdir -p "$REDIS_DIR"
        # A cache and pub/sub bus only: no snapshots, no AOF. --logfile and our >>
        # both append to the log; nothing reads it here.
        # shellcheck disable=SC2094
        setsid redis-server --daemonize yes --bind 127.0.0.1 --port "$REDIS_PORT" \
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
    redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1 || true
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
