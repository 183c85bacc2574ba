"""An in-memory read model: the reference fold that verification compares against."""

from __future__ import annotations

import copy
from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections._applier import Applier
from cqrskit.projections._ports import DocState, Written
from cqrskit.projections._projection import Projection

__all__ = ["MemoryReadModel", "fold"]


class MemoryReadModel:
    """Documents in a dict, with the same guarded load/write as Elasticsearch's."""

    def __init__(self) -> None:
        self.docs: dict[str, DocState] = {}

    def load(self, ids: Iterable[str], index: str | None = None) -> dict[str, DocState]:
        """Copies of the documents (empty states for missing ones)."""
        return {i: copy.deepcopy(self.docs[i]) if i in self.docs else DocState(i) for i in ids}

    def write(self, docs: Sequence[DocState], index: str | None = None) -> Written:
        """Store the documents; never conflicts (one writer), never refuses."""
        for doc in docs:
            doc.dirty = False
            self.docs[doc.doc_id] = doc
        return Written()

    def views(self) -> dict[str, BaseModel]:
        """Live documents (tombstones left out) by id."""
        return {i: d.view for i, d in self.docs.items() if d.view is not None and not d.deleted}


def fold(
    projection: Projection[Any], envelopes: Iterable[Envelope], batch: int = 1000
) -> dict[str, BaseModel]:
    """The documents ``projection`` makes of ``envelopes``, computed afresh in memory."""
    store = MemoryReadModel()
    applier = Applier(projection, store, retries=1)
    pending: list[Envelope] = []
    for envelope in envelopes:
        pending.append(envelope)
        if len(pending) >= batch:
            applier.apply(pending)
            pending = []
    if pending:
        applier.apply(pending)
    return store.views()
