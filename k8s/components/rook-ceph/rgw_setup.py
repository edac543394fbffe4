"""Set-up of the `vouchers` bucket on Rook-Ceph's RADOS Gateway, run by the
Job drop-rgw-setup after every `kubectl apply -k` of the overlay.

Three steps, each idempotent:

1. The lifecycle rule (vouchers expire VOUCHER_EXPIRY_DAYS after upload),
   put through the S3 API with the claim's own keys, as the MinIO setup Job
   does with `mc ilm rule import`. Not through the ObjectBucketClaim's
   `additionalConfig.bucketLifecycle`: Rook accepts only `maxObjects` and
   `maxSize` there unless the operator's ROOK_OBC_ALLOW_ADDITIONAL_CONFIG_FIELDS
   allows more, and otherwise fails the whole claim ("OBC config ... is not
   allowed": rook pkg/operator/ceph/object/bucket/util.go,
   additionalConfigSpecFromMap; default list in
   pkg/operator/ceph/controller/controller_utils.go).
2. The broker credentials, written into the CephBucketTopic's AMQP URI
   (Rook's topic has no Secret reference for AMQP). Then wait until Rook has
   pushed that generation of the topic to RGW (status.observedGeneration and
   phase Ready: rook pkg/operator/ceph/object/topic/controller.go).
3. Re-create the bucket notification, because RGW binds a notification to
   the topic as it was when the notification was created, and Rook's
   notification controllers do not watch topics (rook
   pkg/operator/ceph/object/notification/controller.go watches
   CephBucketNotification, obc_label_controller.go watches claims). A change
   of the claim's labels makes obc_label_controller.go put the notification
   again (PutBucketNotificationConfiguration), so this step stamps the claim
   with the label drop.example.com/topic-generation = the topic's generation.

Only the Python standard library: the Kubernetes API is called with the
service account's token, S3 with a hand-rolled Signature V4.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from base64 import b64encode

REV_LABEL = "drop.example.com/topic-generation"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def log(msg: str) -> None:
    print(f"rgw-setup: {msg}", flush=True)


# --- S3 (Signature Version 4) ----------------------------------------------------
def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def s3_request(method: str, url: str, *, access_key: str, secret_key: str, region: str,
               body: bytes = b"", headers: dict | None = None, timeout: float = 30):
    """One signed S3 request; returns (status, body bytes)."""
    parts = urllib.parse.urlsplit(url)
    now = datetime.datetime.now(datetime.timezone.utc)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    payload_hash = hashlib.sha256(body).hexdigest()
    hdrs = {"host": parts.netloc, "x-amz-date": amz_date, "x-amz-content-sha256": payload_hash}
    hdrs.update({k.lower(): v for k, v in (headers or {}).items()})
    # Canonical query: sorted, each key=value URI-encoded (a bare `?lifecycle` is `lifecycle=`).
    query = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    canonical_query = "&".join(
        f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in sorted(query))
    signed = ";".join(sorted(hdrs))
    canonical = "\n".join([
        method, urllib.parse.quote(parts.path or "/", safe="/-_.~"), canonical_query,
        "".join(f"{k}:{hdrs[k].strip()}\n" for k in sorted(hdrs)), signed, payload_hash])
    scope = f"{day}/{region}/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical.encode()).hexdigest()])
    key = _sign(_sign(_sign(_sign(f"AWS4{secret_key}".encode(), day), region), "s3"), "aws4_request")
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    hdrs["authorization"] = (f"AWS4-HMAC-SHA256 Credential={access_key}/{scope}, "
                             f"SignedHeaders={signed}, Signature={signature}")
    req = urllib.request.Request(url, data=body if method in ("PUT", "POST") else None, method=method,
                                 headers={k: v for k, v in hdrs.items() if k != "host"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def lifecycle_xml(days: int) -> bytes:
    """The same rule as the MinIO setup Job's: expire every object after `days`."""
    return (
        '<LifecycleConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        "<Rule><ID>expire-vouchers</ID><Filter><Prefix></Prefix></Filter><Status>Enabled</Status>"
        f"<Expiration><Days>{days}</Days></Expiration></Rule></LifecycleConfiguration>"
    ).encode()


def put_lifecycle(endpoint: str, bucket: str, days: int, creds: dict) -> None:
    body = lifecycle_xml(days)
    md5 = b64encode(hashlib.md5(body).digest()).decode()  # S3 requires Content-MD5 here
    url = f"{endpoint.rstrip('/')}/{bucket}?lifecycle"
    status, text = s3_request("PUT", url, body=body, headers={"content-md5": md5,
                              "content-type": "application/xml"}, **creds)
    if status != 200:
        raise RuntimeError(f"PutBucketLifecycleConfiguration on {bucket}: HTTP {status}: {text[:300]!r}")
    status, text = s3_request("GET", url, **creds)
    if status != 200 or f"<Days>{days}</Days>".encode() not in text:
        raise RuntimeError(f"lifecycle of {bucket} reads back wrong: HTTP {status}: {text[:300]!r}")
    log(f"lifecycle on {bucket}: expire after {days} days")


# --- Kubernetes API ---------------------------------------------------------------
class Kube:
    def __init__(self, base: str, token: str, ca_file: str | None):
        self.base = base.rstrip("/")
        self.token = token
        self.ctx = ssl.create_default_context(cafile=ca_file) if ca_file else None

    @classmethod
    def in_cluster(cls) -> "Kube":
        host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
        if ":" in host:
            host = f"[{host}]"
        with open(f"{SA_DIR}/token") as f:
            token = f.read().strip()
        return cls(f"https://{host}:{port}", token, f"{SA_DIR}/ca.crt")

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = "application/merge-patch+json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30, context=self.ctx) as resp:
            return json.loads(resp.read())


def topic_path(ns: str, name: str) -> str:
    return f"/apis/ceph.rook.io/v1/namespaces/{ns}/cephbuckettopics/{name}"


def obc_path(ns: str, name: str) -> str:
    return f"/apis/objectbucket.io/v1alpha1/namespaces/{ns}/objectbucketclaims/{name}"


def amqp_uri(username: str, password: str, hostport_vhost: str) -> str:
    userinfo = urllib.parse.quote(username, safe="") + ":" + urllib.parse.quote(password, safe="")
    return "amqp://" + userinfo + "@" + hostport_vhost


def set_topic_credentials(kube: Kube, ns: str, topic: str, uri: str) -> int:
    """Writes the URI; returns the topic's generation that carries it."""
    obj = kube.call("PATCH", topic_path(ns, topic), {"spec": {"endpoint": {"amqp": {"uri": uri}}}})
    return int(obj["metadata"]["generation"])


def wait_topic_ready(kube: Kube, ns: str, topic: str, generation: int, timeout: float,
                     interval: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        status = kube.call("GET", topic_path(ns, topic)).get("status") or {}
        if status.get("observedGeneration", 0) >= generation and status.get("phase") == "Ready":
            log(f"topic {topic} generation {generation} is provisioned ({status.get('ARN')})")
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topic {topic} did not reach generation {generation} Ready: {status}")
        time.sleep(interval)


def recreate_notification(kube: Kube, ns: str, obc: str, generation: int) -> None:
    kube.call("PATCH", obc_path(ns, obc), {"metadata": {"labels": {REV_LABEL: str(generation)}}})
    log(f"claim {obc} stamped {REV_LABEL}={generation}: Rook puts its notifications again")


def run(kube: Kube, env: dict) -> None:
    creds = {"access_key": env["AWS_ACCESS_KEY_ID"], "secret_key": env["AWS_SECRET_ACCESS_KEY"],
             "region": env.get("S3_REGION", "us-east-1")}
    days = env["VOUCHER_EXPIRY_DAYS"]
    if not days.isdigit() or int(days) < 1:
        raise ValueError("VOUCHER_EXPIRY_DAYS must be a whole number of days")
    put_lifecycle(env["S3_ENDPOINT"], env["BUCKET_NAME"], int(days), creds)

    ns, topic, obc = env["NAMESPACE"], env["TOPIC_NAME"], env["CLAIM_NAME"]
    uri = amqp_uri(env["NOTIFY_USERNAME"], env["NOTIFY_PASSWORD"], env["AMQP_HOSTPORT_VHOST"])
    generation = set_topic_credentials(kube, ns, topic, uri)
    wait_topic_ready(kube, ns, topic, generation, float(env.get("TOPIC_TIMEOUT_SECS", "600")),
                     float(env.get("POLL_SECS", "2")))
    recreate_notification(kube, ns, obc, generation)


def main() -> int:
    try:
        run(Kube.in_cluster(), dict(os.environ))
    except Exception as e:  # the Job's backoff retries
        log(f"failed: {e}")
        return 1
    log("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
