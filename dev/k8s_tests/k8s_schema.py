"""Strict, offline schema validation of rendered Kubernetes objects.

What kubeconform does, with the schemas this project may use:
- core kinds: the strict JSON schemas bundled by the PyPI package
  kubernetes-validate (`kubernetes-json-schema/v<version>-local-strict`);
- operator kinds: `<K8S_SCHEMAS_DIR>/crds/<group>/<kind>_<version>.json`,
  read in place (never copied into the repository). Those schemas are strict
  below the top level only, so the top level is closed here, and `metadata`
  (a bare `type: object` there) is checked against the core ObjectMeta.

An unknown field anywhere fails, and so does a kind with no schema.
"""

from __future__ import annotations

import json
import os
import re
from functools import lru_cache
from pathlib import Path

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

K8S_VERSION = os.environ.get("K8S_VERSION", "1.33.0")
OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


def schemas_dir() -> Path:
    """$K8S_SCHEMAS_DIR, else the default dev/k8s-check.sh uses (the
    k8s-schemas directory of the workspace beside the repository)."""
    env = os.environ.get("K8S_SCHEMAS_DIR")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "k8s-schemas"


class SchemaNotFound(Exception):
    pass


class Validator:
    def __init__(self, crd_root: Path | None = None, k8s_version: str = K8S_VERSION):
        self.crd_root = (crd_root or schemas_dir()) / "crds"
        if not self.crd_root.is_dir():
            raise FileNotFoundError(
                f"operator CRD schemas not found at {self.crd_root}; set K8S_SCHEMAS_DIR"
            )
        self.core_root = (
            Path(kubernetes_validate.__file__).parent
            / "kubernetes-json-schema"
            / f"v{k8s_version}-local-strict"
        )
        if not self.core_root.is_dir():
            raise FileNotFoundError(f"no strict core schemas for {k8s_version} at {self.core_root}")
        definitions = json.loads((self.core_root / "_definitions.json").read_text())
        self.registry = Resource.from_contents(definitions) @ Registry()

    # -- schema lookup -------------------------------------------------------
    def schema_path(self, api_version: str, kind: str) -> tuple[str, Path]:
        group, _, version = api_version.rpartition("/")
        if group:
            crd = self.crd_root / group / f"{kind.lower()}_{version}.json"
            if crd.is_file():
                return "crd", crd
        # kubernetes-validate's naming: apps/v1 -> apps-v1, networking.k8s.io/v1
        # -> networking-v1, v1 -> v1.
        core_api = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
        core = self.core_root / f"{kind.lower()}-{core_api}.json"
        if core.is_file():
            return "core", core
        raise SchemaNotFound(f"no schema for {kind} {api_version}")

    @lru_cache(maxsize=None)
    def _validator(self, api_version: str, kind: str):
        source, path = self.schema_path(api_version, kind)
        schema = json.loads(path.read_text())
        if source == "crd":
            # Close the top level (apiVersion, kind, metadata, spec, status)
            # and check metadata like a core object's.
            schema = dict(schema)
            schema["$id"] = f"https://kubernetes.io/api/crds/{path.parent.name}/{path.stem}"
            schema["additionalProperties"] = False
            props = dict(schema.get("properties", {}))
            props["metadata"] = {"$ref": OBJECT_META}
            # A few catalogue schemas (ObjectBucketClaim) omit these two.
            props.setdefault("apiVersion", {"type": "string"})
            props.setdefault("kind", {"type": "string"})
            schema["properties"] = props
            schema["required"] = sorted(set(schema.get("required", [])) | {"apiVersion", "kind", "metadata"})
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        return cls(schema, registry=self.registry)

    # -- validation ----------------------------------------------------------
    def errors(self, obj: dict) -> list[str]:
        """Every schema violation of one object, as readable strings."""
        if not isinstance(obj, dict):
            return [f"not an object: {obj!r:.80}"]
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        name = (obj.get("metadata") or {}).get("name", "?")
        where = f"{kind}/{name}"
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return [f"{where}: missing apiVersion or kind"]
        try:
            validator = self._validator(api_version, kind)
        except SchemaNotFound as e:
            return [f"{where}: {e}"]
        out = []
        for err in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
            path = "/".join(str(p) for p in err.absolute_path) or "(top level)"
            out.append(f"{where}: {path}: {err.message[:300]}")
        return out
