"""Loads the rendered manifests that dev/k8s-check.sh wrote.

Each variant is one multi-document YAML file in $K8S_RENDERED_DIR:
kustomize-<overlay>.yaml and helm-<values>.yaml.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import yaml

# libyaml's loader when present: the renders are parsed once per run anyway.
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def rendered_dir() -> Path:
    d = os.environ.get("K8S_RENDERED_DIR")
    if not d:
        raise RuntimeError("K8S_RENDERED_DIR is not set: run the tests through dev/k8s-check.sh")
    return Path(d)


@lru_cache(maxsize=None)
def _parsed(path: Path) -> tuple:
    return tuple(d for d in yaml.load_all(path.read_text(), Loader=_Loader) if d is not None)


def load(name: str) -> list[dict]:
    """The objects of one variant. Parsed once; callers that mutate must copy
    (the `load` fixture in conftest.py hands out deep copies)."""
    path = rendered_dir() / f"{name}.yaml"
    docs = list(_parsed(path))
    if not docs:
        raise AssertionError(f"{path} rendered no objects")
    return docs


def variants() -> list[str]:
    return sorted(p.stem for p in rendered_dir().glob("*.yaml"))
