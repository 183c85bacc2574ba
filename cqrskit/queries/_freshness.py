"""How far a read model has applied the store: read-your-writes, from Elasticsearch only.

A projection worker records, per partition it reads, the position up to
which that partition holds nothing it has not applied (the last event it
applied, or the relay's watermark, whichever is higher). The read model has
applied every event up to position P when every partition of every topic it
reads is complete up to P. The query side reads those checkpoints from
Elasticsearch; it never asks PostgreSQL or Kafka.
"""

from __future__ import annotations

import time

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from cqrskit.errors import ServiceUnavailable

__all__ = ["applied_position", "wait_for_position"]


def applied_position(
    es: Elasticsearch, checkpoints_index: str, projection: str, url: str = "the cluster"
) -> int:
    """The position up to which ``projection`` has applied everything (0 if unknown).

    Raises:
        ServiceUnavailable: Elasticsearch cannot answer.
    """
    try:
        found = es.options(ignore_status=404).search(
            index=checkpoints_index,
            query={"term": {"projection": projection}},
            size=10_000,
            source_includes=["topic", "partition", "position", "partitions", "topics"],
        )
    except ApiError as exc:
        if exc.meta.status == 503:
            return 0  # a checkpoint shard is still starting: nothing is known yet
        raise ServiceUnavailable(
            "Elasticsearch", url, str(exc), "CQRSKIT_ELASTICSEARCH_URL"
        ) from exc
    except TransportError as exc:
        raise ServiceUnavailable(
            "Elasticsearch",
            str(es.transport.node_pool.get().base_url),
            str(exc),
            "CQRSKIT_ELASTICSEARCH_URL",
        ) from exc
    hits = [h["_source"] for h in found.get("hits", {}).get("hits", [])]
    if not hits:
        return 0
    topics = set(hits[0].get("topics") or [])
    positions: dict[tuple[str, int], int] = {}
    counts: dict[str, int] = {}
    for hit in hits:
        positions[(hit["topic"], hit["partition"])] = int(hit["position"])
        counts[hit["topic"]] = max(counts.get(hit["topic"], 0), int(hit.get("partitions") or 0))
    for topic in topics or counts:
        expected = counts.get(topic, 0)
        if expected == 0 or sum(1 for t, _ in positions if t == topic) < expected:
            return 0  # a partition has not been heard from yet
    return min(positions.values())


def wait_for_position(
    es: Elasticsearch,
    checkpoints_index: str,
    projection: str,
    position: int,
    *,
    timeout: float,
    url: str = "the cluster",
) -> bool:
    """Wait until ``projection`` has applied ``position``; False if ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        if applied_position(es, checkpoints_index, projection, url) >= position:
            return True
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        time.sleep(min(pause, remaining))  # polling a remote condition, with backoff
        pause = min(pause * 2, 0.1)
