"""deploy/helm/values-dask.yaml for the upstream dask/dask chart (which has no values schema)."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest
from deploy_helpers import DEPLOY, K8S, load_one

VALUES = DEPLOY / "helm" / "values-dask.yaml"

IMAGE = {
    "type": "object",
    "required": ["repository", "tag"],
    "properties": {
        "repository": {"type": "string", "minLength": 1},
        "tag": {"type": "string", "minLength": 1},
        "pullPolicy": {"enum": ["Always", "IfNotPresent", "Never"]},
        "dask_worker": {"type": "string"},
    },
    "additionalProperties": False,
}
QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$"}
RESOURCES = {
    "type": "object",
    "properties": {
        "requests": {"type": "object", "additionalProperties": QUANTITY},
        "limits": {
            "type": "object",
            "required": ["cpu", "memory"],
            "properties": {
                # The chart passes limits.cpu to --nthreads: it must be a whole number here.
                "cpu": {"type": "string", "pattern": r"^[1-9][0-9]*$"},
                "memory": QUANTITY,
            },
            "additionalProperties": False,
        },
    },
    "required": ["limits"],
    "additionalProperties": False,
}
# The subset of the chart's values.yaml keys this file may use (chart values as of dask/helm-chart
# 2024.x: scheduler, worker, jupyter sections). Unknown keys are typos the chart would ignore.
SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["scheduler", "worker", "jupyter"],
    "additionalProperties": False,
    "properties": {
        "scheduler": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "image": IMAGE,
                "serviceType": {"enum": ["ClusterIP", "NodePort", "LoadBalancer"]},
                "servicePort": {"type": "integer"},
                "resources": RESOURCES,
                "securityContext": {"type": "object"},
                "extraArgs": {"type": "array", "items": {"type": "string"}},
            },
        },
        "worker": {
            "type": "object",
            "additionalProperties": False,
            "required": ["image", "replicas", "resources"],
            "properties": {
                "image": IMAGE,
                "replicas": {"type": "integer", "minimum": 1},
                "resources": RESOURCES,
                "extraArgs": {"type": "array", "items": {"type": "string"}},
                "env": {"type": "array", "items": {"type": "object", "required": ["name"]}},
                "securityContext": {"type": "object"},
                "threads_per_worker": {"type": "integer", "minimum": 1},
                "mounts": {"type": "object"},
            },
        },
        "jupyter": {
            "type": "object",
            "properties": {"enabled": {"const": False}},
            "required": ["enabled"],
        },
    },
}


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return load_one(VALUES)


def test_values_match_the_schema(values: dict[str, Any]) -> None:
    jsonschema.validate(values, SCHEMA)


def test_schema_catches_a_typo_and_a_fractional_cpu_limit(values: dict[str, Any]) -> None:
    typo = {**values, "wroker": {}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(typo, SCHEMA)
    worker = {**values["worker"], "resources": {"limits": {"cpu": "1.5", "memory": "8Gi"}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({**values, "worker": worker}, SCHEMA)


def test_threads_come_from_resources_not_extra_args(values: dict[str, Any]) -> None:
    # The chart appends extraArgs after its own --nthreads/--memory-limit: a second
    # --nthreads there would be a duplicate flag.
    extra = values["worker"]["extraArgs"]
    assert not {"--nthreads", "--memory-limit", "--nworkers"} & set(extra)
    assert extra == ["--resources", "tcia_http=8"]
    assert values["worker"]["resources"]["limits"]["cpu"] == "8"


def test_same_image_as_the_kubernetes_manifests(values: dict[str, Any]) -> None:
    cluster = load_one(K8S / "operator" / "daskcluster.yaml")
    image = cluster["spec"]["worker"]["spec"]["containers"][0]["image"]
    for part in ("scheduler", "worker"):
        v = values[part]["image"]
        assert f"{v['repository']}:{v['tag']}" == image


def test_workers_get_credentials_only_from_secret_refs(values: dict[str, Any]) -> None:
    env = {e["name"]: e for e in values["worker"]["env"]}
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == "tcia-mirror-s3"
    assert values["scheduler"]["serviceType"] == "ClusterIP"
