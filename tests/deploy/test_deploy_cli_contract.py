"""Every `mirror ...` command line shipped in deploy/ parses with the real CLI.

This is the contract between deploy/ and mirror/cli: an option renamed or removed in the CLI
fails here instead of in a user's 2 a.m. CronJob.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

import pytest
from deploy_helpers import DEPLOY, K8S, CommandMissing, load_all, load_one, parse_mirror_cli

# Stand-ins for the variables Kubernetes / systemd / the shell expand at run time.
SUBSTITUTIONS = {
    "$(MIRROR_DEST)": "s3://bucket/tcia",
    "$(DASK_SCHEDULER_ADDRESS)": "tcp://tcia-mirror-scheduler:8786",
    "${MIRROR_DEST}": "s3://bucket/tcia",
    "$MIRROR_DEST": "s3://bucket/tcia",
}


def expand(args: list[str]) -> list[str]:
    return [SUBSTITUTIONS.get(a, a) for a in args]


def k8s_invocations() -> dict[str, list[str]]:
    found = {}
    for doc in [*load_all(K8S / "cronjob-sync.yaml"), load_one(K8S / "operator/daskjob-sync.yaml")]:
        spec = doc["spec"]
        pod = (
            spec["jobTemplate"]["spec"]["template"]["spec"]
            if "jobTemplate" in spec
            else spec["job"]["spec"]
        )
        (container,) = pod["containers"]
        found[doc["metadata"]["name"]] = container["args"]
    return found


def systemd_invocations() -> dict[str, list[str]]:
    found = {}
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        text = unit.read_text().replace("\\\n", " ")
        (line,) = [ln for ln in text.splitlines() if ln.startswith("ExecStart=")]
        found[unit.name] = shlex.split(line.removeprefix("ExecStart="))
    return found


def cron_invocations() -> dict[str, list[str]]:
    found = {}
    lines = (DEPLOY / "cron" / "tcia-mirror.cron").read_text().splitlines()
    for n, line in enumerate(ln for ln in lines if re.match(r"^[0-9*]", ln)):
        words = shlex.split(line)
        start = next(i for i, w in enumerate(words) if w.endswith("/mirror"))
        end = next(i for i, w in enumerate(words) if w.startswith("2>>"))
        found[f"cron-{n}"] = words[start:end]
    return found


ALL_INVOCATIONS = {**k8s_invocations(), **systemd_invocations(), **cron_invocations()}
# `mirror serve` units are checked in test_deploy_serve.py; these are the sync runs.
INVOCATIONS = {k: v for k, v in ALL_INVOCATIONS.items() if "serve" not in v}


def parse(argv: list[str]) -> dict[str, Any]:
    assert argv[0].endswith("mirror"), argv
    try:
        return parse_mirror_cli(expand(argv[1:]))
    except CommandMissing as exc:
        pytest.skip(f"`mirror {exc}` is not in the CLI yet (being built by another engineer)")


def test_all_shipped_invocations_were_found() -> None:
    assert len(INVOCATIONS) == 7


@pytest.mark.parametrize("name", sorted(INVOCATIONS))
def test_shipped_sync_command_line_parses(name: str) -> None:
    params = parse(INVOCATIONS[name])
    assert params["dest"] == "s3://bucket/tcia"
    assert str(params["summary_json"]).endswith("last-sync.json")
    assert str(params["metrics"]).endswith("tcia_mirror.prom")
    assert params["state_dir"] is not None
    assert params["full"] is ("full" in name or "--full" in INVOCATIONS[name])


def test_an_unknown_option_is_rejected_by_the_same_parser() -> None:
    argv = [*INVOCATIONS["tcia-mirror-nightly"], "--no-such-option"]
    with pytest.raises(Exception, match="No such option"):
        parse(argv)
