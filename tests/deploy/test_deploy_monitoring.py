"""Prometheus rules and the textfile example: parse, and use only the metrics the CLI writes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from typing import Any

import promql_parser
import pytest
from deploy_helpers import DEPLOY, EXIT_CODES, METRICS, load_one
from prometheus_client.parser import text_string_to_metric_families

ALERTS = DEPLOY / "monitoring" / "alerts.yml"
TEXTFILE = DEPLOY / "monitoring" / "textfile-example.prom"


def rules() -> list[dict[str, Any]]:
    return [rule for group in load_one(ALERTS)["groups"] for rule in group["rules"]]


def selectors(expr: str) -> list[str]:
    names: list[str] = []

    def visit(node: Any) -> bool:
        if isinstance(node, promql_parser.VectorSelector):
            names.append(node.name)
        return True

    promql_parser.walk(promql_parser.parse(expr), visit)
    return names


def test_rule_file_structure() -> None:
    doc = load_one(ALERTS)
    assert [g["name"] for g in doc["groups"]] == ["tcia-mirror"]
    names = [r["alert"] for r in rules()]
    assert len(names) == len(set(names))
    for rule in rules():
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}
        assert rule["labels"]["severity"] in {"page", "ticket", "info"}
        assert rule["annotations"]["summary"]
        if "for" in rule:
            assert re.fullmatch(r"[0-9]+[smhd]", rule["for"])


@pytest.mark.parametrize("rule", rules(), ids=lambda r: r["alert"])
def test_expression_parses_and_uses_only_contract_metrics(rule: dict[str, Any]) -> None:
    used = selectors(rule["expr"])
    assert used, "an alert must read at least one metric"
    assert set(used) <= METRICS, set(used) - METRICS


def test_parser_rejects_broken_promql() -> None:
    with pytest.raises(ValueError):
        promql_parser.parse("time() - (tcia_mirror_last_success_timestamp_seconds > 2")


def test_alerts_cover_the_cron_contract() -> None:
    exprs = {r["alert"]: r["expr"] for r in rules()}
    assert (
        "time() - tcia_mirror_last_success_timestamp_seconds" in exprs["TciaMirrorNoRecentSuccess"]
    )
    codes = {
        int(c)
        for e in exprs.values()
        for c in re.findall(r"exit_code(?:\[[^]]*\])?\)? == (\d+)", e)
    }
    assert {1, 5, 6, 75} <= codes
    assert codes <= EXIT_CODES


def test_textfile_example_parses_and_matches_the_contract() -> None:
    families = {f.name: f for f in text_string_to_metric_families(TEXTFILE.read_text())}
    assert set(families) == METRICS
    outcomes = {s.labels["outcome"] for s in families["tcia_mirror_run_series_total"].samples}
    assert {"downloaded", "unchanged", "failed"} <= outcomes
    (code,) = families["tcia_mirror_last_exit_code"].samples
    assert int(code.value) in EXIT_CODES


def test_promtool_check_rules_when_available() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        # .ci/serve-deps.sh installs it: CI fails where a developer's machine skips.
        missing = "promtool is not installed (Debian package `prometheus`; .ci/serve-deps.sh)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(missing)
        pytest.skip(missing)
    proc = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
