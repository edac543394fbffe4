"""HA and security invariants on the rendered production overlays and the
chart with production values. Each invariant is shown to fail on a
counter-example: the same check function fed a mutated object."""

import pytest

import invariants as inv

PROD = ["kustomize-prod", "kustomize-prod-rook-ceph", "kustomize-prod-pg-backup"]
APPS = PROD + ["helm-prod"]
ALL = APPS + ["kustomize-dev", "helm-default"]


def find(objs, kind, name=None):
    for o in objs:
        # The chart prefixes names with the release: drop-order-api.
        n = o["metadata"]["name"]
        if o["kind"] == kind and (name is None or n == name or n.endswith("-" + name)):
            return o
    raise AssertionError(f"no {kind} {name or ''} rendered")


def pod(objs, name):
    return find(objs, "Deployment", name)["spec"]["template"]["spec"]


# --- the real renders hold every invariant ----------------------------------
@pytest.mark.parametrize("variant", APPS)
def test_deployments_are_ha_and_hardened(load, variant):
    assert inv.check_deployments(load(variant)) == []


@pytest.mark.parametrize("variant", ALL)
def test_no_literal_credentials(load, variant):
    assert inv.check_no_literal_secrets(load(variant)) == []


@pytest.mark.parametrize("variant", PROD)
def test_rabbitmq_web_stomp_and_partition_handling(load, variant):
    assert inv.check_rabbitmq(load(variant)) == []


def test_rabbitmq_dev_still_enables_web_stomp(load):
    # dev is a single node, but the page needs Web-STOMP there too.
    assert inv.check_rabbitmq(load("kustomize-dev"), min_replicas=1) == []


def test_tenant_carries_amqp_target(load):
    assert inv.check_tenant_amqp_target(load("kustomize-prod")) == []


@pytest.mark.parametrize("variant", PROD)
def test_cnpg_three_instances_synchronous(load, variant):
    assert inv.check_cnpg(load(variant)) == []


@pytest.mark.parametrize("variant", PROD)
def test_quorum_queues_with_three_members(load, variant):
    assert inv.check_quorum_queues(load(variant)) == []


@pytest.mark.parametrize("mutation", ["classic", "not durable", "two members", "missing", "two nodes"])
def test_quorum_queue_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    q = next(o for o in objs if o["kind"] == "Queue" and o["spec"]["name"] == "pdf-generator.orders")
    if mutation == "classic":
        q["spec"]["type"] = "classic"
    elif mutation == "not durable":
        q["spec"]["durable"] = False
    elif mutation == "two members":
        q["spec"]["arguments"]["x-quorum-initial-group-size"] = 2
    elif mutation == "missing":
        objs.remove(q)
    else:
        # The queue's own cluster: the browsers' cluster is rendered too.
        cluster = q["spec"]["rabbitmqClusterReference"]["name"]
        find(objs, "RabbitmqCluster", cluster)["spec"]["replicas"] = 2
    assert inv.check_quorum_queues(objs)


@pytest.mark.parametrize("variant", PROD)
def test_dragonfly_master_and_replica(load, variant):
    assert inv.check_dragonfly(load(variant)) == []


def test_dev_is_single_replica(load):
    # The counterpart: dev is small, and the HA check says so.
    objs = load("kustomize-dev")
    assert any("floor 1 < 2" in v for v in inv.check_deployments(objs))
    assert any("instances 1 < 3" in v for v in inv.check_cnpg(objs))


# --- counter-examples --------------------------------------------------------
DEPLOYMENT_MUTATIONS = {
    "one replica, no autoscaler": lambda o: (o.remove(find(o, "HorizontalPodAutoscaler")),
                                             find(o, "Deployment", "order-api")["spec"].update(replicas=1)),
    "hpa floor 1": lambda o: find(o, "HorizontalPodAutoscaler")["spec"].update(minReplicas=1),
    "keda floor 1": lambda o: find(o, "ScaledObject")["spec"].update(minReplicaCount=1),
    "no pdb": lambda o: o.remove(find(o, "PodDisruptionBudget", "pdf-generator")),
    "pdb selects nothing": lambda o: find(o, "PodDisruptionBudget", "order-api")["spec"]["selector"]["matchLabels"].update({"app.kubernetes.io/name": "other"}),
    "pdb allows all": lambda o: find(o, "PodDisruptionBudget", "order-api")["spec"].update(maxUnavailable=50),
    "no spread": lambda o: pod(o, "order-api").pop("topologySpreadConstraints"),
    "no zone spread": lambda o: pod(o, "pdf-generator").update(
        topologySpreadConstraints=[c for c in pod(o, "pdf-generator")["topologySpreadConstraints"] if c["topologyKey"] != inv.ZONE]),
    "no liveness": lambda o: pod(o, "order-api")["containers"][0].pop("livenessProbe"),
    "no startup": lambda o: pod(o, "pdf-generator")["containers"][0].pop("startupProbe"),
    "root": lambda o: (pod(o, "order-api")["securityContext"].update(runAsNonRoot=False, runAsUser=0),
                       pod(o, "order-api")["containers"][0]["securityContext"].pop("runAsNonRoot", None)),
    "writable root fs": lambda o: pod(o, "order-api")["containers"][0]["securityContext"].update(readOnlyRootFilesystem=False),
    "escalation": lambda o: pod(o, "pdf-generator")["containers"][0]["securityContext"].pop("allowPrivilegeEscalation"),
    "capabilities kept": lambda o: pod(o, "pdf-generator")["containers"][0]["securityContext"].update(capabilities={"drop": ["NET_RAW"]}),
    "short grace": lambda o: pod(o, "order-api").update(terminationGracePeriodSeconds=10),
    "no limits": lambda o: pod(o, "order-api")["containers"][0]["resources"].pop("limits"),
}


@pytest.mark.parametrize("variant", ["kustomize-prod", "helm-prod"])
@pytest.mark.parametrize("mutation", sorted(DEPLOYMENT_MUTATIONS))
def test_deployment_check_fails_on_counter_example(load, variant, mutation):
    objs = load(variant)
    DEPLOYMENT_MUTATIONS[mutation](objs)
    assert inv.check_deployments(objs), f"'{mutation}' was not caught"


SECRET_MUTATIONS = {
    "secret with data": lambda o: o.append({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x", "namespace": "drop"},
                                            "stringData": {"password": "hunter2"}}),
    "literal password env": lambda o: pod(o, "order-api")["containers"][0]["env"].append({"name": "ADMIN_TOKEN", "value": "s3cr3t"}),
    "literal url password": lambda o: [e.update(value="amqp://drop:drop@drop-rabbitmq:5672/%2f")
                                        for e in pod(o, "pdf-generator")["containers"][0]["env"] if e["name"] == "AMQP_URL"],
    "credential in configmap": lambda o: next(c for c in o if c["kind"] == "ConfigMap")["data"].update(S3_SECRET_ACCESS_KEY="dropdevsecret"),
    "tenant env literal": lambda o: find(o, "Tenant")["spec"]["env"].append(
        {"name": "MINIO_NOTIFY_AMQP_URL_PRIMARY", "value": "amqp://s3:pw@drop-rabbitmq:5672/"}),
}


@pytest.mark.parametrize("mutation", sorted(SECRET_MUTATIONS))
def test_secret_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    SECRET_MUTATIONS[mutation](objs)
    assert inv.check_no_literal_secrets(objs), f"'{mutation}' was not caught"


def test_secret_check_fails_on_rgw_topic_credentials(load):
    objs = load("kustomize-prod-rook-ceph")
    find(objs, "CephBucketTopic")["spec"]["endpoint"]["amqp"]["uri"] = "amqp://s3:pw@drop-rabbitmq:5672/%2f"
    assert inv.check_no_literal_secrets(objs)


def test_rabbitmq_check_fails_without_web_stomp(load):
    objs = load("kustomize-prod")
    find(objs, "RabbitmqCluster")["spec"]["rabbitmq"]["additionalPlugins"] = ["rabbitmq_stomp"]
    assert any("rabbitmq_web_stomp" in v for v in inv.check_rabbitmq(objs))


@pytest.mark.parametrize("mutation", ["autoheal", "two nodes", "no zone spread"])
def test_rabbitmq_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    spec = find(objs, "RabbitmqCluster")["spec"]
    if mutation == "autoheal":
        spec["rabbitmq"]["additionalConfig"] = spec["rabbitmq"]["additionalConfig"].replace("pause_minority", "autoheal")
    elif mutation == "two nodes":
        spec["replicas"] = 2
    else:
        spec.pop("override")
    assert inv.check_rabbitmq(objs)


@pytest.mark.parametrize("mutation", ["no target", "wrong exchange", "wrong routing key", "disabled", "three servers", "no config secret"])
def test_tenant_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    spec = find(objs, "Tenant")["spec"]
    env = {e["name"]: e for e in spec["env"]}
    if mutation == "no target":
        spec["env"] = [e for e in spec["env"] if not e["name"].startswith("MINIO_NOTIFY_AMQP_")]
    elif mutation == "wrong exchange":
        env["MINIO_NOTIFY_AMQP_EXCHANGE_PRIMARY"]["value"] = "orders"
    elif mutation == "wrong routing key":
        env["MINIO_NOTIFY_AMQP_ROUTING_KEY_PRIMARY"]["value"] = "order.reserved"
    elif mutation == "disabled":
        env["MINIO_NOTIFY_AMQP_ENABLE_PRIMARY"]["value"] = "off"
    elif mutation == "three servers":
        spec["pools"][0]["servers"] = 3
    else:
        spec.pop("configuration")
    assert inv.check_tenant_amqp_target(objs)


@pytest.mark.parametrize("mutation", ["two instances", "async", "preferred durability", "legacy zero sync",
                                      "soft anti-affinity", "no zone spread", "too many sync", "no failover quorum"])
def test_cnpg_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    spec = find(objs, "Cluster")["spec"]
    if mutation == "two instances":
        spec["instances"] = 2
    elif mutation == "async":
        spec["postgresql"].pop("synchronous")
    elif mutation == "preferred durability":
        spec["postgresql"]["synchronous"]["dataDurability"] = "preferred"
    elif mutation == "legacy zero sync":
        spec["postgresql"].pop("synchronous")
        spec["minSyncReplicas"] = 0
    elif mutation == "soft anti-affinity":
        spec["affinity"]["podAntiAffinityType"] = "preferred"
    elif mutation == "no zone spread":
        spec.pop("topologySpreadConstraints")
    elif mutation == "no failover quorum":
        spec["postgresql"]["synchronous"].pop("failoverQuorum")
    else:
        spec["postgresql"]["synchronous"]["number"] = 3
    assert inv.check_cnpg(objs)


@pytest.mark.parametrize("mutation", ["one replica", "no password"])
def test_dragonfly_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    spec = find(objs, "Dragonfly")["spec"]
    if mutation == "one replica":
        spec["replicas"] = 1
    else:
        spec.pop("authentication")
    assert inv.check_dragonfly(objs)


# --- /metrics stays off the public port (issue: the Ingress routed `/`) -----
@pytest.mark.parametrize("variant", ALL)
def test_metrics_are_not_public(load, variant):
    assert inv.check_metrics_not_public(load(variant)) == []


def _ingress_to_metrics(objs):
    for o in objs:
        if o["kind"] == "Ingress":
            for rule in o["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    path["backend"]["service"]["port"] = {"name": "metrics"}


def _monitor_on_http(objs):
    find(objs, "ServiceMonitor", "order-api")["spec"]["endpoints"][0]["port"] = "http"


def _metrics_on_loopback(objs):
    for o in objs:
        if o["kind"] == "ConfigMap" and "METRICS_ADDR" in (o.get("data") or {}) and "LISTEN_ADDR" in o["data"]:
            o["data"]["METRICS_ADDR"] = "127.0.0.1:9091"


def _metrics_on_public_port(objs):
    for o in objs:
        if o["kind"] == "ConfigMap" and "METRICS_ADDR" in (o.get("data") or {}) and "LISTEN_ADDR" in o["data"]:
            o["data"]["METRICS_ADDR"] = "0.0.0.0:8080"


def _no_metrics_port(objs):
    svc = find(objs, "Service", "order-api")
    svc["spec"]["ports"] = [p for p in svc["spec"]["ports"] if p["name"] != "metrics"]


@pytest.mark.parametrize(
    "mutation",
    [_ingress_to_metrics, _monitor_on_http, _metrics_on_loopback, _metrics_on_public_port, _no_metrics_port],
)
@pytest.mark.parametrize("variant", ["kustomize-prod", "helm-prod"])
def test_metrics_check_fails_on_counter_example(load, variant, mutation):
    objs = load(variant)
    mutation(objs)
    assert inv.check_metrics_not_public(objs) != []
