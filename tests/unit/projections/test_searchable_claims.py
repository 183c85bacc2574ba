"""Every searchable position a worker records is true of the index, whatever happens.

An in-memory read model that searches like Elasticsearch: a write becomes
visible to searches only at the next refresh of its index. Each checkpoint
saved is checked against it: a document whose last event from the
checkpoint's partition is in the checkpoint's run of offsets and at or below
its ``searchable`` must be visible with that event (what precedes a run in a
rebuilt index is the fill's, which refreshes; the swaps here have none).
Workers crash and restart, a replaced member keeps writing beside its
successor, the alias swaps, and time passes, at random.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from cqrskit.adapters.memory.dead_letters import MemoryDeadLetters
from cqrskit.adapters.memory.read_model import MemoryIndexedReadModel
from cqrskit.adapters.memory.subscription import MemorySubscription
from cqrskit.adapters.memory.worker_stats import MemoryWorkerStats
from cqrskit.checkpoints import Checkpoint
from cqrskit.envelope import HEADER_EVENT_TYPE, HEADER_POSITION, WATERMARK_EVENT_TYPE
from cqrskit.projections import ProjectionWorker
from cqrskit.projections import _worker as worker_module
from cqrskit.projections._mapping import METADATA_FIELD
from cqrskit.projections._worker import WorkerPorts
from cqrskit.topology import partition_key
from projections.customers import CustomerOrders

from .test_worker import Running


class SearchableReadModel(MemoryIndexedReadModel):
    """Writes become searchable at the next refresh; saved checkpoints are checked."""

    def __init__(self, name: str, offset_of: Callable[[int], int]) -> None:
        super().__init__(name, CustomerOrders)
        self.offset_of = offset_of
        #: index -> doc id -> the source a search sees.
        self.visible: dict[str, dict[str, dict[str, Any]]] = {}
        self.violations: list[str] = []

    def refresh(self, index: str | None = None) -> None:
        super().refresh(index)
        name = self._name(index)
        self.visible[name] = copy.deepcopy({d: body for d, (_, body) in self.indices[name].items()})

    def save_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None:
        checkpoints = list(checkpoints)
        for checkpoint in checkpoints:
            self._check(checkpoint)
        super().save_checkpoints(checkpoints)

    def _check(self, checkpoint: Checkpoint) -> None:
        if not checkpoint.searchable:
            return
        stream = partition_key(checkpoint.topic, checkpoint.partition)
        seen = self.visible.get(checkpoint.index, {})
        for doc_id, (_, body) in self.indices.get(checkpoint.index, {}).items():
            applied = _applied(body, stream)
            if (
                applied
                and checkpoint.from_offset <= self.offset_of(applied) < checkpoint.offset
                and applied <= checkpoint.searchable
                and _applied(seen.get(doc_id), stream) < applied
            ):
                self.violations.append(
                    f"{checkpoint.doc_id} says searchable up to {checkpoint.searchable}, "
                    f"but {doc_id}'s event {applied} of {stream} is not"
                )


def _applied(body: dict[str, Any] | None, stream: str) -> int:
    if body is None:
        return 0
    sources = (body.get(METADATA_FIELD) or {}).get("sources") or {}
    return int((sources.get("applied") or {}).get(stream, 0))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1e9)


@pytest.mark.parametrize("seed", range(100))
def test_recorded_searchable_positions_are_true_of_the_index(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    clock = Clock()
    monkeypatch.setattr(worker_module, "time", clock)
    run = Running()

    def offset_of(position: int) -> int:
        for partition in run.broker.partitions_of(run.topic):
            for message in run.broker.read({partition: 0}, 10_000):
                headers = message.headers
                if (
                    headers.get(HEADER_POSITION) == b"%d" % position
                    and headers.get(HEADER_EVENT_TYPE) != WATERMARK_EVENT_TYPE.encode()
                ):
                    return message.offset
        raise AssertionError(f"no event at position {position}")

    model = SearchableReadModel(run.projection.name, offset_of)

    def member() -> ProjectionWorker:
        ports = WorkerPorts(
            read_model=model,
            dead_letters=MemoryDeadLetters(run.projection.name),
            subscription=MemorySubscription(run.broker, run.group, [run.topic]),
            stats=MemoryWorkerStats(),
        )
        worker = ProjectionWorker(run.settings, "shop", run.projection, ports)
        worker._prepare()
        return worker

    workers = [member()]
    for _ in range(300):
        action = rng.random()
        if action < 0.3:
            for _ in range(rng.randint(1, 5)):
                run.relay.order_placed(f"c{rng.randint(0, 5)}")
        elif action < 0.4:
            run.relay.watermark()
        elif action < 0.7:
            worker = rng.choice(workers)
            messages = worker.subscription.poll(rng.randint(1, 6), 0)
            if messages:
                worker._process(messages)
            else:
                worker._commit_skipped()
                worker._refresh_trailing()
        elif action < 0.8:
            clock.now += rng.choice([0.1, 0.5, 1.0, 2.0])
        elif action < 0.87:
            workers = [member()]  # a crash: the new member resumes from the committed offsets
        elif action < 0.93 and len(workers) < 2:
            workers.append(member())  # the old one, replaced, keeps working for a while
        elif action < 0.96:
            workers = workers[-1:]
        else:
            new = model.next_version()
            model.create_index(new, alias=True)
        assert not model.violations, model.violations[:3]
