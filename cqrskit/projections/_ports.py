"""What the projection stage needs of the outside world, as ports (decision 0016)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from cqrskit.checkpoints import Checkpoint

__all__ = ["CheckpointStore"]


class CheckpointStore(Protocol):
    """Where one projection records how far each partition was applied, per index.

    Every method raises :class:`~cqrskit.errors.ServiceUnavailable` when the
    store cannot answer (retrying can help). Saving is idempotent: a
    checkpoint replaces the one with the same :attr:`Checkpoint.doc_id`.
    """

    def save(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Record the checkpoints (only after the effects they claim are durable)."""
        ...

    def read(self, index: str | None = None) -> list[Checkpoint]:
        """This projection's checkpoints for ``index`` (default: every index), all writes seen.

        Checkpoints from before they belonged to an index are left out.
        """
        ...

    def read_ids(self, ids: Iterable[str]) -> list[Checkpoint]:
        """The checkpoints with these :attr:`Checkpoint.doc_id` s that exist, read in real time."""
        ...
