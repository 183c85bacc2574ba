"""Checkpoints in Elasticsearch: one document per index, partition and writer.

The write side (:class:`ElasticsearchCheckpointStore`, one per projection)
and the read-only side the queries use (:class:`ElasticsearchCheckpointReader`)
share one index (``IndexNames.checkpoints_index``) and one document shape.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from elastic_transport import ObjectApiResponse
from elasticsearch import ApiError, AsyncElasticsearch, Elasticsearch, TransportError

from cqrskit.adapters.elasticsearch._errors import translated, unavailable
from cqrskit.checkpoints import FILL_WRITER, WORKER_WRITER, Checkpoint
from cqrskit.errors import ServiceUnavailable
from cqrskit.observability import _metrics as metrics
from cqrskit.topology import checkpoint_id

__all__ = [
    "CHECKPOINT_MAPPING",
    "CHECKPOINT_PROPERTIES",
    "AsyncElasticsearchCheckpointReader",
    "ElasticsearchCheckpointReader",
    "ElasticsearchCheckpointStore",
]

CHECKPOINT_PROPERTIES: dict[str, Any] = {
    "projection": {"type": "keyword"},
    "topic": {"type": "keyword"},
    "partition": {"type": "integer"},
    "offset": {"type": "long"},
    "position": {"type": "long"},
    "partitions": {"type": "integer"},
    "topics": {"type": "keyword"},
    "index": {"type": "keyword"},
    "writer": {"type": "keyword"},
    "from_offset": {"type": "long"},
    "searchable": {"type": "long"},
    "updated_at": {"type": "date"},
}
CHECKPOINT_MAPPING = {"dynamic": "strict", "properties": CHECKPOINT_PROPERTIES}


class ElasticsearchCheckpointStore:
    """The :class:`~cqrskit.projections.CheckpointStore` of one projection in Elasticsearch.

    ``index`` is the checkpoints index (created by the read model's
    ``ensure``). Raises :class:`ServiceUnavailable` when the cluster cannot
    be reached or answers 429/5xx, :class:`PermanentError` otherwise.
    """

    def __init__(self, es: Elasticsearch, address: str, index: str, projection: str):
        self.es = es
        #: The client that answers 404 instead of raising (``options()`` builds a client per call).
        self._lenient = es.options(ignore_status=404)
        self.address = address
        self.index = index
        self.projection = projection

    def save(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Record how far each partition was applied (after its effects are durable)."""
        now = datetime.now(UTC).isoformat()
        operations: list[dict[str, Any]] = []
        for c in checkpoints:
            operations.append({"index": {"_index": self.index, "_id": c.doc_id}})
            operations.append(
                {
                    "projection": c.projection,
                    "topic": c.topic,
                    "partition": c.partition,
                    "offset": c.offset,
                    "position": c.position,
                    "partitions": c.partitions,
                    "topics": list(c.topics),
                    "index": c.index,
                    "writer": c.writer,
                    "from_offset": c.from_offset,
                    "searchable": c.searchable,
                    "updated_at": now,
                }
            )
        if operations:
            with self._translated("save checkpoints"):
                response = self.es.bulk(operations=operations)
            if response.get("errors"):
                raise unavailable(self.address, f"checkpoint write of {self.projection!r} failed")

    def read(self, index: str | None = None) -> list[Checkpoint]:
        """The recorded checkpoints of this projection for ``index`` (default: all indices).

        Checkpoints from before they belonged to an index are left out.
        """
        query: dict[str, Any] = {"term": {"projection": self.projection}}
        if index is not None:
            query = {"bool": {"filter": [query, {"term": {"index": index}}]}}
        with self._translated("read checkpoints"):
            if not self.es.indices.exists(index=self.index):
                return []
            self.es.indices.refresh(index=self.index)
            found = self.es.search(index=self.index, query=query, size=10_000)
        return [
            checkpoint_of(h["_source"]) for h in found["hits"]["hits"] if h["_source"].get("index")
        ]

    def read_ids(self, ids: Iterable[str]) -> list[Checkpoint]:
        """The checkpoint documents with these ids that exist, read in real time."""
        wanted = sorted(set(ids))
        if not wanted:
            return []
        with self._translated("read checkpoints"):
            found = self._lenient.mget(index=self.index, ids=wanted)
        return [checkpoint_of(d["_source"]) for d in found.get("docs", []) if d.get("found")]

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Driver errors become cqrskit's, named by what we were doing; timed per projection."""
        started = time.perf_counter()
        with translated(self.address, f"{doing} of read model {self.projection!r}"):
            yield
        metrics.projection_es_seconds.labels(self.projection, doing).observe(
            time.perf_counter() - started
        )


def _applied_query(projection: str, index: str) -> dict[str, Any]:
    return {"bool": {"filter": [{"term": {"projection": projection}}, {"term": {"index": index}}]}}


def _ids_of(hits: list[Checkpoint], index: str) -> list[str] | None:
    """Every checkpoint id the index may have, from what its checkpoints say (None: not yet known).

    Each checkpoint names every topic of the projection and its own topic's
    partition count; once each topic has been heard from, the ids of every
    partition and writer follow, and reading them by id is real time.
    """
    if not hits:
        return None
    partitions: dict[str, int] = {}
    for hit in hits:
        partitions[hit.topic] = max(partitions.get(hit.topic, 0), hit.partitions)
    topics = set(hits[0].topics) or set(partitions)
    if any(partitions.get(topic, 0) == 0 for topic in topics):
        return None
    return [
        checkpoint_id(index, topic, partition, writer)
        for topic in sorted(topics)
        for partition in range(partitions[topic])
        for writer in (WORKER_WRITER, FILL_WRITER)
    ]


class _ReaderBase:
    """What the sync and the async checkpoint readers share: the ids known per index."""

    index: str
    address: str

    def __init__(self) -> None:
        #: (projection, index) -> every checkpoint id it may have, once known.
        self._ids: dict[tuple[str, str], list[str]] = {}

    def _learn(self, projection: str, index: str, hits: list[Checkpoint]) -> list[Checkpoint]:
        ids = _ids_of(hits, index)
        if ids is not None:
            self._ids[(projection, index)] = ids
        return hits

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        return unavailable(self.address, str(exc))


class ElasticsearchCheckpointReader(_ReaderBase):
    """The query side's :class:`~cqrskit.queries.CheckpointReader` in Elasticsearch.

    Reads checkpoints by id, in real time, once their ids are known (a search,
    which waits for nothing, finds them at first). Raises
    :class:`ServiceUnavailable` when the cluster cannot answer.
    """

    def __init__(self, es: Elasticsearch, index: str, address: str = "the cluster"):
        super().__init__()
        self.es = es
        #: The client that answers 404 instead of raising (``options()`` builds a client per call).
        self._lenient = es.options(ignore_status=404)
        self.index = index
        self.address = address

    def serving(self, alias: str) -> str | None:
        """The physical index behind ``alias`` (None before the first build)."""
        try:
            found = self._lenient.indices.get_alias(name=alias)
        except (ApiError, TransportError) as exc:
            raise self._unavailable(exc) from exc
        if found.meta.status == 404:
            return None
        return next(iter(found.body), None)

    def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints of ``projection`` for ``index`` as they are now (real time)."""
        try:
            ids = self._ids.get((projection, index))
            if ids is not None:
                found = self._lenient.mget(index=self.index, ids=ids)
                return self._learn(projection, index, _docs(found))
            searched = self._lenient.search(
                index=self.index, query=_applied_query(projection, index), size=10_000
            )
        except ApiError as exc:
            if exc.meta.status == 503:
                return []  # a checkpoint shard is still starting: nothing is known yet
            raise self._unavailable(exc) from exc
        except TransportError as exc:
            raise self._unavailable(exc) from exc
        return self._learn(projection, index, _hits(searched))


class AsyncElasticsearchCheckpointReader(_ReaderBase):
    """:class:`ElasticsearchCheckpointReader`, awaited, on ``AsyncElasticsearch``."""

    def __init__(self, es: AsyncElasticsearch, index: str, address: str = "the cluster"):
        super().__init__()
        self.es = es
        #: The client that answers 404 instead of raising (``options()`` builds a client per call).
        self._lenient = es.options(ignore_status=404)
        self.index = index
        self.address = address

    async def serving(self, alias: str) -> str | None:
        """The physical index behind ``alias`` (None before the first build)."""
        try:
            found = await self._lenient.indices.get_alias(name=alias)
        except (ApiError, TransportError) as exc:
            raise self._unavailable(exc) from exc
        if found.meta.status == 404:
            return None
        return next(iter(found.body), None)

    async def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints of ``projection`` for ``index`` as they are now (real time)."""
        try:
            ids = self._ids.get((projection, index))
            if ids is not None:
                found = await self._lenient.mget(index=self.index, ids=ids)
                return self._learn(projection, index, _docs(found))
            searched = await self._lenient.search(
                index=self.index, query=_applied_query(projection, index), size=10_000
            )
        except ApiError as exc:
            if exc.meta.status == 503:
                return []
            raise self._unavailable(exc) from exc
        except TransportError as exc:
            raise self._unavailable(exc) from exc
        return self._learn(projection, index, _hits(searched))


def _docs(found: ObjectApiResponse[Any]) -> list[Checkpoint]:
    return [checkpoint_of(d["_source"]) for d in found.get("docs", []) if d.get("found")]


def _hits(found: ObjectApiResponse[Any]) -> list[Checkpoint]:
    return [checkpoint_of(h["_source"]) for h in found.get("hits", {}).get("hits", [])]


def checkpoint_of(source: dict[str, Any]) -> Checkpoint:
    """The checkpoint a stored document describes (fields added later get defaults)."""
    return Checkpoint(
        projection=source["projection"],
        topic=source["topic"],
        partition=source["partition"],
        offset=source["offset"],
        position=source["position"],
        partitions=source.get("partitions") or 0,
        topics=tuple(source.get("topics") or ()),
        index=source.get("index") or "",
        writer=source.get("writer") or WORKER_WRITER,
        from_offset=source.get("from_offset") or 0,
        searchable=source.get("searchable"),
    )
