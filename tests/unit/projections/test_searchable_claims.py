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
import uuid
from collections.abc import Callable, Iterable, Mapping
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
from cqrskit.subscription import Partition
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


class FencedSubscription(MemorySubscription):
    """A member whose offset commits the group refuses once another member replaced it
    (Kafka's generation check): a replaced member may still write, never commit."""

    latest: FencedSubscription | None = None

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        if FencedSubscription.latest is self:
            super().commit(offsets)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def time_ns(self) -> int:
        return int(self.now * 1e9)


class Scenario:
    """One projection's partitions, members of its group, and its read model, run by a seed."""

    def __init__(self, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
        self.rng = random.Random(seed)
        ids = random.Random(seed)  # the relay's aggregate ids, so their partitions, by the seed
        monkeypatch.setattr(uuid, "uuid4", lambda: uuid.UUID(int=ids.getrandbits(128), version=4))
        self.clock = Clock()
        monkeypatch.setattr(worker_module, "time", self.clock)
        self.run = Running()
        self.model = SearchableReadModel(self.run.projection.name, self.offset_of)
        self.workers = [self.member()]

    def offset_of(self, position: int) -> int:
        run = self.run
        for partition in run.broker.partitions_of(run.topic):
            for message in run.broker.read({partition: 0}, 10_000):
                headers = message.headers
                if (
                    headers.get(HEADER_POSITION) == b"%d" % position
                    and headers.get(HEADER_EVENT_TYPE) != WATERMARK_EVENT_TYPE.encode()
                ):
                    return message.offset
        raise AssertionError(f"no event at position {position}")

    def member(self) -> ProjectionWorker:
        run = self.run
        subscription = FencedSubscription(run.broker, run.group, [run.topic])
        FencedSubscription.latest = subscription
        ports = WorkerPorts(
            read_model=self.model,
            dead_letters=MemoryDeadLetters(run.projection.name),
            subscription=subscription,
            stats=MemoryWorkerStats(),
        )
        worker = ProjectionWorker(run.settings, "shop", run.projection, ports)
        worker._prepare()
        return worker

    # -- what may happen, each with its weight ------------------------------------

    def events(self) -> None:
        for _ in range(self.rng.randint(1, 5)):
            self.run.relay.order_placed(f"c{self.rng.randint(0, 5)}")

    def watermark(self) -> None:
        self.run.relay.watermark()

    def batch(self) -> None:
        worker = self.rng.choice(self.workers)
        messages = worker.subscription.poll(self.rng.randint(1, 6), 0)
        if messages:
            worker._process(messages)
        else:
            worker._commit_skipped()
            worker._refresh_trailing()

    def time_passes(self) -> None:
        self.clock.now += self.rng.choice([0.1, 0.5, 1.0, 2.0])

    def crash(self) -> None:
        self.workers = [self.member()]  # the new member resumes from the committed offsets

    def replaced(self) -> None:
        if len(self.workers) < 2:  # the old member, replaced, keeps writing for a while
            self.workers.append(self.member())

    def replaced_one_stops(self) -> None:
        self.workers = self.workers[-1:]

    def rebalance(self) -> None:
        worker = self.rng.choice(self.workers)  # a partition taken away, then given back
        gone = Partition(self.run.topic, self.rng.randrange(3))
        worker._revoked([gone])
        committed = self.run.broker.committed(self.run.group, gone)
        worker.subscription._positions[gone] = committed or 0  # type: ignore[attr-defined]

    def revoked_mid_batch(self) -> None:
        worker = self.rng.choice(self.workers)  # the consumer replaced under a batch in hand
        messages = worker.subscription.poll(self.rng.randint(1, 6), 0)
        if not messages:
            return
        gone = Partition(self.run.topic, messages[0].partition)
        worker._revoked([gone])
        committed = self.run.broker.committed(self.run.group, gone)
        worker.subscription._positions[gone] = committed or 0  # type: ignore[attr-defined]
        worker._process(messages)

    def swap_back(self) -> None:
        self.model.swap(self.rng.choice(self.model.versions()))  # a rollback, say

    def swap(self) -> None:
        self.model.create_index(self.model.next_version(), alias=True)

    def step(self) -> None:
        actions = [
            (self.events, 30),
            (self.watermark, 10),
            (self.batch, 30),
            (self.time_passes, 10),
            (self.crash, 7),
            (self.replaced, 6),
            (self.replaced_one_stops, 2),
            (self.rebalance, 2),
            (self.revoked_mid_batch, 2),
            (self.swap_back, 1.5),
            (self.swap, 1.5),
        ]
        action = self.rng.choices([a for a, _ in actions], [w for _, w in actions])[0]
        action()


@pytest.mark.parametrize("seed", range(200))
def test_recorded_searchable_positions_are_true_of_the_index(
    seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenario = Scenario(seed, monkeypatch)
    for _ in range(300):
        scenario.step()
        assert not scenario.model.violations, scenario.model.violations[:3]
