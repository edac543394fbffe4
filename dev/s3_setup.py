#!/usr/bin/env python3
"""Idempotent object-store setup for the local stack (called by dev/stack.sh).

    s3_setup.py setup             bucket, SNS topic -> RabbitMQ, bucket notification
    s3_setup.py declare-exchange  the durable topic exchange RGW publishes to

Names come from docs/design.md. The order (exchange, topic, notification) and the
topic attributes follow "Bucket Notifications" in Ceph's RGW documentation: a
notification names an existing topic, and a topic's amqp-exchange must already
exist on the broker (RGW does not declare it). Exit code 3 means the gateway
does not know the access key (the caller then creates the S3 user and retries).
"""

import os
import sys

ENDPOINT = os.environ.get("S3_ENDPOINT", "http://127.0.0.1:7480")
REGION = os.environ.get("S3_REGION", "us-east-1")
ACCESS_KEY = os.environ.get("S3_ACCESS_KEY_ID", "dropdev")
SECRET_KEY = os.environ.get("S3_SECRET_ACCESS_KEY", "dropdevsecret")
BUCKET = os.environ.get("S3_BUCKET", "vouchers")
# RGW publishes with routing key = the topic name, so the topic is named like
# MinIO's fixed routing key: both stores then reach the same binding.
TOPIC = os.environ.get("S3_EVENTS_ROUTING_KEY", "voucher-events")
EXCHANGE = os.environ.get("S3_EVENTS_EXCHANGE", "s3.events")
AMQP_URL = os.environ.get("AMQP_URL", "amqp://drop:drop@127.0.0.1:5672/%2f")

# No user:password in the push endpoint: RGW refuses to accept one over plain HTTP
# ("sending password over insecure transport"), and without one it logs in as
# guest/guest, which the broker allows from loopback only.
TOPIC_ATTRIBUTES = {
    "push-endpoint": "amqp://127.0.0.1:5672",
    "amqp-exchange": EXCHANGE,
    # The PUT returns only after the broker confirmed the event (or RGW gave up
    # on it). Measured on radosgw 16.2.15, and why this stays "broker":
    # - "none" makes a PUT ~10 ms instead of ~150 ms (RGW's AMQP thread idles in
    #   100 ms sleeps between reading confirms), and voucher throughput rose from
    #   ~140/s to ~190/s. But RGW then publishes up to 100 ms after the PUT has
    #   returned, and the worker acks the order meanwhile: an event caught by a
    #   broker restart is lost with nothing left to redeliver. The e2e test
    #   chaos::rabbitmq_restart_mid_drop lost one that way.
    # - With "broker" the worker's ack comes after the broker took the event; if
    #   the broker goes away first, that ack fails and the order is redelivered,
    #   rendered and PUT again, which re-emits the event.
    # - "broker" can crash radosgw under load: the AMQP thread segfaults
    #   unlocking the mutex of a PUT's waiter inside the confirm callback, most
    #   likely because the PUT's coroutine already resumed on an idle frontend
    #   thread and freed it. The more idle frontend threads, the likelier: with
    #   8, about one 1,000-voucher drop in four crashed it (64 PUTs in flight);
    #   with 2 (rgw_thread_pool_size in dev/stack/s3.sh), none in 50 drops at
    #   64-128. dev/stack.sh also runs a watchdog that restarts radosgw; the
    #   failed PUTs are retried by pdf-generator and emit their events then.
    "amqp-ack-level": "broker",
}

AUTH_ERRORS = {"403", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied"}


def clients():
    import boto3
    from botocore.config import Config

    cfg = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )
    kw = dict(
        endpoint_url=ENDPOINT,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        config=cfg,
    )
    return boto3.client("s3", **kw), boto3.client("sns", **kw)


def setup() -> int:
    from botocore.exceptions import ClientError

    s3, sns = clients()
    try:
        s3.head_bucket(Bucket=BUCKET)
    except ClientError as e:
        code = e.response.get("Error", {}).get("Code", "")
        if code in ("404", "NoSuchBucket"):
            try:
                s3.create_bucket(Bucket=BUCKET)
            except ClientError as e2:
                if e2.response.get("Error", {}).get("Code") in AUTH_ERRORS:
                    return 3
                raise
        elif code in AUTH_ERRORS:
            print(f"S3 refused access key {ACCESS_KEY}: {code}", file=sys.stderr)
            return 3
        else:
            raise

    # Read first and write only what differs: every metadata write makes RGW notify
    # all gateways watching its control objects, and after a kill -9 the dead
    # gateway's watches linger for 30 s, stalling each such write by that long.
    arn = topic_arn_if_current(sns)
    topic_changed = arn is None
    if topic_changed:
        # CreateTopic on an existing name overwrites its attributes: idempotent.
        arn = sns.create_topic(Name=TOPIC, Attributes=TOPIC_ATTRIBUTES)["TopicArn"]

    want = [{"Id": TOPIC, "TopicArn": arn, "Events": ["s3:ObjectCreated:*"]}]
    got = s3.get_bucket_notification_configuration(Bucket=BUCKET).get("TopicConfigurations", [])
    # A notification keeps its own copy of the topic's settings, so a changed topic
    # means putting the notification again (a replace, not an append).
    if topic_changed or normalise(got) != normalise(want):
        s3.put_bucket_notification_configuration(
            Bucket=BUCKET, NotificationConfiguration={"TopicConfigurations": want}
        )
        got = s3.get_bucket_notification_configuration(Bucket=BUCKET).get("TopicConfigurations", [])
        if normalise(got) != normalise(want):
            print(f"notification on {BUCKET} did not stick: {got}", file=sys.stderr)
            return 1
    return 0


def normalise(configs):
    return sorted((c.get("Id"), c.get("TopicArn"), tuple(sorted(c.get("Events", [])))) for c in configs)


def topic_arn_if_current(sns):
    """The topic's ARN if it exists with our attributes, else None."""
    import json
    from urllib.parse import parse_qs

    from botocore.exceptions import ClientError

    try:
        arns = [t["TopicArn"] for t in sns.list_topics().get("Topics", [])
                if t["TopicArn"].rsplit(":", 1)[-1] == TOPIC]
        if not arns:
            return None
        attrs = sns.get_topic_attributes(TopicArn=arns[0])["Attributes"]
        endpoint = json.loads(attrs.get("EndPoint", "{}"))
    except (ClientError, ValueError, KeyError):
        return None
    args = {k: v[-1] for k, v in parse_qs(endpoint.get("EndpointArgs", "")).items()}
    current = endpoint.get("EndpointAddress") == TOPIC_ATTRIBUTES["push-endpoint"] and all(
        args.get(k) == v for k, v in TOPIC_ATTRIBUTES.items()
    ) and endpoint.get("Persistent", "false") == "false"
    return arns[0] if current else None


def declare_exchange() -> int:
    import pika

    params = pika.URLParameters(AMQP_URL)
    params.socket_timeout = 10
    conn = pika.BlockingConnection(params)
    try:
        conn.channel().exchange_declare(EXCHANGE, exchange_type="topic", durable=True)
    finally:
        conn.close()
    return 0


def main() -> int:
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "setup":
        return setup()
    if cmd == "declare-exchange":
        return declare_exchange()
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
