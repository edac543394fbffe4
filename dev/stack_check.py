#!/usr/bin/env python3
"""End-to-end self-test of the local stack (`dev/stack.sh check`).

1. A PUT of test.pdf into the vouchers bucket puts an S3 event record into a queue
   bound to s3.events with routing key voucher-events.
2. The browser user, over Web-STOMP only, in the browsers' vhost:
   - a CONNECT without credentials is that user (Web-STOMP's default user);
     a CONNECT as `browser` with a guessed passcode is refused, and so is an
     AMQP login as `browser` with anything the stack hands to a page: its
     password is generated into the stack directory and known to the broker
     only (issue #20, item 3);
   - may subscribe to /exchange/amq.topic/voucher.<32 hex> and receives a message
     published there (into the browsers' vhost, as the notifier does);
   - is refused voucher.#, voucher.*, #, another exchange, a queue, and any SEND;
   - plain STOMP (61613) is not listening.
3. What the browser user may take is bounded (issue #20): user and vhost
   limits are set; every subscription queue, also one a client asked to be
   durable, quorum, or with its own x-max-length / x-message-ttl, gets the
   operator policy `stomp-subscriptions` (length, bytes, message TTL, and
   deleted a minute after its last consumer); a queue subscribed to as the
   page does (`exclusive:true`) cannot be consumed by another session.

Reads the variables that `dev/stack.sh env` prints. Exits non-zero on the first
failure; prints one line per check.
"""

import base64
import json
import os
import secrets
import urllib.error
import urllib.parse
import urllib.request
import socket
import sys
import time

import boto3
import pika
import websocket
from botocore.config import Config

AMQP_URL = os.environ["AMQP_URL"]
# The browsers' vhost, where the notifier publishes voucher.<id>.
FANOUT_AMQP_URL = os.environ["FANOUT_AMQP_URL"]
STOMP_URL = os.environ["STOMP_URL"]
VHOST = os.environ.get("STOMP_VHOST", "browser")
VHOST_PATH = urllib.parse.quote(VHOST, safe="")
EXCHANGE = os.environ.get("S3_EVENTS_EXCHANGE", "s3.events")
ROUTING_KEY = os.environ.get("S3_EVENTS_ROUTING_KEY", "voucher-events")
BUCKET = os.environ.get("S3_BUCKET", "vouchers")
MGMT_URL = os.environ.get("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")

failures = 0


def report(ok: bool, what: str, detail: str = "") -> None:
    global failures
    if not ok:
        failures += 1
    print(f"{'ok  ' if ok else 'FAIL'} {what}{': ' + detail if detail else ''}")


def s3_client():
    return boto3.client(
        "s3",
        endpoint_url=os.environ["S3_ENDPOINT"],
        region_name=os.environ.get("S3_REGION", "us-east-1"),
        aws_access_key_id=os.environ["S3_ACCESS_KEY_ID"],
        aws_secret_access_key=os.environ["S3_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}, connect_timeout=5, read_timeout=30),
    )


def check_s3_event() -> None:
    conn = pika.BlockingConnection(pika.URLParameters(AMQP_URL))
    ch = conn.channel()
    q = ch.queue_declare("", exclusive=True, auto_delete=True).method.queue
    ch.queue_bind(q, EXCHANGE, routing_key=ROUTING_KEY)
    key = "test.pdf"
    t0 = time.monotonic()
    s3_client().put_object(
        Bucket=BUCKET,
        Key=key,
        Body=b"%PDF-1.4\n% stack check\n",
        ContentType="application/pdf",
        Metadata={"order-created-at": "2026-11-24T12:00:00Z"},
    )
    put_ms = (time.monotonic() - t0) * 1000
    deadline = time.monotonic() + 15
    record = None
    while time.monotonic() < deadline and record is None:
        method, props, body = ch.basic_get(q, auto_ack=True)
        if method is None:
            time.sleep(0.05)
            continue
        for r in json.loads(body).get("Records", []):
            if r.get("s3", {}).get("object", {}).get("key") == key:
                record = (method.routing_key, r, props)
    conn.close()
    if record is None:
        report(False, "S3 PUT -> event on s3.events/voucher-events", "no event within 15 s")
        return
    rk, r, props = record
    ok = rk == ROUTING_KEY and "ObjectCreated" in r.get("eventName", "") and \
        r["s3"]["bucket"]["name"] == BUCKET
    report(ok, "S3 PUT -> event on s3.events/voucher-events",
           f"PUT {put_ms:.0f} ms, eventName={r.get('eventName')}, routing key={rk}, "
           f"delivery_mode={props.delivery_mode}")


class Stomp:
    """The smallest STOMP 1.2 client over a websocket, enough to test permissions."""

    def __init__(self, login=None, passcode=None, vhost=VHOST):
        self.ws = websocket.create_connection(STOMP_URL, timeout=5, subprotocols=["v12.stomp"])
        headers = {"accept-version": "1.2", "host": vhost, "heart-beat": "0,0"}
        if login is not None:
            headers.update(login=login, passcode=passcode)
        self.send("CONNECT", headers)
        self.connected = self.recv()

    def send(self, command, headers, body=""):
        lines = [command] + [f"{k}:{v}" for k, v in headers.items()]
        self.ws.send("\n".join(lines) + "\n\n" + body + "\x00")

    def recv(self, timeout=5):
        """Returns (command, headers, body), or ("CLOSED", {}, reason)."""
        self.ws.settimeout(timeout)
        while True:
            try:
                data = self.ws.recv()
            except (websocket.WebSocketConnectionClosedException, ConnectionError) as e:
                return ("CLOSED", {}, str(e))
            except websocket.WebSocketTimeoutException:
                return ("TIMEOUT", {}, "")
            if isinstance(data, bytes):
                data = data.decode()
            if not data or data.strip("\n") == "":
                if data == "":
                    return ("CLOSED", {}, "")
                continue  # heart-beat
            head, _, body = data.partition("\n\n")
            lines = head.lstrip("\n").split("\n")
            headers = dict(line.split(":", 1) for line in lines[1:] if ":" in line)
            return (lines[0], headers, body.rstrip("\x00"))

    def close(self):
        try:
            self.ws.close()
        except Exception:
            pass


def subscribe(dest):
    """SUBSCRIBE with a receipt: RECEIPT means accepted, ERROR means refused."""
    c = Stomp()
    if c.connected[0] != "CONNECTED":
        c.close()
        return c, ("NOT CONNECTED",) + c.connected[1:]
    c.send("SUBSCRIBE", {"id": "s1", "destination": dest, "ack": "auto", "receipt": "r1"})
    return c, c.recv()


def refused(cmd: str) -> bool:
    # RabbitMQ 3.10's Web-STOMP logs "STOMP error frame sent" but often closes the
    # websocket ("STOMP died") before the ERROR frame leaves (rabbitmq-server#6737).
    # Either way the operation was refused and the session is gone.
    return cmd in ("ERROR", "CLOSED")


def check_stomp() -> None:
    order_id = secrets.token_hex(16)
    dest = f"/exchange/amq.topic/voucher.{order_id}"
    c, (cmd, headers, body) = subscribe(dest)
    report(cmd == "RECEIPT", f"browser may subscribe to {dest}", cmd + " " + headers.get("message", ""))
    if cmd == "RECEIPT":
        conn = pika.BlockingConnection(pika.URLParameters(FANOUT_AMQP_URL))
        conn.channel().basic_publish("amq.topic", f"voucher.{order_id}", b'{"status":"voucher_ready"}')
        conn.close()
        got = c.recv()
        report(got[0] == "MESSAGE" and "voucher_ready" in got[2],
               "browser receives a message published to its voucher key", got[0])
    c.close()

    for bad in ("/exchange/amq.topic/voucher.#", "/exchange/amq.topic/voucher.*",
                "/exchange/amq.topic/#", f"/exchange/{EXCHANGE}/{ROUTING_KEY}",
                "/queue/pdf-generator.orders", "/topic/voucher.#",
                f"/exchange/amq.topic/voucher.{order_id.upper()}"):
        c, (cmd, headers, body) = subscribe(bad)
        report(refused(cmd), f"browser refused to subscribe to {bad}",
               (cmd + " " + headers.get("message", "")).strip())
        c.close()

    c = Stomp()
    c.send("SEND", {"destination": f"/exchange/amq.topic/voucher.{order_id}", "receipt": "r2"}, "x")
    cmd, headers, _ = c.recv()
    report(refused(cmd), "browser refused to SEND to amq.topic",
           (cmd + " " + headers.get("message", "")).strip())
    c.close()

    c = Stomp()
    report(c.connected[0] == "CONNECTED", "CONNECT without credentials is the browser user",
           (c.connected[0] + " " + c.connected[1].get("message", "")).strip())
    c.close()

    c = Stomp(vhost="/")
    report(c.connected[0] != "CONNECTED", "CONNECT without credentials to the pipeline's vhost / refused",
           (c.connected[0] + " " + c.connected[1].get("message", "")).strip())
    c.close()

    for guess in guesses():
        c = Stomp(login="browser", passcode=guess)
        report(c.connected[0] != "CONNECTED", f"CONNECT as browser with passcode {guess!r} refused",
               c.connected[0])
        c.close()

    check_amqp_login()

    s = socket.socket()
    s.settimeout(1)
    closed = s.connect_ex(("127.0.0.1", 61613)) != 0
    s.close()
    report(closed, "plain STOMP (61613) is not listening")


def guesses():
    """Every passcode a page could learn: what the stack hands out, and the old public one."""
    return sorted({"browser", "guest", "", STOMP_URL, VHOST})


def check_amqp_login() -> None:
    """A real AMQP client (pika) cannot log in as the browser user on 5672."""
    base = urllib.parse.urlsplit(FANOUT_AMQP_URL)
    for vhost in (VHOST, "/"):
        for guess in guesses():
            url = urllib.parse.urlunsplit((base.scheme, f"browser:{urllib.parse.quote(guess, safe='')}@"
                                           f"{base.hostname}:{base.port}", "/" + urllib.parse.quote(vhost, safe=""),
                                           "", ""))
            try:
                pika.BlockingConnection(pika.URLParameters(url)).close()
                outcome = "logged in"
            except pika.exceptions.ProbableAuthenticationError as e:
                outcome = f"refused {e}"
            except pika.exceptions.AMQPError as e:
                outcome = f"other {type(e).__name__} {e}"
            report(outcome.startswith("refused") and "ACCESS_REFUSED" in outcome,
                   f"AMQP login as browser on vhost {vhost} with {guess!r} refused", outcome[:80])
    # The probe is real: the publisher's own login to the same vhost works.
    pika.BlockingConnection(pika.URLParameters(FANOUT_AMQP_URL)).close()
    report(True, "AMQP login with the publisher's credentials works (the probe is real)")


def mgmt(path):
    """GET on the management API as guest (loopback only)."""
    req = urllib.request.Request(MGMT_URL + path, headers={
        "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.load(r)


def mgmt_delete(path):
    req = urllib.request.Request(MGMT_URL + path, method="DELETE", headers={
        "Authorization": "Basic " + base64.b64encode(b"guest:guest").decode()})
    try:
        urllib.request.urlopen(req, timeout=10).close()
    except urllib.error.HTTPError:
        pass


def wait_for(what, fn, secs=15):
    """Polls fn until it returns something truthy; None after secs."""
    deadline = time.time() + secs
    while time.time() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.25)
    return None


def queue_bound_to(key):
    """The queue the STOMP plugin bound to amq.topic with routing key `key`."""
    def find():
        for b in mgmt(f"/api/exchanges/{VHOST_PATH}/amq.topic/bindings/source"):
            if b["routing_key"] == key and b["destination_type"] == "queue":
                return b["destination"]
        return None
    return wait_for(f"a queue bound with {key}", find)


POLICY = {"max-length": 100, "max-length-bytes": 1048576, "message-ttl": 900000, "expires": 60000}


def check_browser_bounds() -> None:
    limits = {u["user"]: u["value"] for u in mgmt("/api/user-limits")}.get("browser", {})
    report(limits.get("max-connections", 0) > 0 and limits.get("max-channels", 0) > 0,
           "the browser user has max-connections and max-channels", json.dumps(limits))
    vhost = {v["vhost"]: v["value"] for v in mgmt("/api/vhost-limits")}.get(VHOST, {})
    # No queue limit: with one, RabbitMQ counts the vhost's queues by reading
    # each of them on every SUBSCRIBE (dev/stack/rabbitmq.sh, SUBSCRIPTIONS_PER_PAGE).
    report(vhost.get("max-connections", 0) > 0 and "max-queues" not in vhost,
           f"vhost {VHOST} has max-connections and no max-queues", json.dumps(vhost))

    run = secrets.token_hex(4)
    c = Stomp()
    asked = {
        "durable": {"durable": "true", "auto-delete": "false"},
        "quorum": {"durable": "true", "auto-delete": "false", "x-queue-type": "quorum"},
        "huge": {"durable": "true", "auto-delete": "false", "x-max-length": "100000000",
                 "x-message-ttl": "2147483647"},
    }
    for i, (what, headers) in enumerate(asked.items()):
        name = f"stomp-subscription-check-{run}-{what}"
        c.send("SUBSCRIBE", {"id": f"q{i}", "destination": f"/queue/{name}", "receipt": f"r{i}", **headers})
        cmd, _, _ = c.recv()
        if cmd != "RECEIPT":
            report(True, f"a {what} subscription queue is refused", cmd)
            continue
        # Policies reach a new queue a moment after it is declared.
        q = wait_for(name, lambda n=name: next(
            (q for q in mgmt(f"/api/queues/{VHOST_PATH}?columns=name,operator_policy")
             if q["name"] == n and q.get("operator_policy")), None))
        q = q and mgmt(f"/api/queues/{VHOST_PATH}/{name}")
        effective = (q or {}).get("effective_policy_definition") or {}
        report(q is not None and q.get("operator_policy") == "stomp-subscriptions"
               and all(effective.get(k) == v for k, v in POLICY.items()),
               f"a {what} subscription queue is bounded by the operator policy",
               json.dumps({k: (q or {}).get(k) for k in ("type", "arguments", "effective_policy_definition")}))
    c.close()
    for what in asked:  # they would expire a minute from now anyway
        mgmt_delete(f"/api/queues/{VHOST_PATH}/stomp-subscription-check-{run}-{what}")

    # The page's subscriptions: /exchange/amq.topic/<key> with exclusive:true.
    key = f"stock.CHECK-{run}"
    owner = Stomp()
    owner.send("SUBSCRIBE", {"id": "s1", "destination": f"/exchange/amq.topic/{key}",
                             "exclusive": "true", "receipt": "r1"})
    report(owner.recv()[0] == "RECEIPT", "browser may subscribe with exclusive:true")
    name = queue_bound_to(key)
    thief = Stomp()
    thief.send("SUBSCRIBE", {"id": "s2", "destination": f"/amq/queue/{name}", "receipt": "r2"})
    cmd, headers, _ = thief.recv()
    report(name is not None and refused(cmd),
           "another session cannot consume an exclusive subscription queue",
           (cmd + " " + headers.get("message", "")).strip())
    thief.close()
    conn = pika.BlockingConnection(pika.URLParameters(FANOUT_AMQP_URL))
    conn.channel().basic_publish("amq.topic", key, b'{"available":false}')
    conn.close()
    got = owner.recv()
    report(got[0] == "MESSAGE" and "available" in got[2],
           "the owner still receives its messages", got[0])
    owner.close()


def main() -> int:
    check_s3_event()
    check_stomp()
    check_browser_bounds()
    print(f"stack check: {'all passed' if failures == 0 else f'{failures} failed'}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
