"""What the projection stage needs of the outside world, as ports (decision 0016).

A read model's documents (:class:`DocumentStore`, the records
:class:`DocState` and :class:`Written` it trades in) and its checkpoints
(:class:`CheckpointStore`). Each document carries, under
:data:`~cqrskit.projections.METADATA_FIELD`, the last version it applied
from every source aggregate, the position of the last event it applied,
events that were dead-lettered, and a deletion flag (a deleted document
stays as a tombstone so that a re-delivered old event cannot bring it back).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import BaseModel

from cqrskit.checkpoints import Checkpoint
from cqrskit.envelope import Envelope
from cqrskit.projections._mapping import METADATA_FIELD
from cqrskit.subscription import Message

__all__ = [
    "BEGINNING",
    "STORE_STREAM",
    "CheckpointStore",
    "DeadLetter",
    "DeadLetters",
    "DocState",
    "DocumentStore",
    "ReadModel",
    "RebuildStateStore",
    "StoredEvents",
    "TopicOffsets",
    "WorkerStats",
    "Written",
]


#: The stream name of events replayed from the event store (rebuilds, verify).
STORE_STREAM = "store"


@dataclass
class DocState:
    """One document as a batch sees it, and whether the batch changed it."""

    doc_id: str
    view: BaseModel | None = None
    sources: dict[str, int] = field(default_factory=dict)
    failed: dict[str, list[int]] = field(default_factory=dict)
    position: int = 0
    deleted: bool = False
    seq_no: int | None = None
    primary_term: int | None = None
    dirty: bool = False
    #: The document's fields as they were read (None for a new document).
    stored: dict[str, Any] | None = None
    #: Write the fields back as they were read, with only the guards new:
    #: Elasticsearch refused the view this batch made of them.
    as_stored: bool = False

    @classmethod
    def of_stored(
        cls,
        doc_id: str,
        source: dict[str, Any],
        view: type[BaseModel],
        versions: tuple[int | None, int | None] = (None, None),
    ) -> DocState:
        """The state of a stored document: the inverse of :meth:`body`.

        ``versions`` is the store's (sequence number, primary term) of it.
        """
        body = dict(source)
        meta = body.pop(METADATA_FIELD, {}) or {}
        sources = meta.get("sources") or {}
        deleted = bool(meta.get("deleted"))
        return cls(
            doc_id=doc_id,
            view=None if deleted else view.model_validate(body),
            sources=dict(sources.get("applied") or {}),
            failed={k: list(v) for k, v in (sources.get("failed") or {}).items()},
            position=int(meta.get("position") or 0),
            deleted=deleted,
            seq_no=versions[0],
            primary_term=versions[1],
            stored=body,
        )

    def applied(self, stream: str, position: int) -> bool:
        """True if the event at ``position`` of ``stream`` already took effect here.

        A stream (a Kafka partition, or the event store itself during a
        rebuild) delivers positions in increasing order, so remembering the
        last position applied per stream is enough; the store's mark covers
        every stream, since a replay of the store applies a whole prefix.
        """
        mark = max(self.sources.get(stream, 0), self.sources.get(STORE_STREAM, 0))
        return position <= mark and position not in self.failed.get(stream, ())

    def body(self) -> dict[str, Any]:
        """The JSON document to store."""
        document: dict[str, Any]
        if self.as_stored:
            document = dict(self.stored or {})
        else:
            document = {} if self.view is None else self.view.model_dump(mode="json")
        document[METADATA_FIELD] = {
            "sources": {"applied": self.sources, "failed": self.failed},
            "position": self.position,
            "deleted": self.deleted or self.view is None,
        }
        return document


@dataclass(frozen=True)
class Written:
    """What a guarded write could not do: documents to read and fold again, and refusals."""

    #: Ids another writer changed after they were read.
    conflicts: set[str] = field(default_factory=set)
    #: Id -> why the store refused that document for good (nothing was written).
    refused: dict[str, str] = field(default_factory=dict)


class DocumentStore(Protocol):
    """Where a projection's documents live: guarded reads and writes."""

    def load(self, ids: Iterable[str], index: str | None = None) -> dict[str, DocState]:
        """Current state of the documents (empty states for missing ones)."""
        ...

    def write(self, docs: Sequence[DocState], index: str | None = None) -> Written:
        """Write changed documents; say which conflicted and which were refused."""
        ...


@dataclass(frozen=True)
class DeadLetter:
    """One dead-lettered event, as listed by ``cqrskit projections dlq list``."""

    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]

    @property
    def error(self) -> str:
        """Why the handler failed, in one line."""
        return self.headers.get("dlq.error", b"").decode(errors="replace").partition("\n")[0]

    @property
    def traceback(self) -> str:
        """The handler's traceback, when it raised (empty otherwise)."""
        kept = self.headers.get("dlq.traceback")
        if kept is not None:
            return kept.decode(errors="replace")
        return self.headers.get("dlq.error", b"").decode(errors="replace").partition("\n")[2]

    @property
    def source(self) -> str:
        """topic[partition]@offset the event was consumed from."""
        topic, partition, offset = (
            self.headers.get(f"dlq.{name}", b"?").decode()
            for name in ("topic", "partition", "offset")
        )
        return f"{topic}[{partition}]@{offset}"


class DeadLetters(Protocol):
    """Where one projection's dead letters go: events it could not apply, with why.

    Writing is two steps: :meth:`send` queues letters, :meth:`flush` returns
    only once each one was durably written, and raises otherwise. Callers
    mark an event failed, or commit past it, only after :meth:`flush`
    returned.
    """

    #: Where the letters are kept (named in messages).
    topic: str

    def send(self, message: Message, handler: str, error: str) -> None:
        """Queue ``message`` as a dead letter with the reason; see :meth:`flush`."""
        ...

    def resend(self, letter: DeadLetter, handler: str, error: str) -> None:
        """Queue a dead letter again (it failed again on replay), with the new reason."""
        ...

    def flush(self) -> None:
        """Return once every queued letter was written.

        Raises:
            DeadLetterRefused: a letter was refused for good.
            ServiceUnavailable: no acknowledgement came in time.
        """
        ...

    def pending(self, *, include_replayed: bool = False) -> tuple[list[DeadLetter], int]:
        """Dead letters not replayed yet (or all of them), and the offset after the last."""
        ...

    def mark_replayed(self, offset: int) -> None:
        """Record that every dead letter before ``offset`` was replayed."""
        ...


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


class ReadModel(DocumentStore, Protocol):
    """One projection's read model: its documents, its versioned indices behind
    an alias, and its checkpoints.

    Every method raises :class:`~cqrskit.errors.ServiceUnavailable` when the
    store cannot answer (retrying can help) and
    :class:`~cqrskit.errors.PermanentError` for what retrying cannot fix.
    """

    #: The projection's name.
    name: str
    #: The name queries read the read model through.
    alias: str
    #: (index, id, sequence number) of the last document written.
    last_written: tuple[str, str, int] | None

    def ensure(self) -> None:
        """Create version 1 of the index behind the alias, and the checkpoints index."""
        ...

    def create_index(self, index: str, *, alias: bool, loading: bool = False) -> None:
        """Create ``index`` with the view's mapping; optionally as the alias's target.

        With ``loading``, for a rebuild: no replica and no refresh until
        :meth:`serve_settings`, which must come before the index serves.
        """
        ...

    def serve_settings(self, index: str) -> None:
        """Give ``index`` the projection's serving settings (replicas, refresh), then refresh it."""
        ...

    def versions(self) -> list[str]:
        """The physical indices of this read model, oldest first."""
        ...

    def next_version(self) -> str:
        """The name the next version of the index gets."""
        ...

    def serving(self) -> str | None:
        """The index the alias points at (None before the first build)."""
        ...

    def swap(self, to_index: str) -> str | None:
        """Point the alias at ``to_index`` in one atomic step; return the previous index."""
        ...

    def delete_index(self, index: str) -> None:
        """Delete one physical index (never the one behind the alias)."""
        ...

    def refresh(self, index: str | None = None) -> None:
        """Make recent writes to ``index`` (default: the alias) searchable."""
        ...

    def scan(self, index: str | None = None) -> Iterator[DocState]:
        """Every document of ``index`` (default: the alias), tombstones included."""
        ...

    def count(self) -> int:
        """Live documents behind the alias (tombstones not counted)."""
        ...

    def save_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Record how far each partition was applied (after its effects are durable)."""
        ...

    def checkpoints(self, index: str | None = None) -> list[Checkpoint]:
        """The recorded checkpoints of this projection for ``index`` (default: all)."""
        ...

    def stored_checkpoints(self, ids: Iterable[str]) -> list[Checkpoint]:
        """The checkpoints with these ids that exist, read in real time."""
        ...

    def unmapped_fields(self) -> list[str]:
        """The view's fields (dotted paths) that the serving index's mapping lacks.

        Empty when the mapping fits, or when no index serves yet. A worker
        refuses to start on a view that gained a field its index does not
        map: every document with it would be refused.
        """
        ...


class RebuildStateStore(Protocol):
    """Where rebuilds keep their progress, one JSON record per projection.

    An interrupted rebuild reads it to resume where it stopped. Every method
    raises :class:`~cqrskit.errors.ServiceUnavailable` when the store cannot
    answer.
    """

    def ensure(self) -> None:
        """Create the store if it does not exist yet; idempotent."""
        ...

    def read(self, projection: str) -> dict[str, Any] | None:
        """The recorded progress of ``projection``'s rebuild, read in real time (None if none)."""
        ...

    def save(self, projection: str, fields: dict[str, Any]) -> None:
        """Replace the recorded progress of ``projection``'s rebuild."""
        ...


class WorkerStats(Protocol):
    """Where a worker's telemetry keeps what ``cqrskit status`` shows, and how it
    times a write becoming searchable. Best effort: neither method raises.
    """

    def write_samples(self, projection: str, instance: str, body: dict[str, Any]) -> None:
        """Keep one worker instance's recent stage samples (replacing the last ones).

        ``body`` holds ``samples`` (stage -> seconds) and ``updated_at`` (ISO 8601).
        """
        ...

    def searchable(self, index: str, doc_id: str, seq_no: int) -> bool | None:
        """Whether a search finds the document at ``seq_no`` or later (None: cannot ask now)."""
        ...

    def read_samples(self, projection: str, max_age_seconds: float) -> list[dict[str, list[float]]]:
        """The samples (stage -> seconds) of each instance heard from within the age.

        Raises:
            ServiceUnavailable: the store cannot answer.
        """
        ...


class StoredEvents(Protocol):
    """One application's event store read in commit order: what rebuilds and
    verification replay (the source of truth, whatever Kafka still retains).
    """

    def head(self) -> int:
        """The position of the last stored event (0 if none).

        Raises:
            ServiceUnavailable: the store cannot answer.
        """
        ...

    def envelopes(self, *, after: int = 0, upto: int | None = None) -> Iterator[Envelope]:
        """Every event after ``after`` up to ``upto`` (default: all), in position order.

        Raises:
            ServiceUnavailable: the store cannot answer.
        """
        ...


#: An offset that means "the first message the partition still holds".
BEGINNING = -2


class TopicOffsets(Protocol):
    """A rebuild's and a status's view of one projection's topics, keyed by
    partition key (``topic/n``): the live group's offsets, the ends, and a
    replay of the messages between.
    """

    def committed(self) -> dict[str, int]:
        """The live group's committed offset per partition (:data:`BEGINNING` if none).

        Creates the topics first if they are missing.

        Raises:
            ServiceUnavailable: the cluster did not answer in time.
        """
        ...

    def ends(self) -> dict[str, int]:
        """The offset the next message of each partition will get.

        Raises:
            ServiceUnavailable: the cluster did not answer in time.
        """
        ...

    def lag(self) -> int:
        """Messages of the existing topics the live group has not committed past.

        Raises:
            ServiceUnavailable: the cluster did not answer in time.
        """
        ...

    def replay(
        self, start: Mapping[str, int], ends: Mapping[str, int], batch_size: int
    ) -> Iterator[Sequence[Message]]:
        """The messages from ``start`` (:data:`BEGINNING` where absent) up to ``ends``,
        in batches of at most ``batch_size``, offset order per partition; the
        iteration ends once every partition reached its end.

        Raises:
            ServiceUnavailable: the cluster did not answer in time.
        """
        ...


def reason_headers(handler: str, error: str) -> dict[str, bytes]:
    """The headers a dead letter carries for why it failed.

    ``error`` is one line, then possibly the handler's traceback: the line
    goes to ``dlq.error``, the traceback to ``dlq.traceback``.
    """
    reason, _, trace = error.partition("\n")
    headers = {"dlq.handler": handler.encode(), "dlq.error": reason[:4000].encode()}
    if trace:
        headers["dlq.traceback"] = trace[-8000:].encode()
    return headers
