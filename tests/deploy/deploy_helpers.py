"""Helpers for the offline validation of deploy/ (a unique module name: tests have no packages)."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
CRDS = Path(__file__).resolve().parent / "crds"

# Kubernetes minor version the manifests are validated against (CronJob timeZone and
# podFailurePolicy are GA there).
KUBE_VERSION = "1.32.0"

# The metric names `mirror sync --metrics` writes (the cron contract).
METRICS = frozenset(
    {
        "tcia_mirror_last_success_timestamp_seconds",
        "tcia_mirror_last_run_timestamp_seconds",
        "tcia_mirror_last_exit_code",
        "tcia_mirror_run_duration_seconds",
        "tcia_mirror_run_series_total",
        "tcia_mirror_run_bytes_downloaded",
        "tcia_mirror_series",
        "tcia_mirror_run_failures",
    }
)

# Exit codes of the CLI contract.
EXIT_CODES = frozenset({0, 1, 2, 3, 4, 5, 6, 75, 130})


def load_all(path: Path) -> list[dict[str, Any]]:
    # libyaml's loader when present: the vendored CRDs are ~0.75 MB of YAML.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return [doc for doc in yaml.load_all(path.read_text(), Loader=loader) if doc is not None]


def load_one(path: Path) -> dict[str, Any]:
    (doc,) = load_all(path)
    return doc


def walk(node: Any) -> Iterator[Any]:
    """Every dict and list nested in a parsed YAML document, depth first."""
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def pod_specs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a CronJob, DaskCluster or DaskJob, for per-pod checks."""
    spec = doc["spec"]
    kind = doc["kind"]
    if kind == "CronJob":
        return [spec["jobTemplate"]["spec"]["template"]["spec"]]
    if kind == "DaskCluster":
        return [spec["worker"]["spec"], spec["scheduler"]["spec"]]
    if kind == "DaskJob":
        cluster = spec["cluster"]["spec"]
        return [spec["job"]["spec"], cluster["worker"]["spec"], cluster["scheduler"]["spec"]]
    return []


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A CRD schema that rejects unknown fields, as the API server's strict field validation does.

    Objects with declared ``properties`` get ``additionalProperties: false`` unless the CRD says
    ``x-kubernetes-preserve-unknown-fields``; apiVersion/kind/metadata are allowed at the root.
    """
    out = copy.deepcopy(schema)
    for node in walk(out):
        if not isinstance(node, dict) or "properties" not in node:
            continue
        if node.get("x-kubernetes-preserve-unknown-fields") or "additionalProperties" in node:
            continue
        node["additionalProperties"] = False
    out["properties"] = {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        **out.get("properties", {}),
    }
    return out


def crd_schema(name: str) -> dict[str, Any]:
    crd = load_one(CRDS / f"{name}.yaml")
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
    return strict_schema(version["schema"]["openAPIV3Schema"])


class CommandMissing(LookupError):
    """The CLI has no such (sub)command yet."""


def parse_mirror_cli(argv: list[str]) -> dict[str, Any]:
    """Parse a ``mirror ...`` argument list with the real Typer/Click app, as the shell would.

    Returns the subcommand's parsed parameters; raises click's UsageError subclasses for an
    unknown option or a bad value, and CommandMissing when the subcommand is not registered.
    """
    import typer.main

    from mirror.cli import app

    # Typer vendors its own copy of click: detect groups by behaviour, not by class.
    group: Any = typer.main.get_command(app)
    ctx = group.make_context("mirror", list(argv))
    rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
    name, sub, sub_args = group.resolve_command(ctx, rest) if rest else (None, None, [])
    if sub is None or name is None:
        raise CommandMissing(str(rest[:1]))
    while hasattr(sub, "resolve_command"):
        sub_ctx = sub.make_context(name, list(sub_args), parent=ctx)
        rest = [*getattr(sub_ctx, "_protected_args", []), *sub_ctx.args]
        name, sub, sub_args = sub.resolve_command(sub_ctx, rest)
        if sub is None or name is None:
            raise CommandMissing(str(rest[:1]))
    return dict(sub.make_context(name, list(sub_args), parent=ctx).params)
