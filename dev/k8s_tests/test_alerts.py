"""`promtool check rules` and `promtool test rules` (Debian's prometheus
package) on the rules of every rendered PrometheusRule, with the series
written in alerts.test.yaml; and broken rules that those tests must catch."""

import copy
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

import render

TESTS = Path(__file__).parent / "alerts.test.yaml"
RULES = sorted({(v, o["metadata"]["name"]) for v in render.variants() for o in render.load(v)
                if o["kind"] == "PrometheusRule"})


def promtool():
    path = shutil.which("promtool")
    if not path:
        pytest.fail("promtool not found: dev/k8s-check.sh installs Debian's prometheus package")
    return path


def run_promtool(tmp_path, groups):
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump({"groups": groups}))
    shutil.copy(TESTS, tmp_path / "alerts.test.yaml")
    check = subprocess.run([promtool(), "check", "rules", "rules.yaml"], cwd=tmp_path, capture_output=True, text=True)
    test = subprocess.run([promtool(), "test", "rules", "alerts.test.yaml"], cwd=tmp_path, capture_output=True, text=True)
    return check, test


def rule_groups(variant, rule_name):
    obj = next(o for o in render.load(variant) if o["kind"] == "PrometheusRule" and o["metadata"]["name"] == rule_name)
    return obj["spec"]["groups"]


def test_a_prometheusrule_is_rendered():
    assert any(v == "kustomize-prod" for v, _ in RULES), RULES


@pytest.mark.parametrize("variant, rule_name", RULES)
def test_rules_pass_promtool(tmp_path, variant, rule_name):
    check, test = run_promtool(tmp_path, rule_groups(variant, rule_name))
    assert check.returncode == 0, check.stdout + check.stderr
    assert test.returncode == 0, test.stdout + test.stderr


def _alert(groups, alertname):
    return next(r for g in groups for r in g["rules"] if r.get("alert") == alertname)


BROKEN = {
    # Each would page too late, too often or never; the tests must notice.
    "5xx threshold 10%": lambda g: _alert(g, "DropApi5xxRateHigh").update(
        expr=_alert(g, "DropApi5xxRateHigh")["expr"].replace("> 0.01", "> 0.1")),
    "5xx counts 4xx": lambda g: _alert(g, "DropApi5xxRateHigh").update(
        expr=_alert(g, "DropApi5xxRateHigh")["expr"].replace('status=~"5.."', 'status=~"[45].."')),
    "backlog ignores growth": lambda g: _alert(g, "DropOutboxBacklogGrowing").update(
        expr='max(outbox_backlog{namespace="drop"}) > 100'),
    "dead letters need two": lambda g: _alert(g, "DropMessagesDeadLettered").update(
        expr=_alert(g, "DropMessagesDeadLettered")["expr"].replace("> 0", "> 1")),
    "p50 not p99": lambda g: _alert(g, "DropVoucherLatencyP99High").update(
        expr=_alert(g, "DropVoucherLatencyP99High")["expr"].replace("0.99", "0.5")),
    "no primary counted wrong": lambda g: _alert(g, "DropPostgresNoPrimary").update(
        expr='count(cnpg_pg_replication_in_recovery{namespace="drop"} == 0) < 1'),
    "failover pages at once": lambda g: _alert(g, "DropPostgresNoPrimary").pop("for"),
    "blocked announcements page at once": lambda g: _alert(g, "DropVoucherAnnouncementsBlocked").pop("for"),
    "alert removed": lambda g: g[0]["rules"].remove(_alert(g, "DropOrdersQueueBacklog")),
}


@pytest.mark.parametrize("mutation", sorted(BROKEN))
def test_promtool_tests_catch_a_broken_rule(tmp_path, mutation):
    groups = copy.deepcopy(rule_groups("kustomize-prod", "drop"))
    BROKEN[mutation](groups)
    check, test = run_promtool(tmp_path, groups)
    assert check.returncode == 0, "the broken rule must still be valid PromQL: " + check.stdout + check.stderr
    assert test.returncode != 0, f"'{mutation}' passed promtool test rules"
