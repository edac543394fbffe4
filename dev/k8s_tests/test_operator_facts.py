"""What the operators do with the rendered objects (operator_facts.py), on
the real renders and on counter-examples that must fail."""

import copy
from pathlib import Path

import pytest

import invariants as inv
import operator_facts as of
from test_ha_invariants import find, pod

ROOT = Path(__file__).resolve().parents[2]
PROD = ["kustomize-prod", "kustomize-prod-rook-ceph", "kustomize-prod-pg-backup"]
ROOK = "kustomize-prod-rook-ceph"
APPS = PROD + ["helm-prod", "helm-rook"]


# --- 1. the Rook claim gets its bucket; the lifecycle rule goes through S3 --------------
def test_obc_uses_only_keys_a_default_rook_accepts(load):
    assert of.check_obc_additional_config(load(ROOK)) == []


def test_obc_with_bucket_lifecycle_fails(load):
    objs = load(ROOK)
    find(objs, "ObjectBucketClaim")["spec"]["additionalConfig"] = {"bucketLifecycle": "{}"}
    assert any("bucketLifecycle" in v for v in of.check_obc_additional_config(objs))


def test_obc_quota_keys_pass(load):
    objs = load(ROOK)
    find(objs, "ObjectBucketClaim")["spec"]["additionalConfig"] = {"maxSize": "2G", "maxObjects": "1000"}
    assert of.check_obc_additional_config(objs) == []


def test_rgw_setup_job_runs_the_script(load):
    assert of.check_rgw_setup_job(load(ROOK)) == []


@pytest.mark.parametrize("mutation", ["no job", "no token", "no notify password"])
def test_rgw_setup_job_check_fails(load, mutation):
    objs = load(ROOK)
    job = find(objs, "Job", "drop-rgw-setup")
    if mutation == "no job":
        objs.remove(job)
    elif mutation == "no token":
        job["spec"]["template"]["spec"]["automountServiceAccountToken"] = False
    else:
        env = job["spec"]["template"]["spec"]["containers"][0]["env"]
        env[:] = [e for e in env if e["name"] != "NOTIFY_PASSWORD"]
    assert of.check_rgw_setup_job(objs)


def test_both_stores_expire_vouchers_alike(load):
    minio = of.lifecycle_days(load("kustomize-prod"), "drop-minio-setup")
    rook = of.lifecycle_days(load(ROOK), "drop-rgw-setup")
    assert minio and minio == rook, (minio, rook)


def test_expiry_drift_between_stores_is_seen(load):
    objs = load(ROOK)
    of._configmap(objs, "drop-rgw-setup")["data"]["VOUCHER_EXPIRY_DAYS"] = "7"
    assert of.lifecycle_days(objs, "drop-rgw-setup") != of.lifecycle_days(load("kustomize-prod"), "drop-minio-setup")


# --- 2. Ceph pools survive a zone with redundancy left ---------------------------------------
def test_ceph_pools_survive_a_zone(load):
    assert of.check_ceph_pools(load(ROOK)) == []


@pytest.mark.parametrize("pool, why", [
    ({"failureDomain": "zone", "erasureCoded": {"dataChunks": 2, "codingChunks": 1}}, "no redundancy"),
    ({"failureDomain": "zone", "replicated": {"size": 2}}, "no redundancy"),
    ({"failureDomain": "host", "replicated": {"size": 3}}, "may share a zone"),
    ({"failureDomain": "zone", "erasureCoded": {"dataChunks": 4, "codingChunks": 2}}, "need 6 zones"),
    ({"failureDomain": "zone", "replicated": {"size": 3}, "parameters": {"min_size": "3"}}, "below min_size"),
])
def test_ceph_pool_check_fails(load, pool, why):
    objs = load(ROOK)
    find(objs, "CephObjectStore")["spec"]["dataPool"] = pool
    assert any(why in v for v in of.check_ceph_pools(objs)), of.check_ceph_pools(objs)


def test_ceph_min_size_defaults():
    # src/mon/OSDMonitor.cc prepare_pool_size
    assert of.ceph_min_size({"replicated": {"size": 3}}) == 2
    assert of.ceph_min_size({"erasureCoded": {"dataChunks": 2, "codingChunks": 1}}) == 2
    assert of.ceph_min_size({"erasureCoded": {"dataChunks": 4, "codingChunks": 2}}) == 5


# --- 3. MinIO survives a zone --------------------------------------------------------------
@pytest.mark.parametrize("servers, drives, want", [
    # Cases of MinIO's own cmd/endpoint-ellipses_test.go (TestGetSetIndexes).
    (3, 180, 15), (2, 180, 12), (1, 27, 9), (1, 3, 3),
    # Ours: prod before and after.
    (4, 4, 16), (6, 4, 12),
])
def test_minio_set_size_model_matches_minio(servers, drives, want):
    assert of.minio_set_size(servers, drives) == want


def test_minio_arithmetic():
    # 4 servers x 4 drives: one set of 16, EC:4, read 12 / write 12.
    assert of.minio_sets(4, 4) == [[0, 1, 2, 3] * 4]
    assert of.minio_quorums(16, of.minio_default_parity(16)) == (12, 12)
    # A zone with 2 of the 4 servers takes 8 drives: 8 left < 12.
    assert of.max_per_zone(4, {"whenUnsatisfiable": "DoNotSchedule", "minDomains": 3, "maxSkew": 1})[0] == 2
    # 6 x 4: two sets of 12, two drives per server each, EC:4, quorum 8;
    # a zone holds 2 servers = 4 drives of each set: 8 left = quorum.
    sets = of.minio_sets(6, 4)
    assert len(sets) == 2 and all(s.count(h) == 2 for s in sets for h in range(6))
    assert of.minio_quorums(12, of.minio_default_parity(12)) == (8, 8)
    assert of.max_per_zone(6, {"whenUnsatisfiable": "DoNotSchedule", "minDomains": 3, "maxSkew": 1})[0] == 2
    # data == parity needs one more drive to write.
    assert of.minio_quorums(16, 8) == (8, 9)


def test_minio_survives_a_zone(load):
    assert of.check_minio_zone_loss(load("kustomize-prod")) == []


@pytest.mark.parametrize("mutation", ["four servers", "soft spread", "no minDomains", "skew 2", "EC:2"])
def test_minio_zone_check_fails(load, mutation):
    objs = load("kustomize-prod")
    t = find(objs, "Tenant")
    p = t["spec"]["pools"][0]
    spread = next(c for c in p["topologySpreadConstraints"] if c["topologyKey"] == inv.ZONE)
    if mutation == "four servers":
        p["servers"] = 4
    elif mutation == "soft spread":
        spread["whenUnsatisfiable"] = "ScheduleAnyway"
    elif mutation == "no minDomains":
        spread.pop("minDomains")
    elif mutation == "skew 2":
        spread["maxSkew"] = 2
    else:
        t["spec"]["env"].append({"name": "MINIO_STORAGE_CLASS_STANDARD", "value": "EC:2"})
    assert of.check_minio_zone_loss(objs)


# --- 4. MinIO reads every MINIO_* name we set ----------------------------------------------
def _docs_names():
    return of.docs_minio_names((ROOT / "docs" / "operations.md").read_text())


def test_minio_env_names_are_minios(load):
    names = _docs_names()
    assert "MINIO_NOTIFY_AMQP_URL_PRIMARY" in names, "the docs' config.env recipe was not found"
    assert of.check_minio_env(load("kustomize-prod"), names) == []
    assert of.check_minio_env(load("kustomize-dev"), names) == []


@pytest.mark.parametrize("bad", ["MINIO_NOTIFY_AMQP_PUBLISHER_CONFIRMS_PRIMARY", "MINIO_BROWSER_OFF", "MINIO_ROOT_USR"])
def test_minio_env_check_fails(load, bad):
    objs = load("kustomize-prod")
    find(objs, "Tenant")["spec"]["env"].append({"name": bad, "value": "on"})
    assert any(bad in v for v in of.check_minio_env(objs))


def test_minio_publisher_confirms_are_on(load):
    env = {e["name"]: e.get("value") for e in find(load("kustomize-prod"), "Tenant")["spec"]["env"]}
    assert env.get("MINIO_NOTIFY_AMQP_PUBLISHING_CONFIRMS_PRIMARY") == "on"


# --- 5. no fight with the operators over names; one budget per pod set ------------------------
@pytest.mark.parametrize("variant", PROD + ["kustomize-dev"])
def test_no_object_named_like_an_operators(load, variant):
    assert of.check_operator_owned_names(load(variant)) == []


@pytest.mark.parametrize("mutation", ["operator policy on", "our policy under its name", "our dragonfly pdb",
                                      "a -rw service"])
def test_operator_names_check_fails(load, mutation):
    objs = load("kustomize-prod")
    if mutation == "operator policy on":
        find(objs, "Dragonfly")["spec"].pop("networkPolicyEnabled")
    elif mutation == "our policy under its name":
        find(objs, "NetworkPolicy", "drop-dragonfly-clients")["metadata"]["name"] = "drop-dragonfly"
    elif mutation == "our dragonfly pdb":
        objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": "drop-dragonfly", "namespace": "drop"},
                     "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "drop-dragonfly"}}}})
    else:
        objs.append({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "drop-pg-rw", "namespace": "drop"},
                     "spec": {"ports": [{"port": 5432}]}})
    assert of.check_operator_owned_names(objs)


@pytest.mark.parametrize("variant", PROD)
def test_one_budget_per_pod_set(load, variant):
    assert of.check_one_budget_each(load(variant)) == []


@pytest.mark.parametrize("variant, mutation", [(ROOK, "no rgw pdb"), ("kustomize-prod", "second dragonfly pdb"),
                                               ("kustomize-prod", "no minio pdb"), ("kustomize-prod", "pdb on cnpg")])
def test_budget_check_fails(load, variant, mutation):
    objs = load(variant)
    if mutation == "no rgw pdb":
        objs.remove(find(objs, "PodDisruptionBudget", "rook-ceph-rgw-drop-store"))
    elif mutation == "second dragonfly pdb":
        objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": "dragonfly", "namespace": "drop"},
                     "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"app": "drop-dragonfly"}}}})
    elif mutation == "no minio pdb":
        objs.remove(find(objs, "PodDisruptionBudget", "drop-minio"))
    else:
        objs.append({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                     "metadata": {"name": "pg", "namespace": "drop"},
                     "spec": {"maxUnavailable": 1, "selector": {"matchLabels": {"cnpg.io/cluster": "drop-pg"}}}})
    assert of.check_one_budget_each(objs)


# --- 6. autoscaled Deployments carry no replicas -------------------------------------------
@pytest.mark.parametrize("variant", APPS + ["kustomize-dev", "helm-default"])
def test_autoscaled_deployments_set_no_replicas(load, variant):
    assert inv.check_autoscaled_replicas(load(variant)) == []


@pytest.mark.parametrize("variant", ["kustomize-prod", "helm-prod"])
@pytest.mark.parametrize("deployment", ["order-api", "pdf-generator"])
def test_autoscaled_replicas_check_fails(load, variant, deployment):
    objs = load(variant)
    find(objs, "Deployment", deployment)["spec"]["replicas"] = 3
    assert any("sets spec.replicas" in v for v in inv.check_autoscaled_replicas(objs))


# --- 7. the topic's user publishes only; the Job re-creates the notification ------------------
def test_topic_user_may_only_publish_voucher_events(load):
    assert of.check_topic_user_publish_only(load(ROOK)) == []


@pytest.mark.parametrize("mutation", ["write all", "configure s3.events", "read", "no topic permission",
                                      "topic wildcard", "administrator", "unanchored"])
def test_topic_user_check_fails(load, mutation):
    objs = load(ROOK)
    perm = find(objs, "Permission", "drop-s3-notify")["spec"]["permissions"]
    if mutation == "write all":
        perm["write"] = ".*"
    elif mutation == "configure s3.events":
        perm["configure"] = "^s3\\.events$"
    elif mutation == "read":
        perm["read"] = "^pdf-generator\\..*"
    elif mutation == "no topic permission":
        objs.remove(find(objs, "TopicPermission", "drop-s3-notify-s3-events"))
    elif mutation == "topic wildcard":
        find(objs, "TopicPermission", "drop-s3-notify-s3-events")["spec"]["permissions"]["write"] = ".*"
    elif mutation == "administrator":
        find(objs, "User", "drop-s3-notify")["spec"]["tags"] = ["administrator"]
    else:
        perm["write"] = "s3\\.events"
    assert of.check_topic_user_publish_only(objs)


# --- 9. readiness -------------------------------------------------------------------------
@pytest.mark.parametrize("variant", APPS)
def test_probes_tolerate_a_slow_check(load, variant):
    assert of.check_probes(load(variant)) == []


@pytest.mark.parametrize("mutation", ["threshold 1", "liveness on readyz", "short window", "timeout 1"])
def test_probe_check_fails(load, mutation):
    objs = load("helm-prod")
    c = pod(objs, "order-api")["containers"][0]
    if mutation == "threshold 1":
        c["readinessProbe"]["failureThreshold"] = 1
    elif mutation == "liveness on readyz":
        c["livenessProbe"]["httpGet"]["path"] = "/readyz"
    elif mutation == "short window":
        c["readinessProbe"]["periodSeconds"] = 2
    else:
        c["readinessProbe"]["timeoutSeconds"] = 1
    assert of.check_probes(objs)


# --- 10. smaller points -----------------------------------------------------------------------
@pytest.mark.parametrize("variant", APPS + ["kustomize-dev", "helm-default"])
def test_services_reach_the_store_pods_port(load, variant):
    assert of.check_store_egress(load(variant)) == []


@pytest.mark.parametrize("variant, port", [("helm-rook", 9000), (ROOK, 80), ("helm-prod", 80)])
def test_store_egress_check_fails(load, variant, port):
    objs = load(variant)
    for p in of.of_kind(objs, "NetworkPolicy"):
        for rule in p["spec"].get("egress") or []:
            for x in rule.get("ports") or []:
                if x.get("port") in (8080, 9000) and any("podSelector" in t and (
                        "rgw" in t["podSelector"].get("matchLabels", {})
                        or "v1.min.io/tenant" in t["podSelector"].get("matchLabels", {})) for t in rule["to"]):
                    x["port"] = port
    assert of.check_store_egress(objs)


@pytest.mark.parametrize("variant", PROD + ["helm-prod", "helm-rook"])
def test_monitors_carry_the_stack_label(load, variant):
    assert of.check_monitoring_selected(load(variant)) == []


@pytest.mark.parametrize("mutation", ["servicemonitor", "prometheusrule", "dashboard"])
def test_monitoring_label_check_fails(load, mutation):
    objs = load("kustomize-prod")
    if mutation == "dashboard":
        for cm in of.of_kind(objs, "ConfigMap"):
            cm["metadata"].get("labels", {}).pop("grafana_dashboard", None)
    else:
        kind = {"servicemonitor": "ServiceMonitor", "prometheusrule": "PrometheusRule"}[mutation]
        find(objs, kind)["metadata"]["labels"].pop("release")
    assert of.check_monitoring_selected(objs)


def test_dev_has_no_stack_label(load):
    # The counterpart: dev does not add the component, and the check says so.
    assert of.check_monitoring_selected(load("kustomize-dev"))


@pytest.mark.parametrize("variant", PROD + ["kustomize-dev", "helm-prod", "helm-default"])
def test_ingress_fits_the_supported_controller(load, variant):
    assert of.check_ingress_controller(load(variant)) == []


@pytest.mark.parametrize("mutation", ["no websocket list", "no nginx.org body size", "policy for retired ns"])
def test_ingress_check_fails(load, mutation):
    objs = load("kustomize-prod")
    if mutation == "no websocket list":
        find(objs, "Ingress", "web-stomp")["metadata"]["annotations"].pop("nginx.org/websocket-services")
    elif mutation == "no nginx.org body size":
        find(objs, "Ingress", "order-api")["metadata"]["annotations"].pop("nginx.org/client-max-body-size")
    else:
        np = find(objs, "NetworkPolicy", "order-api")
        for peer in np["spec"]["ingress"][0]["from"]:
            sel = peer.get("namespaceSelector", {}).get("matchLabels", {})
            if sel.get("kubernetes.io/metadata.name") == "nginx-ingress":
                sel["kubernetes.io/metadata.name"] = "ingress-nginx"
    assert of.check_ingress_controller(objs)


def _app_config(objs, deployment):
    d = find(objs, "Deployment", deployment)
    names = [s["configMapRef"]["name"] for s in d["spec"]["template"]["spec"]["containers"][0].get("envFrom") or []]
    out = {}
    for cm in of.of_kind(objs, "ConfigMap"):
        if cm["metadata"]["name"] in names:
            out.update(cm.get("data") or {})
    return out


# Settings whose values may differ between the two installs on purpose.
PER_INSTALL = {"STOMP_URL", "S3_PUBLIC_ENDPOINT"}


@pytest.mark.parametrize("deployment", ["order-api", "pdf-generator"])
def test_chart_and_kustomize_configure_alike(load, deployment):
    base, chart = _app_config(load("kustomize-prod"), deployment), _app_config(load("helm-prod"), deployment)
    common = (set(base) & set(chart)) - PER_INSTALL
    assert "SHUTDOWN_TIMEOUT_SECS" in common
    diff = {k: (base[k], chart[k]) for k in common if str(base[k]) != str(chart[k])}
    assert not diff, f"kustomize vs chart: {diff}"


def test_config_comparison_fails_on_drift(load):
    objs = load("helm-prod")
    for cm in of.of_kind(objs, "ConfigMap"):
        if "SHUTDOWN_TIMEOUT_SECS" in (cm.get("data") or {}) and "PREFETCH" in cm["data"]:
            cm["data"]["SHUTDOWN_TIMEOUT_SECS"] = "20"
    base, chart = _app_config(load("kustomize-prod"), "pdf-generator"), _app_config(objs, "pdf-generator")
    assert base["SHUTDOWN_TIMEOUT_SECS"] != chart["SHUTDOWN_TIMEOUT_SECS"]


def test_mutations_do_not_leak(load):
    # The fixture hands out copies: a mutated render never reaches another test.
    a = load(ROOK)
    find(a, "CephObjectStore")["spec"]["dataPool"] = {}
    assert of.check_ceph_pools(copy.deepcopy(load(ROOK))) == []
