"""Where each projection is: checkpoints (from Elasticsearch), lag (from Kafka if it answers)."""

from __future__ import annotations

from dataclasses import dataclass

from cqrskit.checkpoints import coverage
from cqrskit.errors import CqrskitError
from cqrskit.observability import STAGES, quantile
from cqrskit.projections._ports import ReadModel, TopicOffsets, WorkerStats

__all__ = ["ProjectionStatus", "StageLatency", "projection_status", "stage_latencies"]


@dataclass(frozen=True)
class StageLatency:
    """One stage of one projection: median and 99th percentile of recent events."""

    stage: str
    p50: float | None
    p99: float | None
    samples: int


def stage_latencies(
    stats: WorkerStats, projection_name: str, max_age_seconds: float = 600
) -> list[StageLatency]:
    """Each stage's p50/p99 over the recent samples of the projection's live workers.

    Workers write their last samples every few seconds; those of workers
    silent for more than ``max_age_seconds`` are left out.

    Raises:
        ServiceUnavailable: the stats cannot be read.
    """
    merged: dict[str, list[float]] = {stage: [] for stage in STAGES}
    for samples in stats.read_samples(projection_name, max_age_seconds):
        for stage, values in samples.items():
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
    #: Why the lag is unknown: the error's one line, naming the service and the setting.
    lag_error: str = ""


def projection_status(read_model: ReadModel, offsets: TopicOffsets) -> ProjectionStatus:
    """Checkpoints from the read model; lag in events from the topics (None if they are away).

    Raises:
        ServiceUnavailable: the read model's store is unreachable.
    """
    serving = read_model.serving()
    # What the index in service holds, as readers with min_position see it.
    covered = coverage(read_model.checkpoints(serving)) if serving else {}
    documents = read_model.count()
    lag: int | None = None
    note = lag_error = ""
    try:
        lag = offsets.lag()
    except CqrskitError as exc:
        note, lag_error = "lag unknown: Kafka did not answer", str(exc)
    return ProjectionStatus(
        name=read_model.name,
        alias=read_model.alias,
        documents=documents,
        position=max((position for _, position in covered.values()), default=0),
        partitions=len(covered),
        lag=lag,
        note=note,
        lag_error=lag_error,
    )
