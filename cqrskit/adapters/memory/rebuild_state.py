"""Rebuild progress in memory: the second implementation of ``RebuildStateStore``."""

from __future__ import annotations

import copy
from typing import Any

__all__ = ["MemoryRebuildStates"]


class MemoryRebuildStates:
    """A :class:`~cqrskit.projections.RebuildStateStore` in a dict."""

    def __init__(self) -> None:
        self.states: dict[str, dict[str, Any]] = {}

    def ensure(self) -> None:
        """Nothing to create."""

    def read(self, projection: str) -> dict[str, Any] | None:
        """A copy of the recorded progress (None if none)."""
        found = self.states.get(projection)
        return copy.deepcopy(found) if found is not None else None

    def save(self, projection: str, fields: dict[str, Any]) -> None:
        """Replace the recorded progress."""
        self.states[projection] = copy.deepcopy(fields)
