"""ops/prometheus/alerts.yml: a Prometheus rule file that reads only what cqrskit exposes."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.unit.ops.promql import exposed, unknown

ROOT = Path(__file__).resolve().parents[3]
RULES = ROOT / "ops" / "prometheus" / "alerts.yml"
RULE_TESTS = Path(__file__).with_name("alerts_test.yml")
DURATION = re.compile(r"^(\d+[smhdwy])+$")
SEVERITIES = {"critical", "warning"}


def rules() -> list[dict[str, Any]]:
    return [
        rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]
    ]


def test_the_file_has_the_structure_of_a_prometheus_rule_file() -> None:
    document = yaml.safe_load(RULES.read_text())
    assert list(document) == ["groups"]
    names = [group["name"] for group in document["groups"]]
    assert len(names) == len(set(names)), names
    for group in document["groups"]:
        assert set(group) == {"name", "rules"}, group["name"]
        assert group["rules"], f"group {group['name']} has no rule"
    alerts = [rule["alert"] for rule in rules()]
    assert len(alerts) == len(set(alerts)), alerts
    for rule in rules():
        name = rule["alert"]
        assert set(rule) == {"alert", "expr", "for", "labels", "annotations"}, name
        assert re.fullmatch(r"Cqrskit[A-Z]\w+", name), name
        assert DURATION.match(str(rule["for"])), f"{name}: for {rule['for']!r}"
        assert rule["labels"]["severity"] in SEVERITIES, name
        assert set(rule["annotations"]) == {"summary", "description"}, name
        assert all(text.strip() for text in rule["annotations"].values()), name


@pytest.mark.parametrize("rule", rules(), ids=lambda rule: rule["alert"])
def test_a_rule_reads_only_series_and_labels_cqrskit_exposes(rule: dict[str, Any]) -> None:
    assert unknown(rule["expr"], exposed()) == []


def test_every_alert_has_a_test_that_makes_it_fire() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired = {
        case["alertname"]
        for test in tests
        for case in test["alert_rule_test"]
        if case.get("exp_alerts")
    }
    assert {rule["alert"] for rule in rules()} - fired == set()


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)


@pytest.fixture(scope="module")
def promtool() -> str:
    # Debian's prometheus package, unpacked into the cache once (a few seconds).
    found = run("bash", str(ROOT / "scripts" / "promtool.sh"))
    assert found.returncode == 0, found.stderr
    return found.stdout.strip()


def test_promtool_accepts_the_rules(promtool: str) -> None:
    checked = run(promtool, "check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules())} rules found" in checked.stdout


def test_each_alert_fires_where_it_must_and_nowhere_else(promtool: str) -> None:
    tested = run(promtool, "test", "rules", str(RULE_TESTS))
    assert tested.returncode == 0, tested.stdout + tested.stderr
