"""dask-kubernetes operator resources against the operator's own CRD schemas (vendored)."""

from __future__ import annotations

import copy
import hashlib
import re
from typing import Any

import jsonschema
import pytest
from deploy_helpers import CRDS, K8S, crd_schema, load_one, pod_specs

CLUSTER = K8S / "operator" / "daskcluster.yaml"
JOB = K8S / "operator" / "daskjob-sync.yaml"


def errors(schema: dict[str, Any], doc: dict[str, Any]) -> list[str]:
    return [e.message for e in jsonschema.Draft7Validator(schema).iter_errors(doc)]


@pytest.fixture(scope="module")
def cluster_schema() -> dict[str, Any]:
    return crd_schema("daskcluster")


@pytest.fixture(scope="module")
def job_schema() -> dict[str, Any]:
    return crd_schema("daskjob")


def test_vendored_crds_match_the_recorded_hashes() -> None:
    note = (CRDS / "README.md").read_text()
    for name in ("daskcluster.yaml", "daskjob.yaml"):
        digest = hashlib.sha256((CRDS / name).read_bytes()).hexdigest()
        assert re.search(rf"{re.escape(name)} `{digest}`", note), name


def test_daskcluster_matches_its_crd(cluster_schema: dict[str, Any]) -> None:
    doc = load_one(CLUSTER)
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    assert errors(cluster_schema, doc) == []


def test_daskjob_matches_its_crd(job_schema: dict[str, Any]) -> None:
    doc = load_one(JOB)
    assert doc["apiVersion"] == "kubernetes.dask.org/v1"
    assert errors(job_schema, doc) == []


def test_crd_validation_catches_wrong_types_unknown_fields_and_missing_parts(
    cluster_schema: dict[str, Any], job_schema: dict[str, Any]
) -> None:
    bad = copy.deepcopy(load_one(CLUSTER))
    bad["spec"]["worker"]["replicas"] = "four"
    assert any("is not of type 'integer'" in m for m in errors(cluster_schema, bad))
    typo = copy.deepcopy(load_one(CLUSTER))
    typo["spec"]["worker"]["replica"] = 4
    assert any("replica" in m for m in errors(cluster_schema, typo))
    no_service = copy.deepcopy(load_one(CLUSTER))
    del no_service["spec"]["scheduler"]["service"]
    assert any("'service' is a required property" in m for m in errors(cluster_schema, no_service))
    no_job = copy.deepcopy(load_one(JOB))
    del no_job["spec"]["job"]
    assert any("'job' is a required property" in m for m in errors(job_schema, no_job))


def worker_args(doc: dict[str, Any]) -> list[str]:
    (container,) = pod_specs(doc)[-2]["containers"]
    return container["args"]


@pytest.mark.parametrize("path", [CLUSTER, JOB], ids=["daskcluster", "daskjob"])
def test_workers_advertise_the_download_resource(path: Any) -> None:
    args = worker_args(load_one(path))
    assert args[:2] == ["dask", "worker"]
    assert args[args.index("--resources") + 1] == "tcia_http=8"
    assert args.count("--nthreads") == 1
    assert args[args.index("--name") + 1] == "$(DASK_WORKER_NAME)"


@pytest.mark.parametrize("path", [CLUSTER, JOB], ids=["daskcluster", "daskjob"])
def test_scheduler_service_selects_this_clusters_scheduler(path: Any) -> None:
    doc = load_one(path)
    spec = doc["spec"] if doc["kind"] == "DaskCluster" else doc["spec"]["cluster"]["spec"]
    selector = spec["scheduler"]["service"]["selector"]
    # A DaskJob's cluster is named after the DaskJob.
    assert selector == {
        "dask.org/cluster-name": doc["metadata"]["name"],
        "dask.org/component": "scheduler",
    }
    (container,) = spec["scheduler"]["spec"]["containers"]
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in spec["scheduler"]["service"]["ports"]} <= port_names


def test_daskjob_runs_one_sync_with_summary_and_metrics() -> None:
    doc = load_one(JOB)
    (container,) = doc["spec"]["job"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "mirror"
    assert "sync" in args
    for flag in ("--summary-json", "--metrics", "--state-dir", "--dest"):
        assert flag in args, flag
    assert args[args.index("--metrics") + 1].endswith(".prom")
    assert doc["spec"]["job"]["spec"]["restartPolicy"] == "Never"
    claims = [
        v["persistentVolumeClaim"]["claimName"]
        for v in doc["spec"]["job"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    ]
    assert claims == ["tcia-mirror-state"]


def test_job_cluster_and_long_lived_cluster_use_the_same_worker_shape() -> None:
    long_lived = pod_specs(load_one(CLUSTER))
    job = pod_specs(load_one(JOB))[1:]
    for a, b in zip(long_lived, job, strict=True):
        ca, cb = a["containers"][0], b["containers"][0]
        assert (ca["image"], ca["args"], ca["resources"]) == (
            cb["image"],
            cb["args"],
            cb["resources"],
        )
