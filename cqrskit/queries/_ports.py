"""What the query side needs of the read models' store, as ports (decision 0016).

Each port has a blocking and an awaiting form with the same methods: the
sync :class:`~cqrskit.queries.QueryBus` uses the first, the
:class:`~cqrskit.queries.AsyncQueryBus` the second. Every method raises
:class:`~cqrskit.errors.ServiceUnavailable` when the store cannot answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from cqrskit.checkpoints import Checkpoint
from cqrskit.queries._criteria import Criteria

__all__ = ["AsyncCheckpointReader", "AsyncViewReader", "CheckpointReader", "Hits", "ViewReader"]


class CheckpointReader(Protocol):
    """Read-only view of the checkpoints and aliases: what freshness waits read."""

    def serving(self, alias: str) -> str | None:
        """The physical index behind ``alias`` (None before the first build)."""
        ...

    def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints ``projection`` recorded for ``index``, as they are now.

        Empty when nothing is known yet (no checkpoint, or the store is
        still starting up); read in real time, never waiting for a refresh.
        """
        ...


class AsyncCheckpointReader(Protocol):
    """:class:`CheckpointReader`, awaited."""

    async def serving(self, alias: str) -> str | None:
        """The physical index behind ``alias`` (None before the first build)."""
        ...

    async def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints ``projection`` recorded for ``index``, as they are now."""
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
    """Read-only access to the read models' indices: what a :class:`~cqrskit.queries.Read` runs on.

    Matches are :class:`~cqrskit.queries.Criteria`; deleted documents never
    match. Besides :class:`~cqrskit.errors.ServiceUnavailable`, every method
    raises :class:`~cqrskit.errors.PermanentError` when the store refuses
    the request.
    """

    #: Where the store is, for error messages.
    address: str

    def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The stored document ``doc_id`` of ``index`` in real time (None if missing)."""
        ...

    def count(self, index: str, criteria: Criteria) -> int:
        """How many documents of ``index`` match."""
        ...

    def aggregate(
        self, index: str, criteria: Criteria, aggregations: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The results of ``aggregations`` over the matching documents of ``index``."""
        ...

    def page(self, index: str, criteria: Criteria, size: int, cursor: str | None) -> Hits:
        """One page of at most ``size`` matches from one consistent view of ``index``.

        Every document is returned exactly once across the pages of one
        listing, however many.

        Raises:
            BadCursor: the cursor is malformed or can no longer be used.
        """
        ...


class AsyncViewReader(Protocol):
    """:class:`ViewReader`, awaited."""

    #: Where the store is, for error messages.
    address: str

    async def get(self, index: str, doc_id: str) -> dict[str, Any] | None:
        """The stored document ``doc_id`` of ``index`` in real time (None if missing)."""
        ...

    async def count(self, index: str, criteria: Criteria) -> int:
        """How many documents of ``index`` match."""
        ...

    async def aggregate(
        self, index: str, criteria: Criteria, aggregations: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The results of ``aggregations`` over the matching documents of ``index``."""
        ...

    async def page(self, index: str, criteria: Criteria, size: int, cursor: str | None) -> Hits:
        """One page of at most ``size`` matches; see :meth:`ViewReader.page`."""
        ...
