"""The DICOMweb server's deployments (deploy/k8s/serve, deploy/systemd/tcia-mirror-serve.service):
strict schemas, wiring between Deployment, probes and Service, hardening, and the command
lines parsed by the real CLI."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from deploy_helpers import DEPLOY, K8S, KUBE_VERSION, load_all, load_one, parse_mirror_cli

SERVE = K8S / "serve"
UNIT = DEPLOY / "systemd" / "tcia-mirror-serve.service"


def built() -> list[dict[str, Any]]:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        base = load_one(SERVE / "kustomization.yaml")
        return [doc for rel in base["resources"] for doc in load_all(SERVE / rel)]
    proc = subprocess.run([kubectl, "kustomize", str(SERVE)], capture_output=True, text=True,
                          check=True, timeout=120)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def test_serve_manifests_pass_strict_validation() -> None:
    docs = built()
    assert sorted(d["kind"] for d in docs) == ["Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
    if shutil.which("kubectl"):
        assert {d["metadata"]["namespace"] for d in docs} == {"tcia-mirror"}


def test_service_reaches_the_pods_and_probes_hit_healthz() -> None:
    docs = {d["kind"]: d for d in built()}
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert all(labels[k] == v for k, v in service["spec"]["selector"].items())
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (container,) = pod["spec"]["containers"]
    port_names = {p["name"]: p["containerPort"] for p in container["ports"]}
    (svc_port,) = service["spec"]["ports"]
    assert svc_port["targetPort"] in port_names
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["path"] == "/healthz"
        assert container[probe]["httpGet"]["port"] in port_names
    params = parse_mirror_cli([_k8s_expand(a) for a in container["args"][1:]])
    assert params["port"] == port_names[svc_port["targetPort"]]
    assert params["host"] == "0.0.0.0"  # inside a pod; the Service is the boundary


def test_serve_pod_is_hardened_and_keeps_secrets_out() -> None:
    deployment = next(d for d in built() if d["kind"] == "Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ctx = container["securityContext"]
    assert ctx["readOnlyRootFilesystem"] is True and ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"]["drop"] == ["ALL"]
    assert "limits" in container["resources"]
    for env in container["env"]:
        assert "value" not in env or "TOKEN" not in env["name"]
    token = next(e for e in container["env"] if e["name"] == "MIRROR_SERVE_TOKEN")
    assert token["valueFrom"]["secretKeyRef"]["optional"] is True


def ini(path: Path) -> dict[str, dict[str, str]]:
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in path.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            current[key.strip()] = value.strip()
    return sections


def test_systemd_serve_unit_is_loopback_hardened_and_yields_to_sync() -> None:
    service = ini(UNIT)["Service"]
    assert service["User"] == "tcia-mirror" and service["Restart"] == "on-failure"
    assert service["EnvironmentFile"] == "/etc/tcia-mirror/env"
    assert service["ProtectSystem"] == "strict" and service["NoNewPrivileges"] == "true"
    assert "ReadWritePaths" not in service  # a read-only server writes nothing
    assert int(service["Nice"]) > 5  # the sync unit runs at Nice=5
    argv = shlex.split(service["ExecStart"])
    params = parse_mirror_cli([a.replace("${MIRROR_DEST}", "s3://bucket/tcia")
                               for a in argv[1:]])
    assert params["host"] == "127.0.0.1"
    assert params["state_dir"] == "/var/lib/tcia-mirror"


def test_systemd_analyze_verifies_the_serve_unit(tmp_path: Path) -> None:
    analyze, mirror = shutil.which("systemd-analyze"), shutil.which("mirror")
    if analyze is None or mirror is None:
        pytest.skip("systemd-analyze or the `mirror` console script is not installed")
    copy = tmp_path / UNIT.name
    copy.write_text(UNIT.read_text().replace("/opt/tcia-mirror/venv/bin/mirror", mirror))
    proc = subprocess.run([analyze, "verify", str(copy)], capture_output=True, text=True,
                          timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert [ln for ln in proc.stderr.splitlines() if "tcia-mirror" in ln] == []


def _k8s_expand(arg: str) -> str:
    return "s3://bucket/tcia" if arg == "$(MIRROR_DEST)" else arg
