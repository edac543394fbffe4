"""k8s/operator-versions.yaml pins the operators and the CRD schema files
the manifests were checked against: every operator kind we render has a
pinned schema, the schema files are the ones that were compared with the
pinned releases (sha256), and docs/operations.md shows the same versions."""

import hashlib
import re
from pathlib import Path

import pytest
import yaml

import render
from k8s_schema import schemas_dir

ROOT = Path(__file__).resolve().parents[2]
PINS = yaml.safe_load((ROOT / "k8s" / "operator-versions.yaml").read_text())["operators"]


def pinned_schemas():
    return {f: op for op in PINS for f in op["schemas"]}


def schema_file(api_version, kind):
    group, _, version = api_version.rpartition("/")
    return f"{group}/{kind.lower()}_{version}.json" if "." in group else None


def unpinned_kinds(objs, pins):
    return sorted({f"{o['kind']} {o['apiVersion']}" for o in objs
                   if schema_file(o["apiVersion"], o["kind"]) and not o["apiVersion"].startswith(
                       ("apps/", "batch/", "policy/", "autoscaling/", "networking.k8s.io/", "rbac.authorization.k8s.io/",
                        "storage.k8s.io/"))
                   and schema_file(o["apiVersion"], o["kind"]) not in pins})


def drifted(pins, root):
    out = []
    for f, op in pins.items():
        path = root / "crds" / f
        if not path.is_file():
            out.append(f"{f}: missing from {root}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != op["schemas"][f]:
            out.append(f"{f}: not the file checked against {op['name']} {op['version']}: re-check and re-pin")
    return out


@pytest.mark.parametrize("variant", render.variants())
def test_every_operator_kind_is_pinned(load, variant):
    assert unpinned_kinds(load(variant), pinned_schemas()) == []


def test_unpinned_kind_is_caught(load):
    objs = load("kustomize-prod") + [{"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
                                      "metadata": {"name": "x"}}]
    assert unpinned_kinds(objs, pinned_schemas()) == ["HTTPRoute gateway.networking.k8s.io/v1"]


def test_schemas_are_the_pinned_ones():
    assert drifted(pinned_schemas(), schemas_dir()) == []


def test_changed_schema_is_caught(tmp_path):
    pins = pinned_schemas()
    f = "dragonflydb.io/dragonfly_v1alpha1.json"
    (tmp_path / "crds" / f).parent.mkdir(parents=True)
    (tmp_path / "crds" / f).write_bytes((schemas_dir() / "crds" / f).read_bytes() + b" ")
    assert drifted({f: pins[f]}, tmp_path)


def test_docs_show_the_pins():
    docs = (ROOT / "docs" / "operations.md").read_text()
    section = docs.split("### Pinned versions", 1)
    assert len(section) == 2, "docs/operations.md has no 'Pinned versions' section"
    rows = {m.group(1).strip(): m.group(2).strip() for m in re.finditer(r"^\| ([^|]+) \| `([^`]+)` \|", section[1], re.M)}
    for op in PINS:
        assert rows.get(op["name"]) == op["version"], f"{op['name']}: docs say {rows.get(op['name'])}, pin {op['version']}"
