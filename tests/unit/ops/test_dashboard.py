"""ops/grafana/cqrskit.json: an importable dashboard of what cqrskit exposes."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.unit.ops.promql import exposed, unknown

DASHBOARD = Path(__file__).resolve().parents[3] / "ops" / "grafana" / "cqrskit.json"
DATASOURCE = {"type": "prometheus", "uid": "${DS_PROMETHEUS}"}
#: Grafana's own variables, as the durations they stand for.
GRAFANA_DURATIONS = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "6h"}
LABEL_VALUES = re.compile(r"label_values\((?P<metric>\w+),\s*(?P<label>\w+)\)")


def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[dict[str, Any]]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])


def exprs() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", [])]


def datasources(node: object) -> Iterator[object]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            else:
                yield from datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from datasources(item)


def test_the_datasource_is_an_input_chosen_on_import() -> None:
    board = dashboard()
    assert board["__inputs"] == [
        {
            "name": "DS_PROMETHEUS",
            "label": "Prometheus",
            "description": board["__inputs"][0]["description"],
            "type": "datasource",
            "pluginId": "prometheus",
            "pluginName": "Prometheus",
        }
    ]
    assert board["id"] is None, "an exported dashboard has no id: Grafana gives one on import"
    assert board["uid"]
    assert board["title"]
    builtin = {"type": "grafana", "uid": "-- Grafana --"}  # the annotations of the dashboard
    assert {json.dumps(d) for d in datasources(board)} == {
        json.dumps(DATASOURCE),
        json.dumps(builtin),
    }
    for panel in panels():
        if panel["type"] != "row":
            assert panel["datasource"] == DATASOURCE, panel["title"]
            assert all(t["datasource"] == DATASOURCE for t in panel["targets"]), panel["title"]


def test_panels_tile_the_grid() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(pos["x"], pos["x"] + pos["w"])
            for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def test_every_variable_a_query_uses_is_defined() -> None:
    variables = {variable["name"] for variable in dashboard()["templating"]["list"]}
    used = {name for expr in exprs() for name in re.findall(r"\$(\w+)", expr)}
    assert used - variables - {name.lstrip("$") for name in GRAFANA_DURATIONS} == set()


@pytest.mark.parametrize("expr", exprs())
def test_a_panel_reads_only_series_and_labels_cqrskit_exposes(expr: str) -> None:
    for variable, duration in GRAFANA_DURATIONS.items():
        expr = expr.replace(variable, duration)
    assert unknown(expr, exposed()) == []


def test_a_variable_lists_the_values_of_a_label_cqrskit_exposes() -> None:
    series = exposed()
    for variable in dashboard()["templating"]["list"]:
        found = LABEL_VALUES.fullmatch(variable["query"]["query"])
        assert found, variable["name"]
        assert found["label"] in series.get(found["metric"], ()), variable["name"]


def test_every_metric_of_cqrskit_has_a_panel() -> None:
    shown = " ".join(exprs())
    families = {re.sub(r"_(total|bucket|count|sum|created)$", "", name) for name in exposed()}
    assert {family for family in families if family not in shown} == set()
