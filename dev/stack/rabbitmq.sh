#!/usr/bin/env bash
# dev/stack/rabbitmq.sh: RabbitMQ with the management and Web-STOMP plugins, its
# users and permissions, and the exchange RGW publishes S3 events to. Sourced by
# dev/stack.sh.

RMQ_DIR=$STATE/rabbitmq
RMQ_NODENAME=drop@localhost
# Erlang distribution port; dev/stack/ha.sh gives each clustered node its own.
RMQ_DIST_PORT=25672
# rabbitmqctl (Debian's wrapper, run as root) switches to the rabbitmq user, whose
# HOME holds the Erlang cookie. Our node runs as root with the same HOME, so that
# plain `rabbitmqctl` with RABBITMQ_NODENAME set reaches it.
RMQ_HOME=/var/lib/rabbitmq

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
    export RABBITMQ_DIST_PORT=$RMQ_DIST_PORT
    export HOME=$RMQ_HOME
}

# The browsers' own vhost, and the password of their user. Nobody but this
# node knows it: it is generated into the stack directory once and written
# into rabbitmq.conf as the STOMP plugin's default user (`stomp.default_user`,
# `stomp.default_pass`, which Web-STOMP applies to a CONNECT that carries no
# login header; see rabbitmq_stomp.schema and the STOMP plugin's "Default
# user" docs). The page connects without credentials, and so the browser
# login is worth nothing over AMQP (issue #20, item 3).
BROWSER_VHOST=browser
BROWSER_PASS_FILE=$STATE/browser.pass

browser_password() {
    if [[ ! -s $BROWSER_PASS_FILE ]]; then
        (umask 077 && od -An -N24 -tx1 /dev/urandom | tr -d ' \n' >"$BROWSER_PASS_FILE")
    fi
    cat "$BROWSER_PASS_FILE"
}

# Whether the installed RabbitMQ's config schema has the setting $1 (an
# unknown key in rabbitmq.conf stops the node from booting).
rmq_knows_setting() {
    grep -qs "\"rabbit\.$1\"" /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbit-*/priv/schema/rabbit.schema
}

rmq_write_conf() {
    mkdir -p "$RMQ_DIR" "$RMQ_LOGDIR" "$RMQ_DIR/mnesia"
    local browser_pass
    browser_pass=$(browser_password)
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
# A CONNECT without login header is the browser user, in the browsers' vhost.
stomp.default_user = browser
stomp.default_pass = $browser_pass
stomp.default_vhost = $BROWSER_VHOST
# guest may log in from loopback only (RGW publishes as guest from 127.0.0.1).
loopback_users.guest = true
# No ANONYMOUS login: every client names a user.
auth_mechanisms.1 = PLAIN
auth_mechanisms.2 = AMQPLAIN
log.file.level = info
log.console = false
${RMQ_EXTRA_CONF:-}
EOF
    if rmq_knows_setting consumer_max_per_channel; then
        echo "consumer_max_per_channel = $SUBSCRIPTIONS_PER_PAGE" >>"$RMQ_DIR/rabbitmq.conf"
    fi
    # The STOMP plugin (which Web-STOMP runs on) defaults to a plain STOMP
    # listener on 61613: switch it off, so browsers reach Web-STOMP only.
    cat >"$RMQ_DIR/advanced.config" <<'EOF'
[{rabbitmq_stomp, [{tcp_listeners, []}, {ssl_listeners, []}]}].
EOF
    chmod 600 "$RMQ_DIR/rabbitmq.conf"
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
    port_open "$AMQP_PORT" || return 1
    mgmt GET /api/overview 2>/dev/null | grep -q '"protocol":"http/web-stomp"'
}

rmq_pid() { pid_alive "$RMQ_PID" beam; }

rmq_start_node() {
    rmq_write_conf
    # The Erlang cookie lives in the rabbitmq user's HOME (created by the package).
    if [[ ! -s $RMQ_HOME/.erlang.cookie ]]; then
        mkdir -p "$RMQ_HOME"
        # shellcheck disable=SC2019 # ASCII A-Z on purpose: the cookie is a plain token.
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

# What the browser user may take (docs/operations.md, "Security"), in its own
# vhost (issue #21: browsers cannot stall the pipeline). One Web-STOMP
# connection uses one channel. The same values as the k8s fan-out cluster's
# User, Vhost and OperatorPolicy (k8s/base/rabbitmq-browser).
BROWSER_MAX_CONNECTIONS=50000
BROWSER_MAX_CHANNELS=50000
# The browsers' vhost: their share plus headroom for the publishers
# (pdf-generator's notifier, order-api's stock announcer), which the browser
# user's own limit can never take.
VHOST_MAX_CONNECTIONS=50500
# No `max-queues` on that vhost: with a queue limit set, RabbitMQ checks every
# queue declaration by counting the vhost's queues, and it counts them by
# reading every one (rabbit_amqqueue:count/1 in 3.10, rabbit_db_queue's
# list_for_count in 3.13 and 4.x on Mnesia: "certainly suboptimal", its
# comment says). Every page's SUBSCRIBE declares a queue, so opening page N
# read N queue records: measured here, opening pages 1,001 to 4,000 cost the
# broker 39.6 ms of CPU each with the limit and 10.9 ms without it. What
# bounds a page's queues instead is its subscriptions, two per connection at
# most (Web-STOMP uses one channel per connection, one consumer per
# SUBSCRIBE): `consumer_max_per_channel`, on a broker that has the setting
# (RabbitMQ 3.13 and later, rabbitmq-server PR #10749: the k8s browsers'
# cluster; Debian 12's 3.10.8 has not, so locally only the connection limits
# and the policy below hold). A SUBSCRIBE past it closes the connection.
SUBSCRIPTIONS_PER_PAGE=2
# Every subscription queue, whatever its SUBSCRIBE headers asked for
# (durable, x-queue-type, x-max-length, x-message-ttl...): an operator
# policy, which queue arguments and user policies can only lower. A queue
# without a consumer is deleted after a minute.
STOMP_POLICY_DEFINITION='{"max-length":100,"max-length-bytes":1048576,"message-ttl":900000,"expires":60000}'
STOMP_POLICY='{"pattern":"^stomp-subscription-","apply-to":"queues","priority":0,"definition":'$STOMP_POLICY_DEFINITION'}'
BROWSER_CONFIGURE='^stomp-subscription-.*'
BROWSER_WRITE='^stomp-subscription-.*'
BROWSER_READ='^(stomp-subscription-.*|amq\.topic)$'
BROWSER_TOPIC_READ='^(voucher\.[0-9a-f]{32}|stock\.[A-Za-z0-9_.-]{1,64})$'

# JSON string of $1 (backslashes doubled; the patterns hold no quotes).
json_str() { printf '"%s"' "${1//\\/\\\\}"; }

# Users, vhosts, permissions, limits, the subscription policy and the
# exchange RGW publishes to. All idempotent PUTs.
rmq_setup() {
    local err=$RMQ_DIR/setup.err bv=$BROWSER_VHOST browser_pass
    mkdir -p "$RMQ_DIR" # not made yet when the broker is reused
    browser_pass=$(browser_password)
    if mgmt GET /api/whoami >/dev/null 2>&1; then
        {
            mgmt PUT /api/users/drop '{"password":"drop","tags":""}' &&
                mgmt PUT /api/permissions/%2F/drop '{"configure":".*","write":".*","read":".*"}' &&
                mgmt PUT "/api/vhosts/$bv" '{"description":"browsers (Web-STOMP)"}' &&
                mgmt PUT "/api/permissions/$bv/drop" '{"configure":".*","write":".*","read":".*"}' &&
                mgmt PUT /api/users/browser "{\"password\":\"$browser_pass\",\"tags\":\"\"}" &&
                mgmt PUT "/api/permissions/$bv/browser" \
                    "{\"configure\":$(json_str "$BROWSER_CONFIGURE"),\"write\":$(json_str "$BROWSER_WRITE"),\"read\":$(json_str "$BROWSER_READ")}" &&
                mgmt PUT "/api/topic-permissions/$bv/browser" \
                    "{\"exchange\":\"amq.topic\",\"write\":\"^\$\",\"read\":$(json_str "$BROWSER_TOPIC_READ")}" &&
                mgmt PUT /api/user-limits/browser/max-connections "{\"value\":$BROWSER_MAX_CONNECTIONS}" &&
                mgmt PUT /api/user-limits/browser/max-channels "{\"value\":$BROWSER_MAX_CHANNELS}" &&
                mgmt PUT "/api/vhost-limits/$bv/max-connections" "{\"value\":$VHOST_MAX_CONNECTIONS}" &&
                mgmt PUT "/api/operator-policies/$bv/stomp-subscriptions" "$STOMP_POLICY" &&
                # RGW does not declare its target exchange; without it, events are dropped.
                mgmt PUT "/api/exchanges/%2F/$EVENTS_EXCHANGE" \
                    '{"type":"topic","durable":true,"auto_delete":false,"internal":false,"arguments":{}}'
        } >/dev/null 2>"$err" || die_log "RabbitMQ setup through the management API failed" "$err"
        # An older stack gave the browser user rights on / : it has none there now.
        mgmt DELETE /api/permissions/%2F/browser >/dev/null 2>&1 || true
        mgmt DELETE /api/topic-permissions/%2F/browser >/dev/null 2>&1 || true
        mgmt DELETE /api/operator-policies/%2F/stomp-subscriptions >/dev/null 2>&1 || true
        # Older stacks set a queue limit (see SUBSCRIPTIONS_PER_PAGE), on / too.
        mgmt DELETE "/api/vhost-limits/$bv/max-queues" >/dev/null 2>&1 || true
        mgmt DELETE /api/vhost-limits/%2F/max-queues >/dev/null 2>&1 || true
        mgmt DELETE /api/vhost-limits/%2F/max-connections >/dev/null 2>&1 || true
        return 0
    fi
    # Reused broker without guest access to the management API: fall back to the CLI
    # (needs its Erlang cookie and node name) and to AMQP as the app user.
    warn "RabbitMQ management API refused guest; applying users with rabbitmqctl"
    {
        rmq_ctl add_user drop drop 2>/dev/null || rmq_ctl change_password drop drop
        rmq_ctl set_permissions -p / drop '.*' '.*' '.*'
        rmq_ctl add_vhost "$bv" 2>/dev/null || true
        rmq_ctl set_permissions -p "$bv" drop '.*' '.*' '.*'
        rmq_ctl add_user browser "$browser_pass" 2>/dev/null || rmq_ctl change_password browser "$browser_pass"
        rmq_ctl clear_permissions -p / browser 2>/dev/null || true
        rmq_ctl set_permissions -p "$bv" browser "$BROWSER_CONFIGURE" "$BROWSER_WRITE" "$BROWSER_READ"
        rmq_ctl set_topic_permissions -p "$bv" browser amq.topic '^$' "$BROWSER_TOPIC_READ"
        rmq_ctl set_user_limits browser \
            "{\"max-connections\":$BROWSER_MAX_CONNECTIONS,\"max-channels\":$BROWSER_MAX_CHANNELS}"
        rmq_ctl set_vhost_limits -p "$bv" \
            "{\"max-connections\":$VHOST_MAX_CONNECTIONS}"
        rmq_ctl set_operator_policy -p "$bv" stomp-subscriptions '^stomp-subscription-' \
            "$STOMP_POLICY_DEFINITION" --apply-to queues
    } >/dev/null 2>"$err" || die_log "RabbitMQ user setup failed" "$err"
    ensure_venv
    "$PY" "$ROOT/dev/s3_setup.py" declare-exchange 2>"$err" || die_log "declaring $EVENTS_EXCHANGE failed" "$err"
}

rabbitmq_start() {
    if rmq_pid >/dev/null; then
        set_owner rabbitmq ours
    elif port_open "$AMQP_PORT"; then
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

# `down`: the node, then epmd if our node was the one that started it.
rabbitmq_down() {
    rabbitmq_stop
    # epmd refuses -kill while any node is still registered, so this is safe.
    if [[ -e $RUN/epmd.ours ]]; then
        ERL_EPMD_ADDRESS=127.0.0.1 epmd -kill >/dev/null 2>&1 || true
        rm -f "$RUN/epmd.ours"
    fi
}

rabbitmq_status() {
    local pid
    if pid=$(rmq_pid); then echo "rabbitmq  up    ours    127.0.0.1:$AMQP_PORT (mgmt :$MGMT_PORT, web-stomp :$STOMP_PORT/ws)  pid $pid  node $RMQ_NODENAME"
    elif port_open "$AMQP_PORT"; then echo "rabbitmq  up    reused  127.0.0.1:$AMQP_PORT"
    else echo "rabbitmq  down"; fi
}
