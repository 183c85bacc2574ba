"""What the query side needs of the read models' store, as ports (decision 0016)."""

from __future__ import annotations

from typing import Protocol

from cqrskit.checkpoints import Checkpoint

__all__ = ["CheckpointReader"]


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
