"""How far a read model's index has applied the store: read-your-writes, from Elasticsearch only.

Checkpoints belong to a physical index, not to the projection (decision
0011): each says, for one partition and one index, the run of offsets
applied there without a gap and the position up to which that partition
holds nothing the index lacks. Two writers record them:

- ``rebuild``: a rebuild or a rollback that filled the index; its run
  starts at offset 0 (the replay and the catch-up leave no gap);
- ``worker``: the live worker, from the first offset it wrote to this index.

A worker's run counts only where it joins the fill (it starts at or below
the fill's offset), or when nothing ever filled the index (version 1, built
by the workers alone). The index has applied every event up to position P
when every partition of every topic it reads is covered up to P. The query
side reads those checkpoints from Elasticsearch; it never asks PostgreSQL
or Kafka.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.errors import ServiceUnavailable
from cqrskit.topology import IndexNames

__all__ = [
    "FILL_WRITER",
    "WORKER_WRITER",
    "Coverage",
    "applied_position",
    "coverage",
    "serving_index",
    "wait_for_position",
]

#: Checkpoints of a rebuild or rollback that filled an index from offset 0.
FILL_WRITER = "rebuild"
#: Checkpoints of the live worker, from the first offset it wrote to the index.
WORKER_WRITER = "worker"

#: (offset, position) per (topic, partition): below the offset every message
#: is applied, and every event of the partition up to the position.
Coverage = dict[tuple[str, int], tuple[int, int]]


def coverage(checkpoints: Iterable[Mapping[str, Any]]) -> Coverage:
    """What one index holds without a gap, per partition, from its checkpoints.

    ``checkpoints`` are the checkpoint documents of one index. Pure; the
    rule every reader of checkpoints uses (queries, status, rollback).
    """
    fills: dict[tuple[str, int], Mapping[str, Any]] = {}
    runs: dict[tuple[str, int], Mapping[str, Any]] = {}
    for doc in checkpoints:
        key = (str(doc["topic"]), int(doc["partition"]))
        (fills if doc.get("writer") == FILL_WRITER else runs)[key] = doc
    covered: Coverage = {}
    for key in fills.keys() | runs.keys():
        fill, run = fills.get(key), runs.get(key)
        if fill is None:
            covered[key] = (int(runs[key]["offset"]), int(runs[key]["position"]))
            continue
        offset, position = int(fill["offset"]), int(fill["position"])
        if run is not None and int(run.get("from_offset") or 0) <= offset:
            offset = max(offset, int(run["offset"]))
            position = max(position, int(run["position"]))
        covered[key] = (offset, position)
    return covered


def _unavailable(es: Elasticsearch, url: str, exc: Exception) -> ServiceUnavailable:
    if isinstance(exc, TransportError):
        url = str(es.transport.node_pool.get().base_url)
    return es_backend.unavailable(url, str(exc))


def serving_index(es: Elasticsearch, alias: str, url: str = "the cluster") -> str | None:
    """The physical index behind ``alias`` (None before the first build).

    Raises:
        ServiceUnavailable: Elasticsearch cannot answer.
    """
    try:
        found = es.options(ignore_status=404).indices.get_alias(name=alias)
    except (ApiError, TransportError) as exc:
        raise _unavailable(es, url, exc) from exc
    if found.meta.status == 404:
        return None
    return next(iter(found.body), None)


def applied_position(
    es: Elasticsearch,
    names: IndexNames,
    projection: str,
    url: str = "the cluster",
    *,
    index: str | None = None,
) -> int:
    """The position up to which ``projection`` has applied everything (0 if unknown).

    Judged for ``index``, or by default for the index behind the
    projection's alias.

    Raises:
        ServiceUnavailable: Elasticsearch cannot answer.
    """
    if index is None:
        index = serving_index(es, names.alias(projection), url)
        if index is None:
            return 0
    try:
        found = es.options(ignore_status=404).search(
            index=names.checkpoints_index,
            query={
                "bool": {
                    "filter": [{"term": {"projection": projection}}, {"term": {"index": index}}]
                }
            },
            size=10_000,
            source_includes=[
                "topic",
                "partition",
                "offset",
                "position",
                "partitions",
                "topics",
                "writer",
                "from_offset",
            ],
        )
    except ApiError as exc:
        if exc.meta.status == 503:
            return 0  # a checkpoint shard is still starting: nothing is known yet
        raise _unavailable(es, url, exc) from exc
    except TransportError as exc:
        raise _unavailable(es, url, exc) from exc
    hits = [h["_source"] for h in found.get("hits", {}).get("hits", [])]
    if not hits:
        return 0
    topics = set(hits[0].get("topics") or [])
    counts: dict[str, int] = {}
    for hit in hits:
        counts[hit["topic"]] = max(counts.get(hit["topic"], 0), int(hit.get("partitions") or 0))
    covered = coverage(hits)
    for topic in topics or counts:
        expected = counts.get(topic, 0)
        if expected == 0 or sum(1 for t, _ in covered if t == topic) < expected:
            return 0  # a partition has not been heard from yet
    return min(position for _, position in covered.values())


def wait_for_position(
    es: Elasticsearch,
    names: IndexNames,
    projection: str,
    position: int,
    *,
    timeout: float,
    url: str = "the cluster",
    alias: str | None = None,
) -> str | None:
    """Wait until the index in service has applied ``position``; return that index.

    Returns the physical index (behind ``alias``, by default the
    projection's) that has applied ``position``: a caller that reads that
    index, not the alias, gets an answer with the write in it even if a swap
    happens meanwhile. None if ``timeout`` passed first.

    Raises:
        ServiceUnavailable: Elasticsearch cannot answer.
    """
    if alias is None:
        alias = names.alias(projection)
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        index = serving_index(es, alias, url)
        if index and applied_position(es, names, projection, url, index=index) >= position:
            return index
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        time.sleep(min(pause, remaining))  # polling a remote condition, with backoff
        pause = min(pause * 2, 0.1)
