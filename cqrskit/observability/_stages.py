"""Per-stage latency of the pipeline: recent samples and their quantiles.

A worker observes, for each event it applies, how long the event took
from append to publish (the Kafka message's timestamp minus the event's
``occurred_at``) and from publish to applied (the bulk write's end minus
the message's timestamp); about once a second it also measures how long an
applied document takes to become searchable (until a search sees its new
sequence number). The histograms go to Prometheus; the most recent samples
are kept here, and written beside the checkpoints for ``cqrskit status``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Iterable, Sequence

__all__ = ["STAGES", "StageSamples", "quantile"]

#: The stages, in pipeline order.
STAGES = ("append_to_publish", "publish_to_applied", "applied_to_searchable")


def quantile(values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile (0..1) of ``values`` by nearest rank; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


class StageSamples:
    """The last ``keep`` latencies of each stage; safe across threads."""

    def __init__(self, keep: int = 1024):
        self._lock = threading.Lock()
        self._samples: dict[str, deque[float]] = {s: deque(maxlen=keep) for s in STAGES}

    def add(self, stage: str, seconds: Iterable[float]) -> None:
        """Record latencies of ``stage``."""
        with self._lock:
            self._samples[stage].extend(seconds)

    def snapshot(self) -> dict[str, list[float]]:
        """A copy of the samples, by stage."""
        with self._lock:
            return {stage: list(values) for stage, values in self._samples.items()}
