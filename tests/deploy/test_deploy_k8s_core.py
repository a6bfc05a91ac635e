"""Core Kubernetes resources in deploy/k8s: kustomize builds, strict schema validation, wiring."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from croniter import croniter
from deploy_helpers import DEPLOY, K8S, KUBE_VERSION, load_all, load_one, pod_specs, walk

ALL_YAML = sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")])


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def as_pod(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


@pytest.mark.parametrize("path", ALL_YAML, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_yaml_file_parses(path: Path) -> None:
    docs = load_all(path)
    assert docs, f"{path} is empty"
    assert all(isinstance(d, dict) for d in docs)


def test_kustomize_builds_the_base() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed on this machine")
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    kinds = sorted(d["kind"] for d in yaml.safe_load_all(proc.stdout) if d)
    assert kinds == [
        "ConfigMap",
        "CronJob",
        "CronJob",
        "DaskCluster",
        "Namespace",
        "PersistentVolumeClaim",
    ]
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    namespaced = [d for d in docs if d["kind"] != "Namespace"]
    assert {d["metadata"]["namespace"] for d in namespaced} == {"tcia-mirror"}


def test_core_resources_pass_strict_schema_validation(kustomized: list[dict[str, Any]]) -> None:
    core = [d for d in kustomized if not d["apiVersion"].startswith("kubernetes.dask.org")]
    assert len(core) == 5
    for doc in core:
        validate(doc)


def test_secret_example_is_valid_and_holds_only_placeholders() -> None:
    docs = load_all(K8S / "secret-example.yaml")
    for doc in docs:
        validate(doc)
        assert doc["kind"] == "Secret"
        secret_values = [v for k, v in doc["stringData"].items() if k != "AWS_ENDPOINT_URL"]
        assert set(secret_values) == {"REPLACE_ME"}
    base = load_one(K8S / "kustomization.yaml")
    assert "secret-example.yaml" not in base["resources"]


def test_pods_inside_operator_resources_are_valid_core_pods() -> None:
    # The operator's CRDs embed core PodSpecs; validate them with the core schemas too.
    for rel in ("operator/daskcluster.yaml", "operator/daskjob-sync.yaml"):
        doc = load_one(K8S / rel)
        for i, spec in enumerate(pod_specs(doc)):
            validate(as_pod(f"{doc['metadata']['name']}-{i}", spec))


def test_strict_validation_rejects_a_typo_and_a_wrong_type(
    kustomized: list[dict[str, Any]],
) -> None:
    cron = by_kind(kustomized, "CronJob")[0]
    typo = yaml.safe_load(yaml.safe_dump(cron))
    typo["spec"]["concurrencyPolicyy"] = "Forbid"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(typo)
    wrong = yaml.safe_load(yaml.safe_dump(cron))
    wrong["spec"]["startingDeadlineSeconds"] = "an hour"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(wrong)


def test_cronjobs_follow_the_cron_contract(kustomized: list[dict[str, Any]]) -> None:
    crons = {d["metadata"]["name"]: d for d in by_kind(kustomized, "CronJob")}
    assert set(crons) == {"tcia-mirror-nightly", "tcia-mirror-weekly-full"}
    for cron in crons.values():
        spec = cron["spec"]
        assert croniter.is_valid(spec["schedule"]), spec["schedule"]
        assert spec["concurrencyPolicy"] == "Forbid"
        assert spec["startingDeadlineSeconds"] > 0
        assert spec["successfulJobsHistoryLimit"] >= 1
        assert spec["failedJobsHistoryLimit"] >= 1
        job = spec["jobTemplate"]["spec"]
        assert 0 < job["activeDeadlineSeconds"] < 86400
        codes = job["podFailurePolicy"]["rules"][0]["onExitCodes"]["values"]
        assert set(codes) == {2, 4, 5, 6, 75}


def test_nightly_and_weekly_schedules_never_fire_on_the_same_day(
    kustomized: list[dict[str, Any]],
) -> None:
    from datetime import UTC, datetime

    crons = {d["metadata"]["name"]: d["spec"]["schedule"] for d in by_kind(kustomized, "CronJob")}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    days: dict[str, set[str]] = {}
    for name, schedule in crons.items():
        it = croniter(schedule, start)
        days[name] = {it.get_next(datetime).date().isoformat() for _ in range(60)}
    assert not days["tcia-mirror-nightly"] & days["tcia-mirror-weekly-full"]
    weekly = sorted(days["tcia-mirror-weekly-full"])[:2]
    assert (datetime.fromisoformat(weekly[1]) - datetime.fromisoformat(weekly[0])).days == 7


def test_the_driver_reaches_the_daskcluster_service(kustomized: list[dict[str, Any]]) -> None:
    (cluster,) = by_kind(kustomized, "DaskCluster")
    (config,) = by_kind(kustomized, "ConfigMap")
    ports = cluster["spec"]["scheduler"]["service"]["ports"]
    (comm,) = [p["port"] for p in ports if p["name"] == "tcp-comm"]
    # The operator names the scheduler Service "<DaskCluster name>-scheduler".
    expected = f"tcp://{cluster['metadata']['name']}-scheduler:{comm}"
    assert config["data"]["DASK_SCHEDULER_ADDRESS"] == expected
    for cron in by_kind(kustomized, "CronJob"):
        (container,) = pod_specs(cron)[0]["containers"]
        args = container["args"]
        assert args[args.index("--scheduler") + 1] == "$(DASK_SCHEDULER_ADDRESS)"
        env = {e["name"] for e in container["env"]}
        # $(VAR) expansion in args only sees variables defined in the container's env.
        assert {"MIRROR_DEST", "DASK_SCHEDULER_ADDRESS"} <= env


def test_every_reference_resolves_to_a_shipped_object(kustomized: list[dict[str, Any]]) -> None:
    configmaps = {d["metadata"]["name"]: d["data"] for d in by_kind(kustomized, "ConfigMap")}
    secrets = {
        d["metadata"]["name"]: d["stringData"] for d in load_all(K8S / "secret-example.yaml")
    }
    claims = {d["metadata"]["name"] for d in by_kind(kustomized, "PersistentVolumeClaim")}
    docs = [*kustomized, load_one(K8S / "operator/daskjob-sync.yaml")]
    seen = 0
    for node in (n for d in docs for n in walk(d) if isinstance(n, dict)):
        if "configMapKeyRef" in node:
            ref = node["configMapKeyRef"]
            assert ref["key"] in configmaps[ref["name"]]
        elif "secretKeyRef" in node:
            ref = node["secretKeyRef"]
            assert ref["key"] in secrets[ref["name"]]
        elif "configMapRef" in node:
            assert node["configMapRef"]["name"] in configmaps
        elif "secretRef" in node:
            assert node["secretRef"]["name"] in secrets
        elif "persistentVolumeClaim" in node:
            assert node["persistentVolumeClaim"]["claimName"] in claims
        else:
            continue
        seen += 1
    assert seen >= 15


def test_no_credentials_are_written_into_manifests(kustomized: list[dict[str, Any]]) -> None:
    docs = [*kustomized, load_one(K8S / "operator/daskjob-sync.yaml")]
    for node in (n for d in docs for n in walk(d) if isinstance(n, dict)):
        name = str(node.get("name", ""))
        if any(word in name for word in ("SECRET", "PASSWORD", "ACCESS_KEY", "TOKEN")):
            assert "value" not in node, f"{name} has a literal value"
            assert "valueFrom" in node
    for (key,) in [(k,) for d in by_kind(kustomized, "ConfigMap") for k in d["data"]]:
        assert not any(word in key for word in ("SECRET", "PASSWORD", "TOKEN"))


def test_every_pod_runs_as_non_root_with_a_locked_down_container() -> None:
    docs = [
        *load_all(K8S / "cronjob-sync.yaml"),
        load_one(K8S / "operator/daskcluster.yaml"),
        load_one(K8S / "operator/daskjob-sync.yaml"),
    ]
    specs = [s for d in docs for s in pod_specs(d)]
    assert len(specs) == 7
    for spec in specs:
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] != 0
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["capabilities"]["drop"] == ["ALL"]
            # A read-only root needs a writable /tmp for Dask spill and download staging.
            assert "/tmp" in {m["mountPath"] for m in container["volumeMounts"]}
            assert "limits" in container["resources"]


def test_state_pvc_is_single_node_block_storage() -> None:
    pvc = load_one(K8S / "pvc.yaml")
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "NFS" in (K8S / "pvc.yaml").read_text()
