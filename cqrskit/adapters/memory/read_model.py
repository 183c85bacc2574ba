"""A projection's whole read model in memory: the second ``ReadModel``.

Versioned indices behind an alias, guarded writes with sequence numbers
(a write whose document changed since it was read conflicts, as
Elasticsearch's ``if_seq_no`` does), tombstones, and checkpoints per index.
For tests of workers, rebuilds and rollbacks without Elasticsearch; the
reference fold stays :class:`~cqrskit.projections.MemoryReadModel`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from pydantic import BaseModel

from cqrskit.adapters.memory.checkpoints import MemoryCheckpointLog, MemoryCheckpointStore
from cqrskit.checkpoints import Checkpoint
from cqrskit.errors import PermanentError
from cqrskit.projections._ports import DocState, Written
from cqrskit.topology import IndexNames, version_number

__all__ = ["MemoryIndexedReadModel"]


class MemoryIndexedReadModel:
    """A :class:`~cqrskit.projections.ReadModel` of projection ``name`` with view ``view``.

    ``log`` holds the checkpoints and aliases; share it with a
    :class:`~cqrskit.adapters.memory.checkpoints.MemoryCheckpointReader` to
    serve read-your-writes queries from the same state.
    """

    def __init__(
        self,
        name: str,
        view: type[BaseModel],
        names: IndexNames | None = None,
        log: MemoryCheckpointLog | None = None,
    ):
        self.name = name
        self.view = view
        #: Indices created for loading whose serving settings are not restored yet.
        self.loading: set[str] = set()
        #: How many times the index was refreshed (a worker does it at its freshness).
        self.refreshes = 0
        self._names = names or IndexNames("")
        self.alias = self._names.alias(name)
        self.log = log if log is not None else MemoryCheckpointLog()
        self._checkpoints = MemoryCheckpointStore(self.log, name)
        #: index -> doc id -> (sequence number, stored JSON).
        self.indices: dict[str, dict[str, tuple[int, dict[str, Any]]]] = {}
        #: index -> the view's fields when it was created: its "mapping".
        self.mapped: dict[str, set[str]] = {}
        self._seq = 0
        self.last_written: tuple[str, str, int] | None = None

    # -- indices ---------------------------------------------------------------

    def ensure(self) -> None:
        """Create version 1 behind the alias unless the alias exists."""
        if self.serving() is None:
            self.create_index(self._names.index(self.name, 1), alias=True)

    def create_index(self, index: str, *, alias: bool, loading: bool = False) -> None:
        """Create ``index`` (empty); optionally as the alias's target.

        ``loading`` is remembered until :meth:`serve_settings` (memory has no
        replicas or refresh; a test sees whether a rebuild restored them).
        """
        self.indices.setdefault(index, {})
        self.mapped.setdefault(index, _fields(self.view))
        if loading:
            self.loading.add(index)
        if alias:
            self.swap(index)

    def serve_settings(self, index: str) -> None:
        """The index is no longer loading."""
        self.loading.discard(index)

    def versions(self) -> list[str]:
        """The physical indices of this read model, oldest first."""
        return sorted(self.indices, key=version_number)

    def next_version(self) -> str:
        """The name the next version of the index gets."""
        latest = max(map(version_number, self.versions()), default=0)
        return self._names.index(self.name, latest + 1)

    def serving(self) -> str | None:
        """The index the alias points at (None before the first build)."""
        return self.log.aliases.get(self.alias)

    def swap(self, to_index: str) -> str | None:
        """Point the alias at ``to_index``; return the previous index."""
        previous = self.serving()
        self.log.aliases[self.alias] = to_index
        return previous

    def delete_index(self, index: str) -> None:
        """Delete one physical index (never the one behind the alias).

        Raises:
            PermanentError: ``index`` is behind the alias.
        """
        if index == self.serving():
            raise PermanentError(f"{index} is behind the alias {self.alias}; it cannot be deleted")
        self.indices.pop(index, None)

    def refresh(self, index: str | None = None) -> None:
        """Counted only: in memory every write is visible at once.

        Raises:
            PermanentError: there is no such index (as Elasticsearch answers 404).
        """
        self._name(index)
        self.refreshes += 1

    # -- documents -------------------------------------------------------------

    def _name(self, index: str | None) -> str:
        """The physical index meant: ``index``, or the one behind the alias."""
        name = self.serving() if index in (None, self.alias) else index
        if name is None or name not in self.indices:
            raise PermanentError(f"no index {name or self.alias} for read model {self.name!r}")
        return name

    def _index(self, index: str | None) -> dict[str, tuple[int, dict[str, Any]]]:
        return self.indices[self._name(index)]

    def load(self, ids: Iterable[str], index: str | None = None) -> dict[str, DocState]:
        """Current state of the documents (empty states for missing ones)."""
        stored = self._index(index)
        states = {}
        for doc_id in sorted(set(ids)):
            found = stored.get(doc_id)
            states[doc_id] = DocState(doc_id) if found is None else self._state(doc_id, *found)
        return states

    def _state(self, doc_id: str, seq_no: int, source: dict[str, Any]) -> DocState:
        return DocState.of_stored(doc_id, copy.deepcopy(source), self.view, (seq_no, 1))

    def write(self, docs: Sequence[DocState], index: str | None = None) -> Written:
        """Write each document unless it changed since it was read (then: a conflict)."""
        target = self._name(index)
        stored = self.indices[target]
        written = Written()
        for doc in docs:
            found = stored.get(doc.doc_id)
            if (found is None) != (doc.seq_no is None) or (
                found is not None and found[0] != doc.seq_no
            ):
                written.conflicts.add(doc.doc_id)
                continue
            self._seq += 1
            stored[doc.doc_id] = (self._seq, doc.body())
            self.last_written = (target, doc.doc_id, self._seq)
        return written

    def scan(self, index: str | None = None) -> Iterator[DocState]:
        """Every document of ``index`` (default: the alias), tombstones included."""
        for doc_id, found in sorted(self._index(index).items()):
            yield self._state(doc_id, *found)

    def count(self) -> int:
        """Live documents behind the alias (tombstones not counted); 0 if there is none."""
        if self.serving() is None:
            return 0
        return sum(1 for doc in self.scan() if not doc.deleted)

    # -- checkpoints -------------------------------------------------------------

    def save_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Record how far each partition was applied."""
        self._checkpoints.save(checkpoints)

    def checkpoints(self, index: str | None = None) -> list[Checkpoint]:
        """The recorded checkpoints of this projection for ``index`` (default: all)."""
        return self._checkpoints.read(index)

    def stored_checkpoints(self, ids: Iterable[str]) -> list[Checkpoint]:
        """The checkpoints with these ids that exist."""
        return self._checkpoints.read_ids(ids)

    def unmapped_fields(self) -> list[str]:
        """The view's top-level fields that it lacked when the serving index was created."""
        serving = self.serving()
        if serving is None or serving not in self.mapped:
            return []
        return sorted(_fields(self.view) - self.mapped[serving])


def _fields(view: type[BaseModel]) -> set[str]:
    return {info.alias or name for name, info in view.model_fields.items()}
