"""Proving a read model: fold the event store afresh and compare every document."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections._applier import Applier
from cqrskit.projections._memory import MemoryReadModel
from cqrskit.projections._ports import DocState, ReadModel, StoredEvents
from cqrskit.projections._projection import Projection

__all__ = ["Drift", "VerifyReport", "verify"]


@dataclass(frozen=True)
class Drift:
    """One document that differs between the live read model and a fresh fold.

    ``kind`` is ``missing`` (the fold has it, the read model not), ``extra``
    (the other way round), ``different`` (``fields`` name what differs) or
    ``unexplained``: the document records a position at which no event of
    the store changed it (written by something other than the projection).
    """

    doc_id: str
    kind: str  # missing | extra | different | unexplained
    fields: tuple[str, ...] = ()


@dataclass(frozen=True)
class VerifyReport:
    """The outcome of comparing the live read model with a fresh fold of the store.

    ``newer`` counts the documents the live worker changed after ``head``;
    each was compared with a fold up to its own recorded position.
    """

    projection: str
    head: int
    compared: int
    newer: int
    drift: tuple[Drift, ...]

    @property
    def ok(self) -> bool:
        """True when nothing drifted."""
        return not self.drift


_VERIFY_BATCH = 2000


def verify(
    projection: Projection[Any], read_model: ReadModel, events: StoredEvents
) -> VerifyReport:
    """Fold the event store afresh and compare every document with the live one.

    Reads the store's head H first and folds up to it. A live document that
    records a position above H (the live worker changed it while this ran)
    is compared with the fold continued up to that position; one whose
    position no event of the store has, or whose event did not change it,
    is reported ``unexplained``. Read-only and repeatable.

    Raises:
        ServiceUnavailable: PostgreSQL or Elasticsearch cannot answer.
    """
    head = events.head()
    fresh = MemoryReadModel()
    applier = Applier(projection, fresh, retries=1)
    batch: list[Envelope] = []
    for envelope in events.envelopes(upto=head):
        batch.append(envelope)
        if len(batch) >= _VERIFY_BATCH:
            applier.apply(batch)
            batch = []
    applier.apply(batch)
    read_model.refresh()  # the scan sees every write acknowledged before it
    live = {doc.doc_id: doc for doc in read_model.scan()}
    newer = sorted((d for d in live.values() if d.position > head), key=lambda d: d.position)
    expected: dict[str, DocState | None] = {
        doc_id: fresh.docs.get(doc_id) for doc_id in fresh.docs.keys() | live.keys()
    }
    stored: set[int] = set()
    if newer:
        later = events.envelopes(after=head, upto=newer[-1].position)
        expected.update(_fold_to_each(applier, fresh, later, newer, stored))
    drift: list[Drift] = []
    for doc_id in sorted(expected):
        want, got = expected[doc_id], live.get(doc_id)
        if got is not None and got.position > head and not _explained(want, got, stored):
            drift.append(Drift(doc_id, "unexplained", ("position",)))
        else:
            drift += _compare(doc_id, want, got)
    return VerifyReport(projection.name, head, len(expected), len(newer), tuple(drift))


def _fold_to_each(
    applier: Applier,
    fresh: MemoryReadModel,
    envelopes: Iterator[Envelope],
    newer: list[DocState],
    stored: set[int],
) -> dict[str, DocState | None]:
    """Fold on past the head; each newer document's fresh state at its own position.

    ``newer`` is sorted by position; ``stored`` gains every position read.
    """
    expected: dict[str, DocState | None] = {}
    waiting = iter(newer)
    due = next(waiting, None)
    pending: list[Envelope] = []
    for envelope in envelopes:
        if due is not None and envelope.position > due.position:
            applier.apply(pending)
            pending = []
            while due is not None and due.position < envelope.position:
                expected[due.doc_id] = copy.deepcopy(fresh.docs.get(due.doc_id))
                due = next(waiting, None)
        pending.append(envelope)
        stored.add(envelope.position)
    applier.apply(pending)
    while due is not None:
        expected[due.doc_id] = copy.deepcopy(fresh.docs.get(due.doc_id))
        due = next(waiting, None)
    return expected


def _explained(expected: DocState | None, actual: DocState, stored: set[int]) -> bool:
    """True if an event of the store at the document's position changed it."""
    return (
        actual.position in stored and expected is not None and expected.position == actual.position
    )


def _compare(doc_id: str, expected: DocState | None, actual: DocState | None) -> Iterator[Drift]:
    exists = _live_view(expected)
    there = _live_view(actual)
    if exists is not None and there is None:
        yield Drift(doc_id, "missing")
    elif exists is None and there is not None:
        yield Drift(doc_id, "extra")
    elif exists is not None and there is not None:
        want, got = exists.model_dump(mode="json"), there.model_dump(mode="json")
        fields = tuple(sorted(k for k in want.keys() | got.keys() if want.get(k) != got.get(k)))
        if fields:
            yield Drift(doc_id, "different", fields)


def _live_view(doc: DocState | None) -> BaseModel | None:
    if doc is None or doc.deleted:
        return None
    return doc.view
