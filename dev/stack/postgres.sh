#!/usr/bin/env bash
# dev/stack/postgres.sh: PostgreSQL, our own cluster under $STATE/postgres, run
# as the postgres user; the role and database drop/drop. Sourced by dev/stack.sh.

PG_DIR=$STATE/postgres
PGDATA=$PG_DIR/data
PG_SOCK=$PG_DIR/run
PG_LOG=$PG_DIR/postgres.log

pg_bindir() {
    local d v best=""
    for d in /usr/lib/postgresql/*/bin; do
        [[ -x $d/initdb ]] || continue
        v=${d#/usr/lib/postgresql/}; v=${v%/bin}
        if [[ ! $v =~ ^[0-9]+$ ]] || ((v < 15)); then continue; fi
        if [[ -z $best ]] || ((v > ${best#*:})); then best=$d:$v; fi
    done
    [[ -n $best ]] && echo "${best%:*}"
}

pg_pid() { pid_alive "$PGDATA/postmaster.pid" postgres; }
as_postgres() { runuser -u postgres -- "$@"; }

pg_ready() { "$(pg_bindir)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }

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
    # pg_ctl's -l and our >> both append to the log; nothing reads it here.
    # shellcheck disable=SC2094
    setsid -w runuser -u postgres -- "$bin/pg_ctl" -D "$PGDATA" -l "$PG_LOG" -w -t 60 -s start \
        </dev/null >>"$PG_LOG" 2>&1 || die_log "PostgreSQL did not start" "$PG_LOG"
}

# The role and database of the contract (drop/drop), idempotent; psql input.
pg_setup_sql() {
    cat <<'EOF'
SELECT 'CREATE ROLE drop LOGIN CREATEDB' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'drop')\gexec
ALTER ROLE drop LOGIN CREATEDB PASSWORD 'drop';
SELECT 'CREATE DATABASE drop OWNER drop' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'drop')\gexec
EOF
}

pg_setup() {
    local sql
    sql=$(pg_setup_sql)
    local bin
    bin=$(pg_bindir)
    if [[ $(owner postgres) == ours ]]; then
        as_postgres "$bin/psql" -h "$PG_SOCK" -p "$PG_PORT" -U postgres -d postgres -qAt \
            -v ON_ERROR_STOP=1 <<<"$sql" >/dev/null 2>"$PG_DIR/setup.err" ||
            die_log "creating role/database drop failed" "$PG_DIR/setup.err"
        return 0
    fi
    # Reused server: try as its superuser through the default socket (peer auth); if
    # that is not possible, it is enough that the contract's credentials work.
    if as_postgres psql -p "$PG_PORT" -d postgres -qAt -v ON_ERROR_STOP=1 <<<"$sql" >/dev/null 2>&1; then
        return 0
    fi
    "$bin/psql" "postgres://drop:drop@127.0.0.1:$PG_PORT/drop" -qAt -c 'SELECT 1' >/dev/null 2>&1 ||
        die "PostgreSQL on :$PG_PORT is not ours and role/database drop/drop cannot be set up or used"
}

postgres_start() {
    if pg_pid >/dev/null; then
        set_owner postgres ours
    elif port_open "$PG_PORT"; then
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
