"""Every metric the Grafana dashboard and the alerts query is one the
services really export, scraped from them running on the local stack.

The module starts the built order-api and pdf-generator on free loopback
ports against the stack of `make test` (.stack/env), with a database,
exchange and queues of their own, drives a product and orders through them
(and one malformed S3 event, so the dead-letter counter exists), scrapes both
/metrics endpoints, stops them and cleans up. No hard-coded list of our own
metric names: the scrape is the truth. Metrics of other exporters (RabbitMQ,
CloudNativePG) are checked against the definitions named in EXTERNAL.
Missing binaries or stack fail the test; they are never skipped.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import pytest

import render
from localstack import stack_env

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "k8s" / "base" / "monitoring" / "dashboards" / "drop.json"

# Metrics that other exporters serve, with where their names come from.
EXTERNAL = {
    "rabbitmq_detailed_queue_messages_ready":
        "rabbitmq-server deps/rabbitmq_prometheus prometheus_rabbitmq_core_metrics_collector.erl, family "
        "queue_coarse_metrics on /metrics/detailed (the ServiceMonitor drop-rabbitmq asks for it)",
    "rabbitmq_detailed_queue_messages_unacked": "as above",
    "cnpg_pg_replication_in_recovery": "cloudnative-pg config/manager/default-monitoring.yaml, pg_replication",
    "cnpg_pg_replication_lag": "as above",
}

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
            "offset", "inf", "nan"}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)                        # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                       # ranges, subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)                      # Grafana variables
    names = set()
    for m in re.finditer(r"(?<![\w.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?", s):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in KEYWORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs(dashboard: dict) -> list[tuple[str, str]]:
    return [(p["title"], t["expr"]) for p in dashboard["panels"] for t in p.get("targets") or []]


def alert_exprs(objs) -> list[tuple[str, str]]:
    return [(r.get("alert") or r.get("record"), r["expr"]) for o in objs if o["kind"] == "PrometheusRule"
            for g in o["spec"]["groups"] for r in g["rules"]]


def missing_metrics(queries, exported: set[str], external=EXTERNAL) -> list[str]:
    out = []
    for where, expr in queries:
        names = promql_metric_names(expr)
        if not names:
            out.append(f"{where}: no metric in {expr!r}")
        for n in sorted(names - exported - set(external)):
            out.append(f"{where}: {n} is not exported by order-api or pdf-generator")
    return out


def exposition_names(text: str) -> set[str]:
    return {m.group(1) for m in re.finditer(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)[{ ]", text, re.M)}


# --- the running services -------------------------------------------------------------
def binary(name: str) -> Path:
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    path = target / "debug" / name
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is not built: `cargo build --workspace --bins` (make test builds it first)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=5):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def psql(env, sql):
    exe = shutil.which("psql") or os.path.join(env.get("PG_BINDIR", ""), "psql")
    subprocess.run([exe, env["DATABASE_URL"], "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True,
                   capture_output=True, timeout=60)


class Service:
    def __init__(self, name, env, logdir: Path):
        self.name, self.log = name, logdir / f"{name}.log"
        self.proc = subprocess.Popen([str(binary(name))], env=env, stdout=self.log.open("wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def tail(self):
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(what, pred, timeout, services):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for s in services:
            if s.proc.poll() is not None:
                pytest.fail(f"{s.name} exited ({s.proc.returncode}) while waiting for {what}:\n{s.tail()}")
        try:
            if pred():
                return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"timed out waiting for {what}:\n" + "\n".join(f"--- {s.name}\n{s.tail()}" for s in services))


def scrape(url) -> str:
    return http("GET", url)[1]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The metric names both services export after real work."""
    import pika  # from the k8s-check venv

    stack = stack_env()
    api_bin, pdf_bin = binary("order-api"), binary("pdf-generator")  # fail early if missing
    assert api_bin and pdf_bin
    run = uuid.uuid4().hex[:10]
    db = f"k8scheck_{run}"
    logdir = tmp_path_factory.mktemp("services")
    names = {"exchange": f"orders.k8scheck.{run}", "orders": f"pdf-generator.orders.k8scheck.{run}",
             "events": f"pdf-generator.s3-events.k8scheck.{run}", "status": f"order-api.voucher-status.k8scheck.{run}",
             "stored": f"pdf-generator.voucher-stored.k8scheck.{run}"}
    try:
        psql(stack, f'CREATE DATABASE "{db}"')
    except (OSError, subprocess.SubprocessError) as e:
        pytest.fail(f"cannot create a database on the stack's PostgreSQL ({stack.get('DATABASE_URL')}): {e}")
    db_url = stack["DATABASE_URL"].rsplit("/", 1)[0] + "/" + db
    api_port, api_metrics_port, pdf_port = free_port(), free_port(), free_port()
    token = uuid.uuid4().hex * 2
    base = {k: v for k, v in os.environ.items() if not k.startswith(("S3_", "AMQP_", "DATABASE_", "REDIS_"))}
    base.update(stack)
    base.update(RUST_LOG="warn", LOG_FORMAT="text", SHUTDOWN_TIMEOUT_SECS="5", ORDERS_EXCHANGE=names["exchange"])
    api_env = dict(base, LISTEN_ADDR=f"127.0.0.1:{api_port}", METRICS_ADDR=f"127.0.0.1:{api_metrics_port}",
                   DATABASE_URL=db_url, APP_PROFILE="dev",
                   ADMIN_TOKEN=token, STOCK_RECONCILE_SECS="1", VOUCHER_STATUS_QUEUE=names["status"])
    pdf_env = dict(base, METRICS_ADDR=f"127.0.0.1:{pdf_port}", ORDERS_QUEUE=names["orders"],
                   EVENTS_QUEUE=names["events"], STORED_QUEUE=names["stored"], ROLE="all")
    api = Service("order-api", api_env, logdir)
    pdf = Service("pdf-generator", pdf_env, logdir)
    services = [api, pdf]
    api_url, pdf_url = f"http://127.0.0.1:{api_port}", f"http://127.0.0.1:{pdf_port}"
    api_metrics_url = f"http://127.0.0.1:{api_metrics_port}"  # order-api's metrics listener
    try:
        wait_for("both /readyz", lambda: http("GET", f"{api_url}/readyz")[0] == 200
                 and http("GET", f"{pdf_url}/readyz")[0] == 200, 90, services)
        sku = f"K8SCHECK-{run}".upper()
        status, body = http("PUT", f"{api_url}/v1/products/{sku}", {"name": "k8s check", "stock": 1},
                            {"Authorization": f"Bearer {token}"})
        assert status in (200, 201), (status, body)

        def order(i):
            return http("POST", f"{api_url}/v1/orders", {"sku": sku, "first_name": "Dash", "last_name": f"Board{i}",
                        "phone": f"+35840{run[:3].translate(str.maketrans('abcdef', '123456'))}{i:04d}"},
                        {"Idempotency-Key": f"{run}-{i}"})

        status, body = order(0)
        assert status == 201, (status, body)
        # Sold out: the first answers may come from PostgreSQL, later ones from the flag.
        n = [1]

        def sold_out_from_flag():
            order(n[0])
            n[0] += 1
            return "sold_out_from_flag_total" in exposition_names(scrape(f"{api_metrics_url}/metrics"))
        wait_for("a sold-out answer from the flag", sold_out_from_flag, 30, services)
        wait_for("the voucher (voucher_end_to_end_seconds)",
                 lambda: "voucher_end_to_end_seconds_bucket" in exposition_names(scrape(f"{pdf_url}/metrics")),
                 120, services)
        # One malformed S3 event on our own events queue: the notifier dead-letters it.
        conn = pika.BlockingConnection(pika.URLParameters(stack["AMQP_URL"]))
        try:
            conn.channel().basic_publish("", names["events"], b"not an S3 event")
        finally:
            conn.close()
        wait_for("a dead letter (messages_dead_lettered_total)",
                 lambda: "messages_dead_lettered_total" in exposition_names(scrape(f"{pdf_url}/metrics")),
                 30, services)
        out = exposition_names(scrape(f"{api_metrics_url}/metrics")) | exposition_names(scrape(f"{pdf_url}/metrics"))
    finally:
        for s in services:
            s.stop()
        try:
            conn = pika.BlockingConnection(pika.URLParameters(stack["AMQP_URL"]))
            ch = conn.channel()
            for q in (names["orders"], names["events"], names["status"], names["stored"]):
                ch.queue_delete(q)
            ch.exchange_delete(names["exchange"])
            conn.close()
        except Exception as e:  # cleanup must not hide the real result
            print(f"cleanup of broker objects failed: {e}")
        try:
            psql(stack, f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        except subprocess.SubprocessError as e:
            print(f"dropping {db} failed: {e}")
    return out


# --- the checks -----------------------------------------------------------------------------
def load_dashboard():
    return json.loads(DASHBOARD.read_text())


def test_dashboard_is_provisioned_from_this_file(load):
    cm = next(o for o in load("kustomize-prod") if o["kind"] == "ConfigMap"
              and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1")
    assert json.loads(cm["data"]["drop.json"]) == load_dashboard()
    chart = next(o for o in load("helm-prod") if o["kind"] == "ConfigMap"
                 and o["metadata"].get("labels", {}).get("grafana_dashboard") == "1")
    assert [p["title"] for p in json.loads(chart["data"]["drop.json"])["panels"]] == \
        [p["title"] for p in load_dashboard()["panels"]]


def test_dashboard_shows_the_drop():
    titles = " / ".join(p["title"] for p in load_dashboard()["panels"]).lower()
    for want in ("requests by outcome", "reservations per second", "stock remaining", "outbox backlog",
                 "voucher latency", "broker"):
        assert want in titles, f"no panel for {want}"


def test_extractor():
    assert promql_metric_names('histogram_quantile(0.99, sum by (le) (rate(voucher_end_to_end_seconds_bucket'
                               '{namespace="$namespace"}[$__rate_interval])))') == {"voucher_end_to_end_seconds_bucket"}
    assert promql_metric_names('sum(rate(http_requests_total{status=~"5.."}[5m])) / sum(rate(http_requests_total[5m]))'
                               ' > 0.01') == {"http_requests_total"}
    assert promql_metric_names('(count(cnpg_pg_replication_in_recovery{namespace="drop"} == 0) or vector(0)) < 1') \
        == {"cnpg_pg_replication_in_recovery"}
    assert promql_metric_names('max(outbox_backlog) > 100 and max(deriv(outbox_backlog[10m])) > 0') == {"outbox_backlog"}


def test_dashboard_queries_exported_metrics(exported):
    assert missing_metrics(dashboard_exprs(load_dashboard()), exported) == []


@pytest.mark.parametrize("variant", ["kustomize-prod", "kustomize-prod-rook-ceph"])
def test_alerts_query_exported_metrics(exported, variant):
    queries = alert_exprs(render.load(variant))
    assert len(queries) >= 6, queries
    assert missing_metrics(queries, exported) == []


def test_renamed_metric_is_caught(exported):
    queries = dashboard_exprs(load_dashboard()) + [("renamed", "rate(voucher_latency_seconds_bucket[5m])")]
    assert missing_metrics(queries, exported) == ["renamed: voucher_latency_seconds_bucket is not exported "
                                                  "by order-api or pdf-generator"]


def test_metric_no_longer_exported_is_caught(exported):
    assert missing_metrics(dashboard_exprs(load_dashboard()), exported - {"outbox_backlog"})


def test_scrape_sees_both_services(exported):
    # The counterpart of an empty scrape passing: each service's own names.
    assert {"http_requests_total", "reservations_total", "outbox_backlog"} <= exported
    assert {"voucher_end_to_end_seconds_bucket", "messages_acked_total"} <= exported


def test_external_metrics_are_requested(load):
    """The RabbitMQ names come from the detailed endpoint's coarse family,
    which the ServiceMonitor must ask for."""
    sm = next(o for o in load("kustomize-prod") if o["kind"] == "ServiceMonitor" and o["metadata"]["name"] == "drop-rabbitmq")
    families = [f for e in sm["spec"]["endpoints"] if e.get("path") == "/metrics/detailed"
                for f in (e.get("params") or {}).get("family", [])]
    assert "queue_coarse_metrics" in families
