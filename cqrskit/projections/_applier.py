"""Folding a batch of events into documents: the effectively-once core.

No Kafka here: the worker feeds it from Kafka, a rebuild from PostgreSQL,
a dead-letter replay from the dead-letter topic.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.errors import DocumentsKeptConflicting
from cqrskit.projections._ports import STORE_STREAM, DocState, DocumentStore
from cqrskit.projections._projection import DELETE, UNCHANGED, Outcome, Projection

__all__ = ["Applier", "Failure"]

log = logging.getLogger("cqrskit.projections")


#: Elasticsearch's limit on a document id, in UTF-8 bytes; every backend
#: keeps it, so a fold in memory names the same documents as the worker.
MAX_ID_BYTES = 512


def refused_id(doc_id: object) -> str:
    """Why ``doc_id`` cannot name a document ("" when it can)."""
    if not isinstance(doc_id, str):
        return f"document id {doc_id!r} is a {type(doc_id).__name__}, not a str"
    if not doc_id:
        return "document id is empty"
    size = len(doc_id.encode("utf-8", errors="surrogatepass"))
    if size > MAX_ID_BYTES:
        return f"document id {doc_id[:40]!r}... is {size} bytes, over the {MAX_ID_BYTES} allowed"
    return ""


@dataclass(frozen=True)
class Failure:
    """An event a handler could not apply, with why."""

    envelope: Envelope
    handler: str
    error: str


@dataclass(frozen=True)
class _Step:
    """One event on one document: every handler of the event that targets it.

    The handlers are one step, not one each: the document's stream mark
    advances once the event took effect, so a handler folded after the
    mark moved would be skipped as already applied.
    """

    doc_id: str
    handlers: tuple[Callable[[Envelope, Any], Any], ...]
    envelope: Envelope
    stream: str


#: How much of a handler's traceback a failure keeps (its last lines: where it broke).
_TRACEBACK_CHARS = 3000


def _reason(exc: Exception) -> str:
    """Why a handler failed: one line, then its traceback (the last frames, if long).

    The first line is what tables and messages show; a log line and a dead
    letter keep the rest.
    """
    trace = "".join(traceback.format_exception(exc)).rstrip()
    if len(trace) > _TRACEBACK_CHARS:
        trace = "…" + trace[-_TRACEBACK_CHARS:]
    return f"{type(exc).__name__}: {exc}\n{trace}"


def _by_event(failures: Iterable[Failure]) -> list[Failure]:
    """One failure per event (in position order), its handlers' reasons together."""
    merged: dict[int, Failure] = {}
    for failure in failures:
        first = merged.get(failure.envelope.position)
        if first is None:
            merged[failure.envelope.position] = failure
        else:
            merged[failure.envelope.position] = Failure(
                first.envelope,
                f"{first.handler}, {failure.handler}",
                f"{first.error}; {failure.error}",
            )
    return [merged[p] for p in sorted(merged)]


class Applier:
    """Applies events to one projection's documents, each effect at most once.

    For a batch: read every document the batch touches, fold its events in
    order (skipping those a document already applied), and write the
    changed documents conditionally; documents another writer changed in
    between are read and folded again. A document the read model refuses
    (say, a field its mapping does not allow) is folded again with its
    events failed, and written back as it was with only its guards new.
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
        dead_letter: Callable[[list[Failure]], None] | None = None,
    ) -> list[Failure]:
        """Apply ``envelopes`` (in order); return the events that failed (to dead-letter).

        ``replay=True`` re-applies events that were dead-lettered before.
        ``dead_letter``, if given, is called with the events that failed
        before any write marks them failed on their documents (a marked
        event is skipped when delivered again), and must return only once
        they are kept; if it raises, nothing of the batch is written yet.

        Raises:
            ServiceUnavailable: Elasticsearch is unreachable; nothing is lost,
                the caller retries the same batch.
            DocumentsKeptConflicting: see the class.
            Whatever ``dead_letter`` raises.
        """
        named = streams if streams is not None else [STORE_STREAM] * len(envelopes)
        steps: list[_Step] = []
        failures: dict[tuple[int, str], Failure] = {}
        for envelope, stream in zip(envelopes, named, strict=True):
            made = self._steps(envelope, stream)
            if isinstance(made, Failure):
                failures[(envelope.position, made.handler)] = made
            else:
                steps += made
        refused: dict[str, str] = {}
        handed: set[tuple[int, str]] = set()
        for _ in range(self.MAX_CONFLICT_ROUNDS):
            docs = self.read_model.load({s.doc_id for s in steps}, index=index)
            for step in steps:
                failure = self._fold(docs[step.doc_id], step, replay, refused.get(step.doc_id, ""))
                if failure is not None:
                    failures[(failure.envelope.position, failure.handler)] = failure
            if dead_letter is not None and failures.keys() - handed:
                dead_letter(_by_event(f for k, f in failures.items() if k not in handed))
                handed |= failures.keys()
            written = self.read_model.write([d for d in docs.values() if d.dirty], index=index)
            again = set(written.conflicts)
            for doc_id, reason in written.refused.items():
                # Folded again, its events fail with the reason and only its
                # guards are written; if even those are refused, the events
                # stay failed on no document (replay can still apply them).
                if doc_id not in refused:
                    refused[doc_id] = reason
                    again.add(doc_id)
            if not again:
                return _by_event(failures.values())
            steps = [s for s in steps if s.doc_id in again]
        raise DocumentsKeptConflicting(
            f"{len(steps)} events of {self.projection.name!r} kept conflicting"
        )

    def _steps(self, envelope: Envelope, stream: str) -> list[_Step] | Failure:
        """The event's steps, or why its documents cannot be named.

        Such an event fails as a whole (no document of it can be marked), so
        a replay after the fix applies it to every document it targets.
        """
        by_doc: dict[str, list[Callable[[Envelope, Any], Any]]] = {}
        try:
            for doc_id, handler in self.projection.handlers_for(envelope):
                by_doc.setdefault(doc_id, []).append(handler)
        except Exception as exc:  # a document-id rule's bug must not stop the worker
            return self._failed(
                envelope, "doc_id", f"document id rule: {type(exc).__name__}: {exc}"
            )
        for doc_id in by_doc:
            refused = refused_id(doc_id)
            if refused:
                return self._failed(envelope, "doc_id", refused)
        return [_Step(d, tuple(h), envelope, stream) for d, h in by_doc.items()]

    def _run(self, step: _Step, doc: DocState) -> tuple[Outcome, str, str]:
        """Fold every handler of the step into the document as loaded; (outcome, handler, error).

        All or nothing: a handler that fails leaves the document as it was,
        so a replay runs every handler of the event again, none twice.
        """
        view: Any = doc.view
        outcome: Outcome = UNCHANGED
        for handler in step.handlers:
            name = getattr(handler, "__name__", repr(handler))
            try:
                result = handler(step.envelope, view)
            except Exception as exc:  # a handler's bug must not stop the worker
                return None, name, _reason(exc)
            if result is DELETE:
                view, outcome = None, DELETE
            elif result is not UNCHANGED and result is not None:
                if not isinstance(result, BaseModel):
                    kind = type(result).__name__
                    return None, name, f"handler returned {kind}, not a view, DELETE or UNCHANGED"
                view = outcome = result
        return outcome, "", ""

    def _fold(self, doc: DocState, step: _Step, replay: bool, refused: str) -> Failure | None:
        """Fold one step into ``doc``; the failure, if the event failed on it.

        ``refused`` is why the read model refused the document this batch
        made: the step then fails with it, and the document keeps its
        stored fields.
        """
        envelope = step.envelope
        source = step.stream
        version = envelope.position
        failed_before = version in doc.failed.get(source, ())
        if doc.applied(source, version) or (failed_before and not replay):
            return None
        error, handler_name = refused, "read model"
        doc.as_stored = doc.as_stored or bool(refused)
        for _ in range(0 if refused else self.retries):
            outcome, handler_name, error = self._run(step, doc)
            if error:
                continue
            if outcome is DELETE:
                doc.view = None
                doc.deleted = True
            elif isinstance(outcome, BaseModel):
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
        if not failed_before:
            # Remember it, so that a later replay of the dead letter applies it.
            doc.failed.setdefault(source, []).append(version)
            doc.sources[source] = max(doc.sources.get(source, 0), version)
            doc.dirty = True
        return self._failed(envelope, handler_name, error)

    def _failed(self, envelope: Envelope, handler_name: str, error: str) -> Failure:
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
