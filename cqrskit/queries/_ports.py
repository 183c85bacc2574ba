"""What the query side needs of the read models' store, as ports (decision 0016)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from cqrskit.checkpoints import Checkpoint

__all__ = ["CheckpointReader", "Hits", "ViewReader"]


class CheckpointReader(Protocol):
    """Read-only view of the checkpoints and aliases: what freshness waits read.

    Both methods raise :class:`~cqrskit.errors.ServiceUnavailable` when the
    store cannot answer.
    """

    def serving(self, alias: str) -> str | None:
        """The physical index behind ``alias`` (None before the first build)."""
        ...

    def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints ``projection`` recorded for ``index``, as searchable now.

        Empty when nothing is known yet (no checkpoint, or the store is
        still starting up); never waits for recent writes to become visible.
        """
        ...


@dataclass(frozen=True)
class Hits:
    """One page of raw documents as the store returned them (metadata still in)."""

    sources: list[dict[str, Any]]
    #: How many documents match in all.
    total: int
    #: Where the next page starts (None: this was the last page).
    cursor: str | None = None


class ViewReader(Protocol):
    """Read-only access to the read models' indices: what a :class:`Search` runs on.

    ``query`` and ``sort`` are Elasticsearch query DSL clauses, built by
    :class:`Search`. Every method raises
    :class:`~cqrskit.errors.ServiceUnavailable` when the store cannot answer
    and :class:`~cqrskit.errors.PermanentError` when it refuses the request.
    """

    #: Where the store is, for error messages.
    address: str

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The stored document ``doc_id`` of ``index`` in real time (None if missing)."""
        ...

    def count(self, index: str, query: dict[str, Any]) -> int:
        """How many documents of ``index`` match ``query``."""
        ...

    def aggregate(
        self, index: str, query: dict[str, Any], aggregations: dict[str, Any]
    ) -> dict[str, Any]:
        """The results of ``aggregations`` over the documents of ``index`` matching ``query``."""
        ...

    def page(
        self,
        index: str,
        query: dict[str, Any],
        sort: list[dict[str, Any]],
        size: int,
        cursor: str | None,
    ) -> Hits:
        """One page of at most ``size`` matches from one consistent view of ``index``.

        Every document is returned exactly once across the pages of one
        listing, however many.

        Raises:
            BadCursor: the cursor is malformed or can no longer be used.
        """
        ...

    def refresh(self, index: str) -> None:
        """Make what was applied to ``index`` searchable now."""
        ...
