"""The HA and security invariants of the production manifests.

Each check takes the list of rendered objects and returns the violations it
found (an empty list means the invariant holds), so a test can run it on the
real render and on a mutated copy that must fail.
"""

from __future__ import annotations

import re

ZONE = "topology.kubernetes.io/zone"
HOST = "kubernetes.io/hostname"
PROBES = ("startupProbe", "readinessProbe", "livenessProbe")
# Env var names that hold a credential and must come from a Secret.
CREDENTIAL_NAME = re.compile(r"(PASSWORD|PASSCODE|SECRET|TOKEN|ACCESS_KEY|_KEY_ID|CREDENTIAL)", re.I)
# user:password@ in a URL, unless both parts are $(VAR) references.
URL_USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://([^/@\s:]+):([^/@\s]+)@", re.I)
# $(VAR) is Kubernetes' expansion of another env var; ${VAR} a shell's.
VAR_REF = re.compile(r"^\$(\([A-Za-z_][A-Za-z0-9_]*\)|\{[A-Za-z_][A-Za-z0-9_]*\})$")


def of_kind(objs, kind):
    return [o for o in objs if o.get("kind") == kind]


def name(o):
    return f"{o.get('kind')}/{o.get('metadata', {}).get('name')}"


def selector_matches(selector: dict | None, labels: dict) -> bool:
    """A LabelSelector (matchLabels + matchExpressions) against labels."""
    if not selector:
        return False
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and labels.get(key) in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _int(v, default=0):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def _config_value(objs, namespace, pod_spec, container, var, default):
    """A variable's value from env or an envFrom ConfigMap of the same render."""
    for e in container.get("env") or []:
        if e.get("name") == var and "value" in e:
            return e["value"]
    for src in container.get("envFrom") or []:
        ref = (src.get("configMapRef") or {}).get("name")
        for cm in of_kind(objs, "ConfigMap"):
            meta = cm.get("metadata", {})
            if meta.get("name") == ref and meta.get("namespace", namespace) == namespace:
                if var in (cm.get("data") or {}):
                    return cm["data"][var]
    return default


def autoscalers_of(objs, deployment):
    """(autoscaler, its floor) for every HPA or KEDA ScaledObject that scales
    this Deployment."""
    dname = deployment.get("metadata", {}).get("name")
    dns = deployment.get("metadata", {}).get("namespace")
    for kind, field, default in (("HorizontalPodAutoscaler", "minReplicas", 1), ("ScaledObject", "minReplicaCount", 0)):
        for a in of_kind(objs, kind):
            ref = (a.get("spec") or {}).get("scaleTargetRef") or {}
            if ref.get("name") == dname and ref.get("kind", "Deployment") == "Deployment" \
                    and a.get("metadata", {}).get("namespace") == dns:
                yield a, a["spec"].get(field, default)


def check_autoscaled_replicas(objs) -> list[str]:
    """A Deployment scaled by an HPA or a ScaledObject must not set
    spec.replicas: each `kubectl apply` / `helm upgrade` would reset the
    running count to it (20 pods to 3 in the middle of a drop). Kubernetes'
    HPA docs: remove spec.replicas from autoscaled workloads."""
    out = []
    for d in of_kind(objs, "Deployment"):
        scalers = [name(a) for a, _ in autoscalers_of(objs, d)]
        if scalers and "replicas" in (d.get("spec") or {}):
            out.append(f"{name(d)}: sets spec.replicas {d['spec']['replicas']} although "
                       f"{', '.join(scalers)} scales it")
    if not of_kind(objs, "HorizontalPodAutoscaler") and not of_kind(objs, "ScaledObject"):
        out.append("no autoscaler rendered")
    return out


# ---------------------------------------------------------------------------
def check_deployments(objs) -> list[str]:
    """Every Deployment: >= 2 replicas (and autoscaler floors >= 2), a PDB that
    keeps one pod up, zone and node spread, the three probes, the hardened
    securityContext, and a grace period longer than the drain."""
    out = []
    deployments = of_kind(objs, "Deployment")
    if not deployments:
        return ["no Deployment rendered"]
    for d in deployments:
        n, meta, spec = name(d), d.get("metadata", {}), d.get("spec", {})
        ns = meta.get("namespace")
        tpl = spec.get("template", {})
        labels = tpl.get("metadata", {}).get("labels") or {}
        pod = tpl.get("spec", {})
        # An autoscaled Deployment's floor is its autoscaler's (check_autoscaled_replicas
        # makes sure it carries no `replicas` of its own).
        floors = [(name(a), f) for a, f in autoscalers_of(objs, d)]
        replicas = min(f for _, f in floors) if floors else spec.get("replicas", 1)
        if not floors and replicas < 2:
            out.append(f"{n}: replicas {replicas} < 2")
        for owner, floor in floors:
            if floor < 2:
                out.append(f"{n}: {owner} floor {floor} < 2")

        pdbs = [
            p for p in of_kind(objs, "PodDisruptionBudget")
            if p.get("metadata", {}).get("namespace") == ns
            and selector_matches(p.get("spec", {}).get("selector"), labels)
        ]
        if not pdbs:
            out.append(f"{n}: no PodDisruptionBudget selects its pods")
        for p in pdbs:
            ps = p["spec"]
            if "minAvailable" in ps and _int(ps["minAvailable"], 1) < 1:
                out.append(f"{n}: {name(p)} minAvailable < 1")
            if "maxUnavailable" in ps:
                mu = ps["maxUnavailable"]
                if isinstance(mu, str) and mu.endswith("%") and _int(mu[:-1]) >= 50:
                    out.append(f"{n}: {name(p)} maxUnavailable {mu} lets half the pods go")
                elif not isinstance(mu, str) and mu >= replicas:
                    out.append(f"{n}: {name(p)} maxUnavailable {mu} >= replicas")

        spread = {
            c.get("topologyKey") for c in pod.get("topologySpreadConstraints") or []
            if selector_matches(c.get("labelSelector"), labels)
        }
        for key in (ZONE, HOST):
            if key not in spread:
                out.append(f"{n}: no topologySpreadConstraint on {key} selecting its pods")

        psc = pod.get("securityContext") or {}
        for c in pod.get("containers") or []:
            cn = f"{n} container {c.get('name')}"
            for probe in PROBES:
                p = c.get(probe)
                if not p or not any(k in p for k in ("httpGet", "grpc", "tcpSocket", "exec")):
                    out.append(f"{cn}: no {probe}")
            csc = c.get("securityContext") or {}
            if not (csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True):
                out.append(f"{cn}: runAsNonRoot is not true")
            uid = csc.get("runAsUser", psc.get("runAsUser"))
            if uid is not None and uid == 0:
                out.append(f"{cn}: runs as UID 0")
            if csc.get("readOnlyRootFilesystem") is not True:
                out.append(f"{cn}: readOnlyRootFilesystem is not true")
            if csc.get("allowPrivilegeEscalation") is not False:
                out.append(f"{cn}: allowPrivilegeEscalation is not false")
            if csc.get("privileged"):
                out.append(f"{cn}: privileged")
            if "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
                out.append(f"{cn}: capabilities do not drop ALL")
            if (csc.get("capabilities") or {}).get("add"):
                out.append(f"{cn}: adds capabilities")
            res = c.get("resources") or {}
            for part in ("requests", "limits"):
                if not (res.get(part) or {}).get("memory"):
                    out.append(f"{cn}: no memory {part}")
            drain = _int(_config_value(objs, ns, pod, c, "SHUTDOWN_TIMEOUT_SECS", "20"), 20)
            pre_stop = ((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep", {})
            drain += _int(pre_stop.get("seconds"), 0)
            grace = pod.get("terminationGracePeriodSeconds", 30)
            if grace <= drain:
                out.append(f"{cn}: terminationGracePeriodSeconds {grace} <= drain {drain}s")
    return out


# ---------------------------------------------------------------------------
def _env_lists(objs):
    """(owner, env list) for every pod template, Pod and operator CR env."""
    for o in objs:
        kind, spec = o.get("kind"), o.get("spec") or {}
        pod = None
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            pod = spec.get("template", {}).get("spec")
        elif kind == "CronJob":
            pod = spec.get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec")
        elif kind == "Pod":
            pod = spec
        if pod:
            for c in (pod.get("containers") or []) + (pod.get("initContainers") or []):
                yield f"{name(o)} container {c.get('name')}", c.get("env") or []
        elif isinstance(spec.get("env"), list):  # Tenant, Cluster, Dragonfly
            yield name(o), spec["env"]


def _literal_userinfo(text: str) -> bool:
    """True if a URL in text embeds a password that is not a $(VAR) reference."""
    return any(not VAR_REF.match(m.group(2)) for m in URL_USERINFO.finditer(text))


def check_no_literal_secrets(objs) -> list[str]:
    """No Secret carries data, no credential-named env var has a literal
    value, and no URL anywhere embeds a literal password."""
    out = []
    for s in of_kind(objs, "Secret"):
        if s.get("data") or s.get("stringData"):
            out.append(f"{name(s)}: a Secret with literal data is committed")
    for owner, env in _env_lists(objs):
        for e in env:
            value = e.get("value")
            if value is None:
                continue
            if CREDENTIAL_NAME.search(e.get("name", "")) and not VAR_REF.match(str(value)):
                out.append(f"{owner}: env {e['name']} has a literal value")
            if _literal_userinfo(str(value)):
                out.append(f"{owner}: env {e['name']} embeds a literal password in a URL")
    for cm in of_kind(objs, "ConfigMap"):
        for k, v in (cm.get("data") or {}).items():
            if CREDENTIAL_NAME.search(k) and not k.endswith((".sh", ".json")):
                out.append(f"{name(cm)}: key {k} looks like a credential in a ConfigMap")
            if _literal_userinfo(str(v)):
                out.append(f"{name(cm)}: key {k} embeds a literal password in a URL")
    for t in of_kind(objs, "CephBucketTopic"):
        uri = ((t.get("spec") or {}).get("endpoint") or {}).get("amqp", {}).get("uri", "")
        if _literal_userinfo(uri) or "@" in uri:
            out.append(f"{name(t)}: credentials in the committed AMQP URI")
    return out


# ---------------------------------------------------------------------------
def check_rabbitmq(objs, min_replicas=3) -> list[str]:
    """The RabbitmqCluster enables Web-STOMP, pauses a minority, has enough
    nodes and spreads them over zones."""
    out = []
    clusters = of_kind(objs, "RabbitmqCluster")
    if not clusters:
        return ["no RabbitmqCluster rendered"]
    for r in clusters:
        spec = r.get("spec", {})
        rmq = spec.get("rabbitmq") or {}
        if "rabbitmq_web_stomp" not in (rmq.get("additionalPlugins") or []):
            out.append(f"{name(r)}: rabbitmq_web_stomp not in additionalPlugins")
        config = rmq.get("additionalConfig") or ""
        if not re.search(r"^\s*cluster_partition_handling\s*=\s*pause_minority\s*$", config, re.M):
            out.append(f"{name(r)}: cluster_partition_handling is not pause_minority")
        if spec.get("replicas", 1) < min_replicas:
            out.append(f"{name(r)}: replicas {spec.get('replicas', 1)} < {min_replicas}")
        if min_replicas < 2:
            continue  # a single node has nothing to spread
        tpl = (((spec.get("override") or {}).get("statefulSet") or {}).get("spec") or {}).get("template") or {}
        keys = {c.get("topologyKey") for c in (tpl.get("spec") or {}).get("topologySpreadConstraints") or []}
        if ZONE not in keys:
            out.append(f"{name(r)}: no zone topologySpreadConstraint")
    return out


def check_tenant_amqp_target(objs, min_servers=4) -> list[str]:
    """The MinIO Tenant carries an enabled AMQP notification target that
    publishes to s3.events with routing key voucher-events, its URL comes
    from the configuration Secret, and prod has >= 4 servers."""
    out = []
    tenants = of_kind(objs, "Tenant")
    if not tenants:
        return ["no MinIO Tenant rendered"]
    for t in tenants:
        spec = t.get("spec", {})
        env = {e.get("name"): e for e in spec.get("env") or []}
        ids = [k[len("MINIO_NOTIFY_AMQP_ENABLE_"):] for k, e in env.items()
               if k.startswith("MINIO_NOTIFY_AMQP_ENABLE_") and e.get("value") == "on"]
        if not ids:
            out.append(f"{name(t)}: no enabled MINIO_NOTIFY_AMQP_ENABLE_<ID>")
        for target in ids:
            want = {"EXCHANGE": "s3.events", "ROUTING_KEY": "voucher-events", "EXCHANGE_TYPE": "topic"}
            for k, v in want.items():
                got = (env.get(f"MINIO_NOTIFY_AMQP_{k}_{target}") or {}).get("value")
                if got != v:
                    out.append(f"{name(t)}: MINIO_NOTIFY_AMQP_{k}_{target} is {got!r}, not {v!r}")
            url = env.get(f"MINIO_NOTIFY_AMQP_URL_{target}")
            if url is not None and "valueFrom" not in url:
                out.append(f"{name(t)}: the AMQP URL must come from the configuration Secret")
        if not (spec.get("configuration") or {}).get("name"):
            out.append(f"{name(t)}: no configuration Secret (it holds the AMQP URL)")
        servers = sum(p.get("servers", 0) for p in spec.get("pools") or [])
        if servers < min_servers:
            out.append(f"{name(t)}: {servers} servers < {min_servers}")
    return out


def check_cnpg(objs, min_instances=3) -> list[str]:
    """CloudNativePG: >= 3 instances, at least one synchronous standby that
    commits wait for, instances on distinct nodes and spread over zones."""
    out = []
    clusters = of_kind(objs, "Cluster")
    if not clusters:
        return ["no CloudNativePG Cluster rendered"]
    for c in clusters:
        spec = c.get("spec", {})
        instances = spec.get("instances", 1)
        if instances < min_instances:
            out.append(f"{name(c)}: instances {instances} < {min_instances}")
        sync = (spec.get("postgresql") or {}).get("synchronous") or {}
        number = sync.get("number", 0) if sync else spec.get("minSyncReplicas", 0)
        if number < 1:
            out.append(f"{name(c)}: no synchronous standby")
        elif number > instances - 1:
            out.append(f"{name(c)}: {number} synchronous standbys but only {instances - 1} standbys")
        if sync and sync.get("dataDurability", "required") != "required":
            out.append(f"{name(c)}: dataDurability {sync.get('dataDurability')} may drop to async")
        # Without the quorum check CNPG may promote the standby that did not
        # confirm a commit, if the one that did is lost with the primary
        # (CNPG docs/src/failover.md, "Failover Quorum").
        if sync and number >= 1 and not sync.get("failoverQuorum"):
            out.append(f"{name(c)}: no synchronous.failoverQuorum: losing the primary and the confirming "
                       "standby may promote a replica without an acknowledged commit")
        aff = spec.get("affinity") or {}
        if not (aff.get("enablePodAntiAffinity", True) and aff.get("podAntiAffinityType") == "required"
                and aff.get("topologyKey", HOST) == HOST):
            out.append(f"{name(c)}: instances are not forced onto distinct nodes")
        zones = {t.get("topologyKey") for t in spec.get("topologySpreadConstraints") or []}
        if ZONE not in zones and aff.get("topologyKey") != ZONE:
            out.append(f"{name(c)}: instances are not spread over zones")
    return out


def check_dragonfly(objs) -> list[str]:
    """Dragonfly: a master and a replica, password from a Secret."""
    out = []
    dfs = of_kind(objs, "Dragonfly")
    if not dfs:
        return ["no Dragonfly rendered"]
    for d in dfs:
        spec = d.get("spec", {})
        if spec.get("replicas", 1) < 2:
            out.append(f"{name(d)}: replicas < 2")
        ref = (spec.get("authentication") or {}).get("passwordFromSecret") or {}
        if not (ref.get("name") and ref.get("key")):
            out.append(f"{name(d)}: password not from a Secret")
    return out


def _service_port(svc, port_ref):
    """The Service port an Ingress backend or ServiceMonitor endpoint names."""
    for p in (svc.get("spec") or {}).get("ports") or []:
        if port_ref in (p.get("name"), p.get("port")):
            return p
    return None


def check_metrics_not_public(objs) -> list[str]:
    """order-api's /metrics lists every SKU with its exact stock, so it is
    served on its own port (METRICS_ADDR): no Ingress path may reach that
    port, the ServiceMonitor must scrape it, and the listener must not be the
    public one."""
    errors = []
    services = {o["metadata"]["name"]: o for o in of_kind(objs, "Service")}
    api = [n for n in services if n == "order-api" or n.endswith("-order-api")]
    if not api:
        return ["no order-api Service rendered"]
    svc = services[api[0]]
    metrics = _service_port(svc, "metrics")
    if metrics is None:
        errors.append(f"{name(svc)} has no `metrics` port")
    for ing in of_kind(objs, "Ingress"):
        for rule in (ing.get("spec") or {}).get("rules") or []:
            for path in ((rule.get("http") or {}).get("paths")) or []:
                backend = (path.get("backend") or {}).get("service") or {}
                if backend.get("name") != svc["metadata"]["name"]:
                    continue
                ref = (backend.get("port") or {}).get("name") or (backend.get("port") or {}).get("number")
                port = _service_port(svc, ref)
                if port is None or port is metrics or port.get("targetPort") == "metrics":
                    errors.append(f"{name(ing)} routes {path.get('path')} to {ref}, the metrics port")
    monitors = [m for m in of_kind(objs, "ServiceMonitor") if m["metadata"]["name"].endswith("order-api")]
    for mon in monitors:
        for ep in (mon.get("spec") or {}).get("endpoints") or []:
            if metrics is None or _service_port(svc, ep.get("port")) is not metrics:
                errors.append(f"{name(mon)} scrapes port {ep.get('port')}, not the metrics port")
    for dep in of_kind(objs, "Deployment"):
        if not dep["metadata"]["name"].endswith("order-api"):
            continue
        spec = dep["spec"]["template"]["spec"]
        for c in spec.get("containers") or []:
            ns = dep["metadata"].get("namespace")
            listen = _config_value(objs, ns, spec, c, "LISTEN_ADDR", "127.0.0.1:8080")
            metrics_addr = _config_value(objs, ns, spec, c, "METRICS_ADDR", "127.0.0.1:9091")
            if metrics_addr.split(":")[0] in ("127.0.0.1", "localhost"):
                errors.append(f"{name(dep)}: METRICS_ADDR={metrics_addr} cannot be scraped")
            if metrics_addr.rsplit(":", 1)[-1] == listen.rsplit(":", 1)[-1]:
                errors.append(f"{name(dep)}: METRICS_ADDR shares the public port")
    return errors


# ---------------------------------------------------------------------------
# The queues that must not lose a message: the same list as the services
# declare (drop_contract::topology's quorum_queue_args).
DURABLE_QUEUES = ("pdf-generator.orders", "pdf-generator.s3-events", "pdf-generator.voucher-stored",
                  "order-api.voucher-status", "orders.dead")


def check_quorum_queues(objs, min_members=3) -> list[str]:
    """Every queue that must not lose a message is a durable quorum queue on
    a RabbitmqCluster of >= min_members nodes, and nothing caps its replicas
    below that: a quorum queue's initial group size is the cluster size unless
    x-quorum-initial-group-size says otherwise (RabbitMQ's quorum queue
    documentation, "Replication Factor"), so each has a member on every node,
    as `make up-ha` shows with `dev/stack.sh ha-status`, and survives the loss
    of one node as `make chaos` checks."""
    out = []
    clusters = {c["metadata"]["name"]: c for c in of_kind(objs, "RabbitmqCluster")}
    queues = {(q.get("spec") or {}).get("name"): q for q in of_kind(objs, "Queue")}
    for qname in DURABLE_QUEUES:
        q = queues.get(qname)
        if q is None:
            out.append(f"queue {qname} is not rendered")
            continue
        spec = q.get("spec") or {}
        if spec.get("type") != "quorum":
            out.append(f"{name(q)}: type {spec.get('type')!r}, not quorum")
        if not spec.get("durable"):
            out.append(f"{name(q)}: not durable")
        size = (spec.get("arguments") or {}).get("x-quorum-initial-group-size")
        if size is not None and int(size) < min_members:
            out.append(f"{name(q)}: x-quorum-initial-group-size {size} < {min_members}")
        ref = (spec.get("rabbitmqClusterReference") or {}).get("name")
        cluster = clusters.get(ref)
        if cluster is None:
            out.append(f"{name(q)}: its RabbitmqCluster {ref!r} is not rendered")
        elif (cluster.get("spec") or {}).get("replicas", 1) < min_members:
            out.append(f"{name(q)}: {ref} has fewer than {min_members} nodes, so fewer members")
    return out
