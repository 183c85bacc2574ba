"""What ``cqrskit teardown`` removes of one application: a plan first, then the removal.

A plan lists every removal by name, so that what is shown before the
question is exactly what is removed after it; nothing is looked up again
in between. The adapters make the plan of their service and carry it out
(``cqrskit.adapters.<service>.teardown``); ``Runtime.teardown_plan`` joins them.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Removal", "TeardownPlan"]


@dataclass(frozen=True)
class Removal:
    """One thing a teardown removes."""

    #: "PostgreSQL", "Kafka" or "Elasticsearch".
    service: str
    #: What it is: "schema", "table", "rows", "topic", "consumer group",
    #: "index", "alias" or "documents".
    kind: str
    #: Its name (a table's or index's own, for rows and documents).
    name: str
    #: What else a reader should know (what a schema holds, which rows).
    detail: str = ""


@dataclass(frozen=True)
class TeardownPlan:
    """Every removal of one application, and what is kept on purpose (and why)."""

    application: str
    #: The projections whose read models it removes (by name).
    projections: tuple[str, ...]
    removals: tuple[Removal, ...]
    #: One line for each thing deliberately left in place.
    kept: tuple[str, ...] = ()

    def of(self, service: str) -> tuple[Removal, ...]:
        """The removals in ``service``."""
        return tuple(r for r in self.removals if r.service == service)
