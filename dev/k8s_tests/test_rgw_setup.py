"""The Rook setup Job's script (k8s/components/rook-ceph/rgw_setup.py), run
for real: the lifecycle rule against the local stack's RADOS Gateway, and
the Kubernetes side against a fake API server that behaves as Rook's
controllers do (read from rook pkg/operator/ceph/object/topic/controller.go
and notification/obc_label_controller.go):

- a topic change bumps metadata.generation; the topic controller later
  pushes it to RGW and then sets status.observedGeneration and phase Ready;
- nothing re-creates the bucket notification when the topic changes (no
  controller watches topics); a change of the claim's labels makes the
  claim controller put the notification again, bound to the topic as RGW
  has it at that moment.

So the live notification carries the new credentials only if the script
waits for the topic and then touches the claim; the counter-examples skip
either step and must fail.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "k8s" / "components" / "rook-ceph"))
import rgw_setup  # noqa: E402
from localstack import stack_env  # noqa: E402

OLD_URI = "amqp://drop-rabbitmq.drop.svc:5672/%2f"


def merge(dst, patch):
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge(dst[k], v)
        else:
            dst[k] = v


class FakeRook:
    """The API objects plus what RGW has (topic as pushed, notification as bound)."""

    def __init__(self, reconcile_delay=0.3):
        self.lock = threading.Lock()
        self.delay = reconcile_delay
        self.topic = {"metadata": {"name": "voucher-events", "generation": 3},
                      "spec": {"endpoint": {"amqp": {"uri": OLD_URI, "exchange": "s3.events"}}},
                      "status": {"observedGeneration": 3, "phase": "Ready", "ARN": "arn:aws:sns:x::voucher-events"}}
        self.obc = {"metadata": {"name": "vouchers-bucket",
                                 "labels": {"bucket-notification-voucher-events": "voucher-events"}}}
        self.rgw_topic_uri = OLD_URI          # what RGW has for the topic
        self.notification_uri = OLD_URI       # what the live notification is bound to
        self.events = []

    def patch_topic(self, patch):
        with self.lock:
            merge(self.topic, patch)
            self.topic["metadata"]["generation"] += 1
            self.topic["status"]["phase"] = "Reconciling"
            gen, uri = self.topic["metadata"]["generation"], self.topic["spec"]["endpoint"]["amqp"]["uri"]
        self.events.append(("topic patched", gen))
        timer = threading.Timer(self.delay, self._reconcile_topic, (gen, uri))
        timer.daemon = True
        timer.start()
        return self.topic

    def _reconcile_topic(self, gen, uri):
        with self.lock:
            self.rgw_topic_uri = uri  # CreateTopic on RGW; the notification is not touched
            self.topic["status"].update(observedGeneration=gen, phase="Ready")
        self.events.append(("topic provisioned", gen))

    def patch_obc(self, patch):
        with self.lock:
            before = dict(self.obc["metadata"]["labels"])
            merge(self.obc, patch)
            if before != self.obc["metadata"]["labels"]:
                # obc_label_controller.go: labels changed -> PutBucketNotificationConfiguration
                self.notification_uri = self.rgw_topic_uri
                self.events.append(("notification re-created", self.rgw_topic_uri))
        return self.obc


def serve(fake: FakeRook):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def _reply(self, obj, code=200):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _target(self):
            if self.headers.get("Authorization") != "Bearer test-token":
                return None
            if self.path == rgw_setup.topic_path("drop", "voucher-events"):
                return "topic"
            if self.path == rgw_setup.obc_path("drop", "vouchers-bucket"):
                return "obc"
            return None

        def do_GET(self):
            t = self._target()
            if not t:
                return self._reply({"kind": "Status", "code": 404}, 404)
            with fake.lock:
                self._reply(json.loads(json.dumps(getattr(fake, t))))

        def do_PATCH(self):
            t = self._target()
            if not t or self.headers.get("Content-Type") != "application/merge-patch+json":
                return self._reply({"kind": "Status", "code": 415}, 415)
            patch = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._reply(fake.patch_topic(patch) if t == "topic" else fake.patch_obc(patch))

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


_S3_DOWN: list = []


@pytest.fixture
def bucket():
    s = stack_env()
    creds = {"access_key": s["S3_ACCESS_KEY_ID"], "secret_key": s["S3_SECRET_ACCESS_KEY"], "region": s["S3_REGION"]}
    name = f"k8scheck-{uuid.uuid4().hex[:10]}"
    # The stack's watchdog restarts RGW if it dies: allow it a minute to
    # answer, once per run (a stack that is down fails the rest at once).
    deadline = time.monotonic() + (0 if _S3_DOWN else 60)
    while True:
        try:
            status, body = rgw_setup.s3_request("PUT", f"{s['S3_ENDPOINT']}/{name}", **creds, timeout=10)
            break
        except OSError as e:
            if time.monotonic() > deadline:
                _S3_DOWN.append(e)
                pytest.fail(f"the stack's S3 endpoint {s['S3_ENDPOINT']} does not answer: {e}")
            time.sleep(2)
    assert status == 200, (status, body)
    yield s, creds, name
    rgw_setup.s3_request("DELETE", f"{s['S3_ENDPOINT']}/{name}?lifecycle", **creds)
    rgw_setup.s3_request("DELETE", f"{s['S3_ENDPOINT']}/{name}", **creds)


def job_env(s, bucket_name):
    return {"AWS_ACCESS_KEY_ID": s["S3_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY": s["S3_SECRET_ACCESS_KEY"],
            "S3_REGION": s["S3_REGION"], "S3_ENDPOINT": s["S3_ENDPOINT"], "BUCKET_NAME": bucket_name,
            "VOUCHER_EXPIRY_DAYS": "30", "NAMESPACE": "drop", "TOPIC_NAME": "voucher-events",
            "CLAIM_NAME": "vouchers-bucket", "NOTIFY_USERNAME": "s3-notify", "NOTIFY_PASSWORD": "0123abcd",
            "AMQP_HOSTPORT_VHOST": "drop-rabbitmq.drop.svc:5672/%2f", "TOPIC_TIMEOUT_SECS": "10", "POLL_SECS": "0.1"}


WANT_URI = "amqp://s3-notify:0123abcd@drop-rabbitmq.drop.svc:5672/%2f"


def run_job(monkeypatch, bucket, **skip):
    s, creds, name = bucket
    fake = FakeRook()
    server = serve(fake)
    for step in skip:
        monkeypatch.setattr(rgw_setup, step, lambda *a, **k: None)
    try:
        rgw_setup.run(rgw_setup.Kube(f"http://127.0.0.1:{server.server_port}", "test-token", None), job_env(s, name))
        time.sleep(fake.delay * 2)  # let a late topic reconcile land
    finally:
        server.shutdown()
    return fake, s, creds, name


def test_job_sets_lifecycle_and_recreates_notification(monkeypatch, bucket):
    fake, s, creds, name = run_job(monkeypatch, bucket)
    status, body = rgw_setup.s3_request("GET", f"{s['S3_ENDPOINT']}/{name}?lifecycle", **creds)
    assert status == 200 and b"<Days>30</Days>" in body and b"expire-vouchers" in body, body
    assert fake.rgw_topic_uri == WANT_URI
    assert fake.notification_uri == WANT_URI, fake.events
    assert fake.obc["metadata"]["labels"][rgw_setup.REV_LABEL] == str(fake.topic["metadata"]["generation"])
    # Still attached to its notification.
    assert fake.obc["metadata"]["labels"]["bucket-notification-voucher-events"] == "voucher-events"


@pytest.mark.parametrize("skip", ["recreate_notification", "wait_topic_ready"])
def test_without_a_step_the_live_notification_keeps_old_credentials(monkeypatch, bucket, skip):
    fake, *_ = run_job(monkeypatch, bucket, **{skip: True})
    assert fake.rgw_topic_uri == WANT_URI, "the topic itself is updated either way"
    assert fake.notification_uri != WANT_URI, f"skipping {skip} went unnoticed: {fake.events}"


def test_lifecycle_failure_fails_the_job(monkeypatch, bucket):
    s, creds, name = bucket
    env = job_env(s, name + "-missing")  # no such bucket: RGW answers 404
    with pytest.raises(RuntimeError, match="PutBucketLifecycleConfiguration"):
        rgw_setup.run(rgw_setup.Kube("http://127.0.0.1:9", "t", None), env)


def test_topic_that_never_becomes_ready_fails_the_job(monkeypatch, bucket):
    s, creds, name = bucket
    fake = FakeRook(reconcile_delay=60)
    server = serve(fake)
    env = dict(job_env(s, name), TOPIC_TIMEOUT_SECS="1")
    try:
        with pytest.raises(TimeoutError):
            rgw_setup.run(rgw_setup.Kube(f"http://127.0.0.1:{server.server_port}", "test-token", None), env)
    finally:
        server.shutdown()
    assert fake.notification_uri == OLD_URI
