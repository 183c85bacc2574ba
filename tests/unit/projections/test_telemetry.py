"""What a worker exposes before anything happens, so that alerts see the first change."""

from __future__ import annotations

from prometheus_client import REGISTRY

from cqrskit.adapters.memory.worker_stats import MemoryWorkerStats
from cqrskit.projections._telemetry import WorkerTelemetry


def test_a_worker_exposes_zero_dead_letters_from_its_start() -> None:
    # increase() over a counter that appears at 1 sees no increase: the
    # dead-letter alert would miss the first dead letter of every process.
    telemetry = WorkerTelemetry("telemetry_zero", MemoryWorkerStats(), "test")
    try:
        value = REGISTRY.get_sample_value(
            "cqrskit_projection_dead_letters_total", {"projection": "telemetry_zero"}
        )
        assert value == 0
        telemetry.dead_lettered(2)
        value = REGISTRY.get_sample_value(
            "cqrskit_projection_dead_letters_total", {"projection": "telemetry_zero"}
        )
        assert value == 2
    finally:
        telemetry.close()
