"""The browsers' broker objects hold the local stack's values, keep the
browser login private and keep browsers off the pipeline's cluster; each
check fails on a counter-example."""

import pytest

import browser_edge as be

KUSTOMIZE = ["kustomize-dev", "kustomize-prod", "kustomize-prod-rook-ceph", "kustomize-prod-pg-backup"]


def find(objs, kind, pred=lambda o: True):
    for o in objs:
        if o["kind"] == kind and pred(o):
            return o
    raise AssertionError(f"no {kind} rendered")


@pytest.mark.parametrize("variant", KUSTOMIZE)
def test_browser_bounds_match_the_local_stack(load, variant):
    assert be.check_browser_bounds(load(variant)) == []


@pytest.mark.parametrize("variant", KUSTOMIZE)
def test_browser_login_is_private(load, variant):
    assert be.check_browser_login_private(load(variant)) == []


@pytest.mark.parametrize("variant", KUSTOMIZE + ["helm-prod", "helm-default"])
def test_browsers_are_off_the_pipeline(load, variant):
    assert be.check_browsers_off_the_pipeline(load(variant)) == []


def test_the_local_values_are_read():
    v = be.local_values()
    assert v["user_connections"] == 50000 and v["subscriptions_per_page"] == 2
    assert v["policy"]["message-ttl"] == 900000


@pytest.mark.parametrize("mutation", ["vhost connections", "vhost queues", "subscriptions per page",
                                      "no subscription bound", "user channels", "user on pipeline",
                                      "policy ttl", "policy pattern", "policy vhost", "no policy"])
def test_bounds_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    vhost = find(objs, "Vhost", lambda o: o["spec"].get("name") == "browser")
    user = find(objs, "User", lambda o: o["metadata"]["name"] == "drop-browser")
    policy = find(objs, "Policy", lambda o: o["spec"].get("name") == "stomp-subscriptions")
    if mutation == "vhost connections":
        vhost["spec"]["limits"]["connections"] = 1_000_000
    elif mutation == "vhost queues":
        vhost["spec"]["limits"]["queues"] = 101000
    elif mutation in ("subscriptions per page", "no subscription bound"):
        cluster = find(objs, "RabbitmqCluster", lambda o: o["metadata"]["name"] == "drop-browser-rabbitmq")
        rmq = cluster["spec"]["rabbitmq"]
        line = "consumer_max_per_channel = 2\n"
        assert line in rmq["additionalConfig"]
        rmq["additionalConfig"] = rmq["additionalConfig"].replace(
            line, "consumer_max_per_channel = 50\n" if mutation == "subscriptions per page" else "")
    elif mutation == "user channels":
        user["spec"]["limits"]["channels"] = 10
    elif mutation == "user on pipeline":
        user["spec"]["rabbitmqClusterReference"]["name"] = "drop-rabbitmq"
    elif mutation == "policy ttl":
        policy["spec"]["definition"]["message-ttl"] = 2147483647
    elif mutation == "policy pattern":
        policy["spec"]["pattern"] = "^stomp-"
    elif mutation == "policy vhost":
        policy["spec"]["vhost"] = "/"
    else:
        objs.remove(policy)
    assert be.check_browser_bounds(objs)


@pytest.mark.parametrize("mutation", ["pass in config", "stomp listener", "no secret mount", "stomp login env"])
def test_login_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    cluster = find(objs, "RabbitmqCluster", lambda o: o["metadata"]["name"] == "drop-browser-rabbitmq")
    rmq = cluster["spec"]["rabbitmq"]
    if mutation == "pass in config":
        rmq["additionalConfig"] += "stomp.default_pass = browser\n"
    elif mutation == "stomp listener":
        rmq["additionalConfig"] = rmq["additionalConfig"].replace("stomp.listeners.tcp = none", "")
    elif mutation == "no secret mount":
        cluster["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]["volumes"] = []
    else:
        api = find(objs, "Deployment", lambda o: o["metadata"]["name"] == "order-api")
        api["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "STOMP_PASSCODE", "value": "x"})
    assert be.check_browser_login_private(objs)


@pytest.mark.parametrize("mutation", ["fanout to pipeline", "ws to pipeline"])
def test_pipeline_check_fails_on_counter_example(load, mutation):
    objs = load("kustomize-prod")
    if mutation == "fanout to pipeline":
        pdf = find(objs, "Deployment", lambda o: o["metadata"]["name"] == "pdf-generator")
        for e in pdf["spec"]["template"]["spec"]["containers"][0]["env"]:
            if e["name"] == "FANOUT_AMQP_URL":
                e["value"] = e["value"].replace("drop-browser-rabbitmq", "drop-rabbitmq")
    else:
        ing = find(objs, "Ingress", lambda o: o["metadata"]["name"] == "web-stomp")
        ing["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"] = "drop-rabbitmq"
    assert be.check_browsers_off_the_pipeline(objs)
