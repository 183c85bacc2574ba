"""What cqrskit exposes to Prometheus, and what a PromQL expression reads of it."""

from __future__ import annotations

from dataclasses import dataclass, field

import promql_parser as promql
from prometheus_client.metrics import MetricWrapperBase

from cqrskit.observability import _metrics

#: The labels Prometheus adds to every series it scrapes.
TARGET_LABELS = frozenset({"instance", "job"})
#: Prometheus's own series about each target.
PROMETHEUS_SERIES = {"up": TARGET_LABELS}


def exposed() -> dict[str, frozenset[str]]:
    """Every series cqrskit's metrics expose, as scraped: name -> its label names.

    Each metric gets one child for the time it is collected, so the names
    are the client library's own: ``_total`` on counters, ``_bucket`` (with
    ``le``), ``_count`` and ``_sum`` on histograms, a state label on enums.
    """
    series: dict[str, frozenset[str]] = {}
    for metric in vars(_metrics).values():
        if not isinstance(metric, MetricWrapperBase):
            continue
        values = ("probe",) * len(metric._labelnames)
        metric.labels(*values)
        try:
            for family in metric.collect():
                for sample in family.samples:
                    if sample.labels.get(metric._labelnames[0]) == "probe":
                        series[sample.name] = frozenset(sample.labels) | TARGET_LABELS
        finally:
            metric.remove(*values)
    return series


@dataclass
class Reads:
    """The series an expression selects, and the labels it groups or matches on."""

    selectors: list[tuple[str, frozenset[str]]] = field(default_factory=list)
    grouping: set[str] = field(default_factory=set)


def reads(expr: str) -> Reads:
    """Parse ``expr`` (raises ValueError if it is not PromQL) and collect what it reads."""
    found = Reads()
    _walk(promql.parse(expr), found)
    return found


def _walk(node: object, found: Reads) -> None:
    if isinstance(node, promql.VectorSelector):
        matchers = node.matchers.matchers + [m for ms in node.matchers.or_matchers for m in ms]
        name = node.name or next(m.value for m in matchers if m.name == "__name__")
        found.selectors.append((name, frozenset(m.name for m in matchers) - {"__name__"}))
    elif isinstance(node, promql.MatrixSelector):
        _walk(node.vector_selector, found)
    elif isinstance(node, promql.Call):
        for arg in node.args:
            _walk(arg, found)
    elif isinstance(node, promql.AggregateExpr):
        if node.modifier is not None:
            found.grouping |= set(node.modifier.labels)
        _walk(node.expr, found)
        if node.param is not None:
            _walk(node.param, found)
    elif isinstance(node, promql.BinaryExpr):
        if node.modifier is not None:
            if node.modifier.matching is not None:
                found.grouping |= set(node.modifier.matching.labels)
            found.grouping |= set(node.modifier.group_labels or ())
        _walk(node.lhs, found)
        _walk(node.rhs, found)
    elif isinstance(node, promql.ParenExpr | promql.UnaryExpr | promql.SubqueryExpr):
        _walk(node.expr, found)


def unknown(expr: str, series: dict[str, frozenset[str]]) -> list[str]:
    """What ``expr`` reads that cqrskit (or Prometheus itself) does not expose."""
    known = {**series, **PROMETHEUS_SERIES}
    found = reads(expr)
    problems = []
    labels: set[str] = set(TARGET_LABELS)
    for name, matched in found.selectors:
        if name not in known:
            problems.append(f"no series {name}")
            continue
        labels |= known[name]
        problems += [f"{name} has no label {label}" for label in sorted(matched - known[name])]
    problems += [f"no label {label} to group on" for label in sorted(found.grouping - labels)]
    return problems
