"""Loads the rendered manifests that dev/k8s-check.sh wrote.

Each variant is one multi-document YAML file in $K8S_RENDERED_DIR:
kustomize-<overlay>.yaml and helm-<values>.yaml.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml


def rendered_dir() -> Path:
    d = os.environ.get("K8S_RENDERED_DIR")
    if not d:
        raise RuntimeError("K8S_RENDERED_DIR is not set: run the tests through dev/k8s-check.sh")
    return Path(d)


def load(name: str) -> list[dict]:
    path = rendered_dir() / f"{name}.yaml"
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if not docs:
        raise AssertionError(f"{path} rendered no objects")
    return docs


def variants() -> list[str]:
    return sorted(p.stem for p in rendered_dir().glob("*.yaml"))
