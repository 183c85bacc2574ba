"""Folding a batch of events into documents: the effectively-once core.

No Kafka here: the worker feeds it from Kafka, a rebuild from PostgreSQL,
a dead-letter replay from the dead-letter topic.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.errors import TransientError
from cqrskit.projections._projection import DELETE, UNCHANGED, Projection
from cqrskit.projections._readmodel import STORE_STREAM, DocState, DocumentStore

__all__ = ["Applier", "Failure"]

log = logging.getLogger("cqrskit.projections")


class DocumentsKeptConflicting(TransientError):
    """Other writers kept changing the same documents; the batch will be retried."""


@dataclass(frozen=True)
class Failure:
    """An event a handler could not apply, with why."""

    envelope: Envelope
    handler: str
    error: str


@dataclass(frozen=True)
class _Step:
    doc_id: str
    handler: Callable[[Envelope, Any], Any]
    envelope: Envelope
    stream: str


class Applier:
    """Applies events to one projection's documents, each effect at most once.

    For a batch: read every document the batch touches, fold its events in
    order (skipping those a document already applied), and write the
    changed documents conditionally; documents another writer changed in
    between are read and folded again.
    """

    MAX_CONFLICT_ROUNDS = 20

    def __init__(self, projection: Projection[Any], read_model: DocumentStore, retries: int):
        self.projection = projection
        self.read_model = read_model
        self.retries = retries

    def apply(
        self,
        envelopes: Sequence[Envelope],
        *,
        streams: Sequence[str] | None = None,
        index: str | None = None,
        replay: bool = False,
    ) -> list[Failure]:
        """Apply ``envelopes`` (in order); return the events that failed (to dead-letter).

        ``replay=True`` re-applies events that were dead-lettered before.

        Raises:
            ServiceUnavailable: Elasticsearch is unreachable; nothing is lost,
                the caller retries the same batch.
            DocumentsKeptConflicting: see the class.
        """
        named = streams if streams is not None else [STORE_STREAM] * len(envelopes)
        steps = [
            _Step(doc_id, handler, envelope, stream)
            for envelope, stream in zip(envelopes, named, strict=True)
            for doc_id, handler in self.projection.handlers_for(envelope)
        ]
        failures: dict[tuple[int, str], Failure] = {}
        for _ in range(self.MAX_CONFLICT_ROUNDS):
            docs = self.read_model.load({s.doc_id for s in steps}, index=index)
            for step in steps:
                failure = self._fold(docs[step.doc_id], step, replay)
                if failure is not None:
                    failures[(failure.envelope.position, failure.handler)] = failure
            conflicts = self.read_model.write([d for d in docs.values() if d.dirty], index=index)
            if not conflicts:
                return list(failures.values())
            steps = [s for s in steps if s.doc_id in conflicts]
        raise DocumentsKeptConflicting(
            f"{len(steps)} events of {self.projection.name!r} kept conflicting"
        )

    def _fold(self, doc: DocState, step: _Step, replay: bool) -> Failure | None:
        envelope = step.envelope
        source = step.stream
        version = envelope.position
        failed_before = version in doc.failed.get(source, ())
        if doc.applied(source, version) or (failed_before and not replay):
            return None
        error = ""
        for _ in range(self.retries):
            try:
                outcome = step.handler(envelope, doc.view)
            except Exception as exc:  # a handler's bug must not stop the worker
                error = f"{type(exc).__name__}: {exc}"
                continue
            if outcome is DELETE:
                doc.view = None
                doc.deleted = True
            elif outcome is not UNCHANGED and outcome is not None:
                if not isinstance(outcome, BaseModel):
                    kind = type(outcome).__name__
                    error = f"handler returned {kind}, not a view, DELETE or UNCHANGED"
                    break
                doc.view = outcome
                doc.deleted = False
            if failed_before:
                doc.failed[source] = [v for v in doc.failed[source] if v != version]
                if not doc.failed[source]:
                    del doc.failed[source]
            doc.sources[source] = max(doc.sources.get(source, 0), version)
            doc.position = max(doc.position, envelope.position)
            doc.dirty = True
            return None
        handler_name = getattr(step.handler, "__name__", repr(step.handler))
        if not failed_before:
            # Remember it, so that a later replay of the dead letter applies it.
            doc.failed.setdefault(source, []).append(version)
            doc.sources[source] = max(doc.sources.get(source, 0), version)
            doc.dirty = True
        log.warning(
            "projection %s: %s failed on %s v%d (position %d): %s",
            self.projection.name,
            handler_name,
            envelope.event_type,
            envelope.aggregate_version,
            envelope.position,
            error,
            extra={
                "projection": self.projection.name,
                "event_id": str(envelope.event_id),
                "event_type": envelope.event_type,
                "position": envelope.position,
                "correlation_id": str(envelope.metadata.correlation_id),
            },
        )
        return Failure(envelope, handler_name, error)
