"""Checkpoints in memory: the second implementation of the checkpoint ports."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from cqrskit.checkpoints import Checkpoint

__all__ = [
    "AsyncMemoryCheckpointReader",
    "MemoryCheckpointLog",
    "MemoryCheckpointReader",
    "MemoryCheckpointStore",
]


@dataclass
class MemoryCheckpointLog:
    """The checkpoints of every projection and the aliases, shared by stores and readers."""

    checkpoints: dict[str, Checkpoint] = field(default_factory=dict)
    #: alias -> the physical index behind it.
    aliases: dict[str, str] = field(default_factory=dict)


class MemoryCheckpointStore:
    """A :class:`~cqrskit.projections.CheckpointStore` of one projection, in a dict."""

    def __init__(self, log: MemoryCheckpointLog, projection: str):
        self.log = log
        self.projection = projection

    def save(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Record the checkpoints, each replacing the one with its id."""
        for checkpoint in checkpoints:
            self.log.checkpoints[checkpoint.doc_id] = checkpoint

    def read(self, index: str | None = None) -> list[Checkpoint]:
        """This projection's checkpoints for ``index`` (default: every index)."""
        return [
            c
            for c in self.log.checkpoints.values()
            if c.projection == self.projection and c.index and index in (None, c.index)
        ]

    def read_ids(self, ids: Iterable[str]) -> list[Checkpoint]:
        """The checkpoints with these ids that exist."""
        return [self.log.checkpoints[i] for i in sorted(set(ids)) if i in self.log.checkpoints]


class MemoryCheckpointReader:
    """A :class:`~cqrskit.queries.CheckpointReader` over a :class:`MemoryCheckpointLog`."""

    def __init__(self, log: MemoryCheckpointLog):
        self.log = log

    def serving(self, alias: str) -> str | None:
        """The index behind ``alias`` (None if there is none)."""
        return self.log.aliases.get(alias)

    def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints ``projection`` recorded for ``index``."""
        return [
            c
            for c in self.log.checkpoints.values()
            if c.projection == projection and c.index == index
        ]


class AsyncMemoryCheckpointReader:
    """:class:`MemoryCheckpointReader`, awaited (for the async bus in tests)."""

    def __init__(self, log: MemoryCheckpointLog):
        self.reader = MemoryCheckpointReader(log)

    async def serving(self, alias: str) -> str | None:
        """The index behind ``alias`` (None if there is none)."""
        return self.reader.serving(alias)

    async def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints ``projection`` recorded for ``index``."""
        return self.reader.applied(projection, index)
