"""A projection worker's stats in memory: the second ``WorkerStats``.

Samples are kept per projection and instance with the time they were
written; documents are those of a :class:`MemorySearch`, searchable as soon
as they are there (memory has no refresh), whatever their sequence number.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from cqrskit.adapters.memory.search import MemorySearch

__all__ = ["MemoryWorkerStats"]


class MemoryWorkerStats:
    """A :class:`~cqrskit.projections.WorkerStats` over ``search``'s documents."""

    def __init__(self, search: MemorySearch | None = None, clock: Callable[[], float] = time.time):
        self.search = search if search is not None else MemorySearch()
        self.clock = clock
        self._samples: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def write_samples(self, projection: str, instance: str, body: dict[str, Any]) -> None:
        """Replace this instance's samples."""
        self._samples[(projection, instance)] = (self.clock(), copy.deepcopy(body))

    def searchable(self, index: str, doc_id: str, seq_no: int) -> bool | None:
        """Whether ``index`` holds ``doc_id`` (None if there is no such index)."""
        if index not in self.search.indices:
            return None
        return self.search.get(index, doc_id) is not None

    def read_samples(self, projection: str, max_age_seconds: float) -> list[dict[str, list[float]]]:
        """The samples of each instance of ``projection`` written within the age."""
        now = self.clock()
        return [
            dict(body.get("samples", {}))
            for (name, _), (written, body) in sorted(self._samples.items())
            if name == projection and now - written <= max_age_seconds
        ]
