"""What a projection worker tells operators: metrics, stage latencies, spans.

Kept apart from the worker's loop so that the loop reads as the data path.
Per batch the cost is a few histogram observations per event; the
searchable-latency probe runs in its own thread, at most once a second,
and the recent samples are written through a
:class:`~cqrskit.projections.WorkerStats` (beside the checkpoints, in
Elasticsearch) every few seconds for ``cqrskit status``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from cqrskit.envelope import Envelope
from cqrskit.observability import StageSamples
from cqrskit.observability import _metrics as metrics
from cqrskit.observability._tracing import record_apply_spans
from cqrskit.projections._ports import WorkerStats

__all__ = ["WorkerTelemetry"]

log = logging.getLogger("cqrskit.projections")


class WorkerTelemetry:
    """Metrics, stage samples and spans of one projection worker."""

    FLUSH_SECONDS = 5.0
    LAG_SECONDS = 5.0
    PROBE_INTERVAL = 1.0
    PROBE_TIMEOUT = 30.0

    def __init__(self, name: str, stats: WorkerStats, instance: str) -> None:
        self.stats = stats
        self.name = name
        self.instance = instance
        self.samples = StageSamples()
        self._state = metrics.projection_state.labels(self.name)
        self._state.state("starting")
        self._applied = metrics.projection_applied.labels(self.name)
        # Exposed at 0 from the start: an alert on its increase then sees the
        # first dead letter too, not only those after it.
        self._dead_letters = metrics.projection_dead_letters.labels(self.name)
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
            self._dead_letters.inc(count)

    def batch(
        self,
        messages: int,
        envelopes: Sequence[Envelope],
        published_at: Sequence[float],
        started_ns: int,
        written: tuple[str, str, int] | None = None,
    ) -> None:
        """A batch of ``messages`` was applied and committed; ``envelopes`` were events.

        ``written`` is the last document written (index, id, sequence
        number): the probe times how long it takes to become searchable.
        """
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
        if written is not None and not self._probe_wanted.is_set():
            self._probe_target = (*written, time.monotonic())
            self._probe_wanted.set()
        record_apply_spans(self.name, envelopes, started_ns, time.time_ns())

    def idle(self, lag: Callable[[], int | None], *, drained: bool) -> None:
        """Called on every turn of the loop: refresh the lag, write the samples.

        ``drained``: the last poll found nothing. The lag is measured then (or
        when it has not been for a while): right after a poll, the relay's
        watermarks for the other partitions are often a few microseconds
        from being consumed, and would show as a lag that is not one.
        """
        now = time.monotonic()
        if (drained and now - self._lag_at > 1.0) or now - self._lag_at > 3 * self.LAG_SECONDS:
            self._lag_at = now
            self._measure_lag(lag)
        if now - self._flushed_at > self.FLUSH_SECONDS:
            self._flushed_at = now
            self.flush()

    def flush(self) -> None:
        """Write the recent stage samples beside the checkpoints; best effort."""
        self.stats.write_samples(
            self.name,
            self.instance,
            {
                "updated_at": datetime.now(UTC).isoformat(),
                "samples": self.samples.snapshot(),
            },
        )

    def close(self) -> None:
        """Stop the probe and write the samples a last time."""
        self._closing.set()
        self._probe_wanted.set()
        self._probe.join(timeout=5)
        self.flush()
        self._state.state("stopped")

    # -- inside --------------------------------------------------------------------------

    def _measure_lag(self, lag: Callable[[], int | None]) -> None:
        events = lag()
        if events is None:
            return  # the consumer cannot say now: keep the last value
        self._lag_events.set(events)
        if events == 0:
            self._lag_seconds.set(0)

    def _probe_loop(self) -> None:
        """Measure how long a written document takes to become searchable."""
        while not self._closing.is_set():
            # In short turns: close() may set the wish just before it is
            # cleared below, and must not then wait out its join.
            if not self._probe_wanted.wait(timeout=0.2):
                continue
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
            searchable = self.stats.searchable(index, doc_id, seq_no)
            if searchable is None:
                return  # the store cannot answer now: no sample
            if searchable:
                seconds = time.monotonic() - written
                self._stages["applied_to_searchable"].observe(seconds)
                self.samples.add("applied_to_searchable", [seconds])
                return
            self._closing.wait(0.01)
