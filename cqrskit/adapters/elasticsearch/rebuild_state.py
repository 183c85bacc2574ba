"""Rebuild progress in Elasticsearch: one document per projection, so that a rebuild resumes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from elasticsearch import ApiError, Elasticsearch

from cqrskit.adapters.elasticsearch._errors import translated

__all__ = ["ElasticsearchRebuildStates"]

_STATE_MAPPING = {"dynamic": False, "properties": {"projection": {"type": "keyword"}}}


class ElasticsearchRebuildStates:
    """The :class:`~cqrskit.projections.RebuildStateStore` in index ``index``.

    Every method raises :class:`~cqrskit.errors.ServiceUnavailable` when the
    cluster cannot answer and :class:`~cqrskit.errors.PermanentError` when it
    refuses.
    """

    def __init__(self, es: Elasticsearch, address: str, index: str):
        self.es = es
        #: The client that answers 404 instead of raising (``options()`` builds a client per call).
        self._lenient = es.options(ignore_status=404)
        self.address = address
        self.index = index

    def ensure(self) -> None:
        """Create the index unless it exists (another rebuild may create it first)."""
        with translated(self.address, f"create {self.index}"):
            try:
                if not self.es.indices.exists(index=self.index):
                    self.es.indices.create(
                        index=self.index,
                        mappings=_STATE_MAPPING,
                        settings={"number_of_shards": 1, "number_of_replicas": 0},
                    )
            except ApiError as exc:
                if "resource_already_exists" not in str(exc):
                    raise

    def read(self, projection: str) -> dict[str, Any] | None:
        """The recorded progress of ``projection``'s rebuild, read in real time (None if none)."""
        with translated(self.address, f"read the rebuild state of {projection!r}"):
            found = self._lenient.get(index=self.index, id=projection)
        if not found.get("found"):
            return None
        return {k: v for k, v in found["_source"].items() if k != "updated_at"}

    def save(self, projection: str, fields: dict[str, Any]) -> None:
        """Replace the recorded progress of ``projection``'s rebuild."""
        body = {**fields, "updated_at": datetime.now(UTC).isoformat()}
        with translated(self.address, f"save the rebuild state of {projection!r}"):
            self.es.index(index=self.index, id=projection, document=body)
