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

from elasticsearch import ApiError, Elasticsearch, TransportError

from cqrskit.adapters.elasticsearch._errors import translated, unavailable
from cqrskit.checkpoints import WORKER_WRITER, Checkpoint
from cqrskit.errors import ServiceUnavailable
from cqrskit.observability import _metrics as metrics

__all__ = [
    "CHECKPOINT_MAPPING",
    "CHECKPOINT_PROPERTIES",
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
            found = self.es.options(ignore_status=404).mget(index=self.index, ids=wanted)
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


class ElasticsearchCheckpointReader:
    """The query side's :class:`~cqrskit.queries.CheckpointReader` in Elasticsearch.

    Raises :class:`ServiceUnavailable` when the cluster cannot answer.
    """

    def __init__(self, es: Elasticsearch, index: str, address: str = "the cluster"):
        self.es = es
        self.index = index
        self.address = address

    def serving(self, alias: str) -> str | None:
        """The physical index behind ``alias`` (None before the first build)."""
        try:
            found = self.es.options(ignore_status=404).indices.get_alias(name=alias)
        except (ApiError, TransportError) as exc:
            raise self._unavailable(exc) from exc
        if found.meta.status == 404:
            return None
        return next(iter(found.body), None)

    def applied(self, projection: str, index: str) -> list[Checkpoint]:
        """The checkpoints of ``projection`` for ``index`` searchable now (no refresh)."""
        try:
            found = self.es.options(ignore_status=404).search(
                index=self.index,
                query={
                    "bool": {
                        "filter": [
                            {"term": {"projection": projection}},
                            {"term": {"index": index}},
                        ]
                    }
                },
                size=10_000,
                source_includes=[
                    "projection",
                    "topic",
                    "partition",
                    "offset",
                    "position",
                    "partitions",
                    "topics",
                    "index",
                    "writer",
                    "from_offset",
                ],
            )
        except ApiError as exc:
            if exc.meta.status == 503:
                return []  # a checkpoint shard is still starting: nothing is known yet
            raise self._unavailable(exc) from exc
        except TransportError as exc:
            raise self._unavailable(exc) from exc
        return [checkpoint_of(h["_source"]) for h in found.get("hits", {}).get("hits", [])]

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        address = self.address
        if isinstance(exc, TransportError):
            address = str(self.es.transport.node_pool.get().base_url)
        return unavailable(address, str(exc))


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
    )
