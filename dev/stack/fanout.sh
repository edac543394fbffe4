#!/usr/bin/env bash
# dev/stack/fanout.sh: a second, standalone RabbitMQ node for the browsers'
# side, as Kubernetes runs it (k8s/base/rabbitmq-browser: a RabbitmqCluster of
# its own that pdf-generator's notifier publishes voucher.<id> into). Sourced
# by dev/stack.sh.
#
# The everyday stack keeps browsers in their own vhost of the one node, which
# isolates connections (limits, permissions) but not memory: a RabbitMQ memory
# alarm is per node and blocks every publisher on it. This node is what shows
# the memory half of the isolation (issue #21): the e2e test
# `a_memory_alarm_on_the_browsers_broker_stops_only_its_announcements` starts
# it, raises a real memory alarm on it (`fanout alarm`: the high watermark set
# below what the node uses, RabbitMQ's own `set_vm_memory_high_watermark`),
# and stops it again. It carries the same users, vhost, limits and policy as
# the main node (rmq_setup).

FANOUT_NODENAME=fanout@localhost
FANOUT_AMQP_PORT=5675
FANOUT_MGMT_PORT=15675
FANOUT_STOMP_PORT=15676
FANOUT_DIST_PORT=25675

# Runs "$@" with dev/stack/rabbitmq.sh's variables set for the fan-out node
# (as ha_rmq does for the clustered ones).
# shellcheck disable=SC2034 # all read by rabbitmq.sh's functions
fanout_rmq() {
    local RMQ_NODENAME=$FANOUT_NODENAME RMQ_DIR=$STATE/rabbitmq-fanout \
        AMQP_PORT=$FANOUT_AMQP_PORT MGMT_PORT=$FANOUT_MGMT_PORT STOMP_PORT=$FANOUT_STOMP_PORT \
        RMQ_DIST_PORT=$FANOUT_DIST_PORT RMQ_PID RMQ_LOGDIR RMQ_LOG RMQ_STARTLOG
    RMQ_PID=$RMQ_DIR/rabbit.pid
    RMQ_LOGDIR=$RMQ_DIR/log
    RMQ_LOG=$RMQ_LOGDIR/$RMQ_NODENAME.log
    RMQ_STARTLOG=$RMQ_LOGDIR/startup.log
    "$@"
}

fanout_up() {
    if ! rmq_pid >/dev/null; then
        port_open "$AMQP_PORT" && die "port $AMQP_PORT is taken by something else than the fan-out node"
        # Empty each time: it holds nothing but one test's queues.
        rm -rf "$RMQ_DIR/mnesia"
        mkdir -p "$RMQ_LOGDIR"
        : >"$RMQ_STARTLOG"
        ha_rmq_log_end >"$RMQ_DIR/boot-log-offset"
        rmq_start_node
    fi
    ha_rmq_wait_one
    rmq_setup
    say "fanout: $RMQ_NODENAME up (AMQP :$AMQP_PORT, management :$MGMT_PORT, Web-STOMP :$STOMP_PORT)"
}

fanout_down() {
    rmq_pid >/dev/null || return 0
    rmq_ctl stop "$RMQ_PID" >>"$RMQ_STARTLOG" 2>&1 || warn "rabbitmqctl stop $RMQ_NODENAME failed; sending SIGTERM"
    stop_pid "$RMQ_PID" beam 30
}

# A real memory alarm: the watermark below what the node already uses (any
# running node uses tens of MB), then back to RabbitMQ's default of 0.4.
fanout_alarm() {
    rmq_pid >/dev/null || die "the fan-out node is not running (dev/stack.sh fanout up)"
    rmq_ctl set_vm_memory_high_watermark absolute 1000000
}

fanout_clear() {
    rmq_pid >/dev/null || die "the fan-out node is not running (dev/stack.sh fanout up)"
    rmq_ctl set_vm_memory_high_watermark 0.4
}

fanout_status() {
    if rmq_pid >/dev/null; then
        echo "fanout   up   $RMQ_NODENAME amqp://127.0.0.1:$AMQP_PORT management :$MGMT_PORT"
    else
        echo "fanout   down"
    fi
}

cmd_fanout() {
    case ${1:-} in
    up) ensure_packages && fanout_rmq fanout_up ;;
    down) fanout_rmq fanout_down ;;
    alarm) fanout_rmq fanout_alarm ;;
    clear) fanout_rmq fanout_clear ;;
    status) fanout_rmq fanout_status ;;
    *) die "usage: dev/stack.sh fanout up|down|alarm|clear|status" ;;
    esac
}
