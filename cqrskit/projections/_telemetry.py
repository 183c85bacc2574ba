"""What a projection worker tells operators: metrics, stage latencies, spans.

Kept apart from the worker's loop so that the loop reads as the data path.
Per batch the cost is a few histogram observations per event; the
searchable-latency probe runs in its own thread, at most once a second,
and the recent samples are written to Elasticsearch every few seconds for
``cqrskit status``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import Consumer
from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel
from cqrskit.envelope import Envelope
from cqrskit.observability import StageSamples
from cqrskit.observability import _metrics as metrics
from cqrskit.observability._tracing import record_apply_spans
from cqrskit.settings import Settings
from cqrskit.topology import IndexNames

__all__ = ["STATS_MAPPING", "WorkerTelemetry"]

log = logging.getLogger("cqrskit.projections")

STATS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "projection": {"type": "keyword"},
        "instance": {"type": "keyword"},
        "updated_at": {"type": "date"},
        "samples": {"type": "object", "enabled": False},
    },
}


class WorkerTelemetry:
    """Metrics, stage samples and spans of one projection worker."""

    FLUSH_SECONDS = 5.0
    LAG_SECONDS = 5.0
    PROBE_INTERVAL = 1.0
    PROBE_TIMEOUT = 30.0

    def __init__(
        self, settings: Settings, read_model: ElasticsearchReadModel, instance: str
    ) -> None:
        self.settings = settings
        self.read_model = read_model
        self.es: Elasticsearch = read_model.es
        self.name = read_model.name
        self.instance = instance
        self.samples = StageSamples()
        self._state = metrics.projection_state.labels(self.name)
        self._state.state("starting")
        self._applied = metrics.projection_applied.labels(self.name)
        self._batch = metrics.projection_batch_events.labels(self.name)
        self._lag_seconds = metrics.projection_lag_seconds.labels(self.name)
        self._lag_events = metrics.projection_lag_events.labels(self.name)
        self._stages = {
            stage: metrics.stage_seconds.labels(self.name, stage)
            for stage in ("append_to_publish", "publish_to_applied", "applied_to_searchable")
        }
        self._flushed_at = time.monotonic()
        self._lag_at = float("-inf")
        self._probe_wanted = threading.Event()
        self._probe_target: tuple[str, str, int, float] | None = None
        self._closing = threading.Event()
        self._stats_ready = False
        self._probe = threading.Thread(
            target=self._probe_loop, name=f"searchable-{self.name}", daemon=True
        )
        self._probe.start()

    # -- what the worker reports --------------------------------------------------------

    def state(self, state: str) -> None:
        """The worker's state: running, failing or stopped."""
        self._state.state(state)

    def error(self, error: BaseException | None) -> None:
        """A retried error."""
        kind = type(error).__name__ if error else "unknown"
        metrics.projection_errors.labels(self.name, kind).inc()

    def dead_lettered(self, count: int) -> None:
        """Events sent to the dead-letter topic."""
        if count:
            metrics.projection_dead_letters.labels(self.name).inc(count)

    def batch(
        self,
        messages: int,
        envelopes: Sequence[Envelope],
        published_at: Sequence[float],
        started_ns: int,
    ) -> None:
        """A batch of ``messages`` was applied and committed; ``envelopes`` were events."""
        self._batch.observe(messages)
        self._applied.inc(len(envelopes))
        if not envelopes:
            return
        applied_at = time.time()
        to_publish = [
            max(0.0, published - envelope.occurred_at.timestamp())
            for envelope, published in zip(envelopes, published_at, strict=True)
            if published > 0
        ]
        to_applied = [max(0.0, applied_at - p) for p in published_at if p > 0]
        for stage, values in (
            ("append_to_publish", to_publish),
            ("publish_to_applied", to_applied),
        ):
            histogram = self._stages[stage]
            for value in values:
                histogram.observe(value)
            self.samples.add(stage, values)
        self._lag_seconds.set(max(0.0, applied_at - envelopes[-1].occurred_at.timestamp()))
        written = self.read_model.last_written
        if written is not None and not self._probe_wanted.is_set():
            self._probe_target = (*written, time.monotonic())
            self._probe_wanted.set()
        record_apply_spans(self.name, envelopes, started_ns, time.time_ns())

    def idle(self, consumer: Consumer, *, drained: bool) -> None:
        """Called on every turn of the loop: refresh the lag, write the samples.

        ``drained``: the last poll found nothing. The lag is measured then (or
        when it has not been for a while): right after a poll, the relay's
        watermarks for the other partitions are often a few microseconds
        from being consumed, and would show as a lag that is not one.
        """
        now = time.monotonic()
        if (drained and now - self._lag_at > 1.0) or now - self._lag_at > 3 * self.LAG_SECONDS:
            self._lag_at = now
            self._measure_lag(consumer)
        if now - self._flushed_at > self.FLUSH_SECONDS:
            self._flushed_at = now
            self.flush()

    def flush(self) -> None:
        """Write the recent stage samples beside the checkpoints; best effort."""
        body = {
            "projection": self.name,
            "instance": self.instance,
            "updated_at": datetime.now(UTC).isoformat(),
            "samples": self.samples.snapshot(),
        }
        index = IndexNames.of(self.settings).stats_index
        try:
            if not self._stats_ready:
                if not self.es.indices.exists(index=index):
                    self.es.options(ignore_status=400).indices.create(
                        index=index,
                        mappings=STATS_MAPPING,
                        settings={"number_of_shards": 1, "number_of_replicas": 0},
                    )
                self._stats_ready = True
            self.es.index(index=index, id=f"{self.name}|{self.instance}", document=body)
        except (ApiError, TransportError) as exc:
            log.debug("projection %s: stage samples not written: %s", self.name, exc)

    def close(self) -> None:
        """Stop the probe and write the samples a last time."""
        self._closing.set()
        self._probe_wanted.set()
        self._probe.join(timeout=5)
        self.flush()
        self._state.state("stopped")

    # -- inside --------------------------------------------------------------------------

    def _measure_lag(self, consumer: Consumer) -> None:
        # The high watermarks come with every fetch response (cached=True):
        # no round trip to the broker, so the loop is never held up by it.
        try:
            lag = 0
            for partition in consumer.position(consumer.assignment()):
                low, high = consumer.get_watermark_offsets(partition, cached=True)
                if high < 0:
                    continue  # nothing fetched from this partition yet
                start = partition.offset if partition.offset >= 0 else max(low, 0)
                lag += max(0, high - start)
            self._lag_events.set(lag)
            if lag == 0:
                self._lag_seconds.set(0)
        except Exception as exc:  # Kafka away: keep the last value
            log.debug("projection %s: lag not measured: %s", self.name, exc)

    def _probe_loop(self) -> None:
        """Measure how long a written document takes to become searchable."""
        while True:
            self._probe_wanted.wait()
            if self._closing.is_set():
                return
            target = self._probe_target
            if target is not None:
                self._measure_searchable(*target)
            self._closing.wait(self.PROBE_INTERVAL)
            self._probe_wanted.clear()

    def _measure_searchable(self, index: str, doc_id: str, seq_no: int, written: float) -> None:
        deadline = written + self.PROBE_TIMEOUT
        while not self._closing.is_set() and time.monotonic() < deadline:
            try:
                found = self.es.search(
                    index=index,
                    query={"ids": {"values": [doc_id]}},
                    seq_no_primary_term=True,
                    source=False,
                    size=1,
                )
            except (ApiError, TransportError):
                return
            hits = found["hits"]["hits"]
            if hits and int(hits[0].get("_seq_no", -1)) >= seq_no:
                seconds = time.monotonic() - written
                self._stages["applied_to_searchable"].observe(seconds)
                self.samples.add("applied_to_searchable", [seconds])
                return
            self._closing.wait(0.01)
