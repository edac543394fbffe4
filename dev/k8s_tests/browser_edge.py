"""The browsers' broker in Kubernetes (issues #20 and #21): the bounds on
what the browser user may take, with the values the local stack applies
(read from dev/stack/rabbitmq.sh, so the two cannot drift), no broker
credential handed to pages, and browsers kept off the pipeline's cluster."""

from __future__ import annotations

import json
import re
from pathlib import Path

from invariants import name, of_kind

ROOT = Path(__file__).resolve().parents[2]
BROWSER_CLUSTER = "drop-browser-rabbitmq"
PIPELINE_CLUSTER = "drop-rabbitmq"


def local_values() -> dict:
    """The numbers dev/stack/rabbitmq.sh applies to the local broker."""
    text = (ROOT / "dev" / "stack" / "rabbitmq.sh").read_text()
    nums = {k: int(v) for k, v in re.findall(r"^([A-Z_]+)=(\d+)$", text, re.M)}
    policy = re.search(r"^STOMP_POLICY_DEFINITION='(\{.*\})'$", text, re.M).group(1)
    return {
        "user_connections": nums["BROWSER_MAX_CONNECTIONS"],
        "user_channels": nums["BROWSER_MAX_CHANNELS"],
        "vhost_connections": nums["VHOST_MAX_CONNECTIONS"],
        "subscriptions_per_page": nums["SUBSCRIPTIONS_PER_PAGE"],
        "vhost": re.search(r"^BROWSER_VHOST=(\S+)$", text, re.M).group(1),
        "policy": json.loads(policy),
    }


def _on(o, cluster):
    return ((o.get("spec") or {}).get("rabbitmqClusterReference") or {}).get("name") == cluster


def _env(objs, deployment):
    for d in of_kind(objs, "Deployment"):
        if d["metadata"]["name"].endswith(deployment):
            return {e["name"]: e for c in d["spec"]["template"]["spec"]["containers"] for e in c.get("env") or []}
    return None


def check_browser_bounds(objs) -> list[str]:
    want = local_values()
    out = []
    vhosts = [v for v in of_kind(objs, "Vhost") if _on(v, BROWSER_CLUSTER) and v["spec"].get("name") == want["vhost"]]
    if len(vhosts) != 1:
        out.append(f"no Vhost {want['vhost']} on {BROWSER_CLUSTER}")
    for v in vhosts:
        limits = v["spec"].get("limits") or {}
        if limits.get("connections") != want["vhost_connections"]:
            out.append(f"{name(v)}: limits {limits}, the local stack has {want['vhost_connections']} connections")
        if limits.get("queues") is not None:
            out.append(f"{name(v)}: a queue limit ({limits['queues']}) has every SUBSCRIBE count the vhost's queues")
    cluster = {c["metadata"]["name"]: c for c in of_kind(objs, "RabbitmqCluster")}.get(BROWSER_CLUSTER)
    config = ((cluster or {}).get("spec", {}).get("rabbitmq") or {}).get("additionalConfig") or ""
    per_page = re.findall(r"^\s*consumer_max_per_channel\s*=\s*(\d+)\s*$", config, re.M)
    if per_page != [str(want["subscriptions_per_page"])]:
        out.append(f"{BROWSER_CLUSTER}: consumer_max_per_channel {per_page}, the local stack has "
                   f"{want['subscriptions_per_page']} subscriptions per page")
    users = [u for u in of_kind(objs, "User") if u["spec"].get("importCredentialsSecret", {}).get("name") == "drop-rabbitmq-browser"]
    if not users:
        out.append("no browser User")
    for u in users:
        if not _on(u, BROWSER_CLUSTER):
            out.append(f"{name(u)}: the browser user is not on {BROWSER_CLUSTER}")
        limits = u["spec"].get("limits") or {}
        if (limits.get("connections"), limits.get("channels")) != (want["user_connections"], want["user_channels"]):
            out.append(f"{name(u)}: limits {limits}, the local stack has "
                       f"{want['user_connections']} connections, {want['user_channels']} channels")
    policies = [p for p in of_kind(objs, "Policy") + of_kind(objs, "OperatorPolicy")
                if p["spec"].get("name") == "stomp-subscriptions"]
    if len(policies) != 1:
        out.append("no single stomp-subscriptions policy")
    for p in policies:
        s = p["spec"]
        if not _on(p, BROWSER_CLUSTER) or s.get("vhost") != want["vhost"]:
            out.append(f"{name(p)}: not on {BROWSER_CLUSTER} vhost {want['vhost']}")
        if s.get("pattern") != "^stomp-subscription-" or s.get("applyTo", "queues") != "queues":
            out.append(f"{name(p)}: pattern {s.get('pattern')!r} applyTo {s.get('applyTo')!r}")
        if s.get("definition") != want["policy"]:
            out.append(f"{name(p)}: definition {s.get('definition')}, the local stack has {want['policy']}")
    return out


def check_browser_login_private(objs) -> list[str]:
    """Web-STOMP's default user is the browser user, its password from the
    Secret (never in the manifest), and no page is handed a broker login."""
    out = []
    clusters = {c["metadata"]["name"]: c for c in of_kind(objs, "RabbitmqCluster")}
    c = clusters.get(BROWSER_CLUSTER)
    if c is None:
        return [f"no RabbitmqCluster {BROWSER_CLUSTER}"]
    rmq = c["spec"].get("rabbitmq") or {}
    config = rmq.get("additionalConfig") or ""
    if re.search(r"^\s*stomp\.default_(pass|user)\s*=", config, re.M):
        out.append(f"{name(c)}: the STOMP default user's credentials are in additionalConfig")
    if not re.search(r"^\s*stomp\.listeners\.tcp\s*=\s*none\s*$", config, re.M):
        out.append(f"{name(c)}: a plain STOMP listener is left on")
    tpl = (((c["spec"].get("override") or {}).get("statefulSet") or {}).get("spec") or {}).get("template") or {}
    volumes = {v["name"]: v for v in (tpl.get("spec") or {}).get("volumes") or []}
    mounts = [m for ct in (tpl.get("spec") or {}).get("containers") or [] if ct.get("name") == "rabbitmq"
              for m in ct.get("volumeMounts") or [] if m.get("mountPath", "").startswith("/etc/rabbitmq/conf.d/")]
    if not any((volumes.get(m["name"]) or {}).get("secret", {}).get("secretName") == "drop-rabbitmq-browser"
               for m in mounts):
        out.append(f"{name(c)}: no conf.d file from the Secret drop-rabbitmq-browser (the default user)")
    api = _env(objs, "order-api") or {}
    for var in ("STOMP_LOGIN", "STOMP_PASSCODE"):
        if var in api:
            out.append(f"order-api: {var} is set, so /v1/client-config would hand out a broker login")
    return out


def check_browsers_off_the_pipeline(objs) -> list[str]:
    """The notifier publishes into the browsers' cluster, and /ws routes there."""
    out = []
    pdf = _env(objs, "pdf-generator") or {}
    url = (pdf.get("FANOUT_AMQP_URL") or {}).get("value", "")
    if BROWSER_CLUSTER not in url:
        out.append(f"pdf-generator: FANOUT_AMQP_URL {url!r} is not the browsers' cluster")
    for ing in of_kind(objs, "Ingress"):
        for rule in ing["spec"].get("rules") or []:
            for p in (rule.get("http") or {}).get("paths") or []:
                if p.get("path") == "/ws":
                    svc = p["backend"]["service"]["name"]
                    if not svc.endswith(BROWSER_CLUSTER):
                        out.append(f"{name(ing)}: /ws goes to {svc}, not {BROWSER_CLUSTER}")
    return out
