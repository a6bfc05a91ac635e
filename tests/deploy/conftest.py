"""Fixtures for the offline validation of deploy/."""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import pytest
import yaml
from deploy_helpers import K8S, load_all, load_one


@pytest.fixture(scope="session")
def kustomized() -> list[dict[str, Any]]:
    """`kubectl kustomize deploy/k8s`, or the listed resources when kubectl is absent."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        base = load_one(K8S / "kustomization.yaml")
        return [doc for rel in base["resources"] for doc in load_all(K8S / rel)]
    proc = subprocess.run(
        [kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=True, timeout=120
    )
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc is not None]
