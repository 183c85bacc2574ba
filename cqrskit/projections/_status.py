"""Where each projection is: checkpoints (from Elasticsearch), lag (from Kafka if it answers)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, KafkaException, TopicPartition
from elastic_transport import TransportError
from elasticsearch import ApiError

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.elasticsearch.read_model import read_model_for
from cqrskit.checkpoints import coverage
from cqrskit.errors import CqrskitError
from cqrskit.observability import STAGES, quantile
from cqrskit.projections._projection import Projection
from cqrskit.projections._worker import topics_for
from cqrskit.settings import Settings
from cqrskit.topology import IndexNames, Topology

__all__ = ["ProjectionStatus", "StageLatency", "projection_status", "stage_latencies"]


@dataclass(frozen=True)
class StageLatency:
    """One stage of one projection: median and 99th percentile of recent events."""

    stage: str
    p50: float | None
    p99: float | None
    samples: int


def stage_latencies(
    settings: Settings, projection_name: str, max_age_seconds: float = 600
) -> list[StageLatency]:
    """Each stage's p50/p99 over the recent samples of the projection's live workers.

    Workers write their last samples every few seconds; those of workers
    silent for more than ``max_age_seconds`` are left out.

    Raises:
        ServiceUnavailable: Elasticsearch is unreachable.
    """
    es = es_backend.client(settings)
    merged: dict[str, list[float]] = {stage: [] for stage in STAGES}
    try:
        found = es.options(ignore_status=404).search(
            index=IndexNames.of(settings).stats_index,
            query={
                "bool": {
                    "filter": [
                        {"term": {"projection": projection_name}},
                        {"range": {"updated_at": {"gte": f"now-{int(max_age_seconds)}s"}}},
                    ]
                }
            },
            size=100,
        )
    except (ApiError, TransportError) as exc:
        raise es_backend.unavailable(settings.elasticsearch_address(), str(exc)) from exc
    finally:
        es.close()
    for hit in found.get("hits", {}).get("hits", []):
        for stage, values in hit["_source"].get("samples", {}).items():
            merged.setdefault(stage, []).extend(values)
    return [
        StageLatency(stage, quantile(values, 0.5), quantile(values, 0.99), len(values))
        for stage, values in merged.items()
    ]


@dataclass(frozen=True)
class ProjectionStatus:
    """A projection's progress as ``cqrskit projections status`` shows it."""

    name: str
    alias: str
    documents: int
    position: int
    partitions: int
    lag: int | None
    note: str = ""


def projection_status(
    settings: Settings, application_name: str, projection: Projection[Any]
) -> ProjectionStatus:
    """Checkpoints from Elasticsearch; lag in events from Kafka (None if Kafka is away).

    Raises:
        ServiceUnavailable: Elasticsearch is unreachable.
    """
    read_model = read_model_for(settings, projection)
    serving = read_model.serving()
    # What the index in service holds, as readers with min_position see it.
    covered = coverage(read_model.checkpoints(serving)) if serving else {}
    documents = read_model.count()
    lag: int | None = None
    note = ""
    try:
        lag = _lag(settings, application_name, projection)
    except (KafkaException, CqrskitError) as exc:
        note = f"lag unknown: Kafka did not answer ({exc})"
    return ProjectionStatus(
        name=projection.name,
        alias=read_model.alias,
        documents=documents,
        position=max((position for _, position in covered.values()), default=0),
        partitions=len(covered),
        lag=lag,
        note=note,
    )


def _lag(settings: Settings, application_name: str, projection: Projection[Any]) -> int:
    timeout = settings.connect_timeout
    consumer = Consumer(
        {
            **kafka_backend.consumer_config(settings),
            "group.id": Topology.of(settings, application_name).projection_group(projection.name),
            "enable.auto.commit": False,
        }
    )
    try:
        partitions: list[TopicPartition] = []
        metadata = consumer.list_topics(timeout=timeout)
        for topic in topics_for(settings, application_name, type(projection)):
            if topic in metadata.topics:
                partitions += [TopicPartition(topic, p) for p in metadata.topics[topic].partitions]
        committed = consumer.committed(partitions, timeout=timeout) if partitions else []
        total = 0
        for partition in committed:
            low, high = consumer.get_watermark_offsets(partition, timeout=timeout)
            start = partition.offset if partition.offset >= 0 else low
            total += max(0, high - start)
        return total
    finally:
        consumer.close()
