"""Every rendered object validates strictly; the validator rejects what a
real API server (or kubeconform -strict) would."""

import copy

import pytest

import render

VARIANTS = render.variants()


def test_all_variants_rendered():
    expected = {
        "kustomize-dev", "kustomize-prod", "kustomize-prod-rook-ceph",
        "kustomize-prod-pg-backup", "helm-default", "helm-prod", "helm-rook",
    }
    assert expected <= set(VARIANTS), f"missing renders: {expected - set(VARIANTS)}"


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_object_validates(validator, load, variant):
    errors = [e for obj in load(variant) for e in validator.errors(obj)]
    assert not errors, "\n".join(errors)


def _first(objs, kind):
    return copy.deepcopy(next(o for o in objs if o["kind"] == kind))


# --- counter-examples: the same validator must reject these -----------------
@pytest.mark.parametrize(
    "kind, mutate",
    [
        # a misspelt field deep in a core kind
        ("Deployment", lambda o: o["spec"]["template"]["spec"]["containers"][0].update(imagePullPolicyy="Always")),
        # an unknown top-level key of a core kind
        ("Deployment", lambda o: o.update(sepc={})),
        # a wrong type
        ("Service", lambda o: o["spec"]["ports"][0].update(port="eighty")),
        # the removed Ingress backend field
        ("Ingress", lambda o: o["spec"]["rules"][0]["http"]["paths"][0]["backend"].update(serviceName="x")),
        # an unknown field in an operator kind, below the top level
        ("RabbitmqCluster", lambda o: o["spec"]["rabbitmq"].update(additionalPlugin=["x"])),
        # an unknown top-level key of an operator kind (the CRD schemas are open there)
        ("Cluster", lambda o: o.update(sepc={"instances": 3})),
        # an unknown metadata field of an operator kind
        ("Tenant", lambda o: o["metadata"].update(lables={"a": "b"})),
        # an invalid enum
        ("Cluster", lambda o: o["spec"].update(primaryUpdateStrategy="whenever")),
        # an unknown field in a KEDA trigger
        ("ScaledObject", lambda o: o["spec"]["triggers"][0].update(authRef={"name": "x"})),
        # a missing required field
        ("Deployment", lambda o: o["spec"].pop("selector")),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_validator_rejects_broken_objects(validator, load, kind, mutate):
    obj = _first(load("kustomize-prod"), kind)
    assert not validator.errors(obj), "the unmodified object must pass first"
    mutate(obj)
    assert validator.errors(obj), f"a broken {kind} passed validation"


def test_kind_without_schema_fails(validator):
    errors = validator.errors({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    assert errors and "no schema" in errors[0]


def test_unknown_core_version_fails(validator):
    errors = validator.errors({"apiVersion": "apps/v1beta1", "kind": "Deployment", "metadata": {"name": "d"}})
    assert errors and "no schema" in errors[0]
