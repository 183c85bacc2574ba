"""The projection worker's loop on in-memory adapters: no Kafka, no Elasticsearch.

The worker is built as the Runtime builds it, from ports: a subscription
over in-memory topics that messages are put on as the relay would put them
(sealed, with watermarks), an in-memory read model, dead letters and stats.
What it must do is what it does on the real services: apply, checkpoint the
index it wrote, dead-letter what a handler cannot apply, and commit only
after the effects.
"""

from __future__ import annotations

import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from cqrskit import MappingOutdated, Settings
from cqrskit.adapters.memory.dead_letters import MemoryDeadLetters
from cqrskit.adapters.memory.read_model import MemoryIndexedReadModel
from cqrskit.adapters.memory.subscription import MemorySubscription, MemoryTopics
from cqrskit.adapters.memory.worker_stats import MemoryWorkerStats
from cqrskit.checkpoints import Checkpoint, coverage
from cqrskit.envelope import (
    HEADER_EVENT_TYPE,
    HEADER_POSITION,
    HEADER_SEAL,
    WATERMARK_EVENT_TYPE,
    Envelope,
    EnvelopeMetadata,
    Seal,
)
from cqrskit.projections import ProjectionWorker
from cqrskit.projections._worker import WorkerPorts
from cqrskit.subscription import Partition
from cqrskit.topology import Topology
from projections.customers import CustomerOrders, CustomerOrdersProjection

PARTITIONS = 3


class Relay:
    """Puts events and watermarks on in-memory topics as the relay publishes them."""

    def __init__(self, broker: MemoryTopics, topic: str, seal: Seal):
        self.broker, self.topic, self.seal = broker, topic, seal
        self.position = 0

    def order_placed(self, customer: str, payload: dict[str, Any] | None = None) -> None:
        self.position += 1
        order = uuid.uuid4()
        envelope = Envelope(
            event_id=uuid.uuid4(),
            event_type="Order.Placed",
            event_class="examples.shop.domain:Order.Placed",
            schema_version=1,
            aggregate_id=order,
            aggregate_type="Order",
            aggregate_version=1,
            position=self.position,
            occurred_at=datetime.now(UTC),
            payload=payload
            if payload is not None
            else {
                "customer_id": customer,
                "lines": [{"sku": "tea", "quantity": 1, "unit_price": "2.00"}],
            },
            metadata=EnvelopeMetadata(),
        )
        key = str(order).encode()
        value = envelope.model_dump_json().encode()
        seal = self.seal.event(self.topic, key, b"Order.Placed", self.position, value)
        headers = {
            HEADER_EVENT_TYPE: b"Order.Placed",
            HEADER_POSITION: b"%d" % self.position,
            HEADER_SEAL: seal,
        }
        self.broker.append(self.topic, zlib.crc32(key) % PARTITIONS, value, headers, key)

    def watermark(self) -> None:
        value = orjson.dumps({"watermark": self.position, "partitions": PARTITIONS})
        for partition in range(PARTITIONS):
            headers = {
                HEADER_EVENT_TYPE: WATERMARK_EVENT_TYPE.encode(),
                HEADER_POSITION: b"%d" % self.position,
                HEADER_SEAL: self.seal.watermark(self.topic, partition, self.position, value),
            }
            self.broker.append(self.topic, partition, value, headers)


class Running:
    """One worker on in-memory ports, running in a thread."""

    def __init__(self) -> None:
        self.settings = Settings(app="examples.shop:ShopApp", projection_batch_size=4)
        self.projection = CustomerOrdersProjection()
        topology = Topology.of(self.settings, "shop")
        (self.topic,) = topology.topics(self.projection.aggregate_types())
        self.group = topology.projection_group(self.projection.name)
        self.broker = MemoryTopics(partitions=PARTITIONS)
        self.relay = Relay(self.broker, self.topic, Seal(None, "shop"))
        self.read_model = MemoryIndexedReadModel(self.projection.name, CustomerOrders)
        self.dead_letters = MemoryDeadLetters(self.projection.name)
        ports = WorkerPorts(
            read_model=self.read_model,
            dead_letters=self.dead_letters,
            subscription=MemorySubscription(self.broker, self.group, [self.topic]),
            stats=MemoryWorkerStats(),
        )
        self.worker = ProjectionWorker(self.settings, "shop", self.projection, ports)
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def applied_position(self) -> int:
        serving = self.read_model.serving()
        covered = coverage(self.read_model.checkpoints(serving)) if serving else {}
        if len(covered) < PARTITIONS:
            return 0
        return min(position for _, position in covered.values())

    def views(self) -> dict[str, CustomerOrders]:
        found = {}
        for doc in self.read_model.scan():
            if isinstance(doc.view, CustomerOrders):
                found[doc.doc_id] = doc.view
        return found


@pytest.fixture
def running() -> Iterator[Running]:
    run = Running()
    run.thread.start()
    try:
        yield run
    finally:
        run.worker.stop()
        run.thread.join(timeout=30)
    assert not run.thread.is_alive()


def wait_for(condition: Callable[[], bool], what: str, patience: float = 20.0) -> None:
    deadline = time.monotonic() + patience
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # the worker's thread polls in-memory topics


def test_events_are_applied_checkpointed_and_committed_after_their_effects(
    running: Running,
) -> None:
    for n in range(9):
        running.relay.order_placed(f"c{n % 2}")
    running.relay.watermark()
    wait_for(lambda: running.applied_position() >= 9, "every partition checkpointed up to 9")
    views = running.views()
    assert {k: v.orders_placed for k, v in views.items()} == {"c0": 5, "c1": 4}
    ends = {p: running.broker.end(p) for p in running.broker.partitions_of(running.topic)}
    wait_for(
        lambda: all(running.broker.committed(running.group, p) == end for p, end in ends.items()),
        "the offsets committed to the end of each partition",
    )
    assert running.dead_letters.letters == []


def test_an_event_no_handler_can_apply_is_dead_lettered_and_the_rest_goes_on(
    running: Running,
) -> None:
    running.relay.order_placed("c0")
    running.relay.order_placed("c1", payload={"customer_id": "c1"})  # no lines: KeyError
    running.relay.order_placed("c1")
    running.relay.watermark()
    wait_for(lambda: running.applied_position() >= 3, "every partition checkpointed up to 3")
    assert {k: v.orders_placed for k, v in running.views().items()} == {"c0": 1, "c1": 1}
    (letter,) = running.dead_letters.letters
    assert letter.error.startswith("KeyError"), letter.error
    assert "\n" not in letter.error  # one line, for tables
    # The handler's traceback is kept, down to the handler's own frame.
    assert letter.traceback.startswith("Traceback (most recent call last):")
    assert "projections/customers.py" in letter.traceback
    assert letter.traceback.rstrip().endswith("KeyError: 'lines'")
    assert letter.headers[HEADER_POSITION] == b"2"
    partition = Partition(running.topic, int(letter.source.split("[")[1].split("]")[0]))
    assert partition in running.broker.partitions_of(running.topic)


def test_checkpoints_say_searchable_only_after_a_refresh_which_the_worker_paces(
    running: Running,
) -> None:
    def searchable() -> int:
        serving = running.read_model.serving()
        checkpoints = running.read_model.checkpoints(serving) if serving else []
        covered = coverage(checkpoints, searchable=True)
        return min((p for _, p in covered.values()), default=0) if len(covered) == 3 else 0

    for n in range(9):
        running.relay.order_placed(f"c{n % 2}")
    running.relay.watermark()
    wait_for(lambda: searchable() >= 9, "every partition searchable up to 9")
    # Twelve messages in batches of four, each written: one refresh for the
    # first batch, then at most one per second (the projection's freshness).
    assert running.read_model.refreshes <= 2
    for checkpoint in running.read_model.checkpoints():
        assert checkpoint.searchable is not None
        assert checkpoint.searchable <= checkpoint.position


class ZombieWritesDuringRefresh(MemoryIndexedReadModel):
    """A read model where another member of the group, replaced but still working
    (a "zombie"), writes to a partition and records its checkpoint while this
    worker's refresh runs: those writes come after the refresh, so it does not
    make them searchable."""

    def __init__(self, name: str, view: type[CustomerOrders], topic: str) -> None:
        super().__init__(name, view)
        self.topic = topic
        self.zombie: Checkpoint | None = None

    def refresh(self, index: str | None = None) -> None:
        super().refresh(index)
        if self.zombie is None:
            assert index is not None
            self.zombie = Checkpoint(
                projection=self.name,
                topic=self.topic,
                partition=0,
                offset=50,
                position=500,
                partitions=PARTITIONS,
                topics=(self.topic,),
                index=index,
                from_offset=0,
                searchable=0,  # its own writes up to 500: not refreshed by anyone yet
            )
            self.save_checkpoints([self.zombie])


def test_a_run_another_member_extended_after_our_refresh_is_not_called_searchable() -> None:
    """Regression: the worker refreshed, then read the stored run it had none for,
    and called everything in it searchable."""
    run = Running()
    model = ZombieWritesDuringRefresh(run.projection.name, CustomerOrders, run.topic)
    run.worker.read_model = run.worker._checkpoints.read_model = model
    run.worker.applier.read_model = model
    run.worker.barrier.read_model = model
    run.worker._prepare()
    while not any(p == 0 for p in _partitions_of_events(run)):
        run.relay.order_placed("c0")
    run.worker._process(run.worker.subscription.poll(100, 0.1))
    assert model.zombie is not None, "the worker refreshed"
    stored = {c.partition: c for c in model.checkpoints(model.serving())}
    # Our refresh came before the zombie's writes: whichever run the stored
    # checkpoint now is, it must not call them searchable.
    assert (stored[0].searchable or 0) < 500, stored[0]


def _partitions_of_events(run: Running) -> set[int]:
    return {p.partition for p in run.broker.partitions_of(run.topic) if run.broker.end(p) > 0}


def test_an_index_deleted_with_writes_not_yet_refreshed_does_not_stop_the_worker() -> None:
    """Regression: the worker kept an old index's unrefreshed writes to refresh
    once idle; a rebuild with --drop-old (or prune) deleted that index first,
    the refresh failed for good, and the worker stopped."""
    run = Running()
    worker, model = run.worker, run.read_model
    worker._prepare()
    old = model.serving()
    assert old is not None
    for n in range(2):  # the first batch is refreshed at once; the second waits its turn
        run.relay.order_placed(f"c{n}")
        worker._process(worker.subscription.poll(100, 0.1))
    assert worker._checkpoints.unrefreshed() == {old}
    new = model.next_version()
    model.create_index(new, alias=True)  # a rebuild swaps ...
    model.delete_index(old)  # ... and drops the index it replaced
    worker._refreshed_at -= worker.projection.freshness  # a refresh is due
    worker._refresh_trailing()
    assert worker._checkpoints.unrefreshed() == set()
    run.relay.order_placed("c9")
    run.relay.watermark()
    worker._process(worker.subscription.poll(100, 0.1))
    assert {c.index for c in model.checkpoints()} >= {new}


class CustomerOrdersWithNote(CustomerOrders):
    """The view after a deploy that gave it a field."""

    note: str = ""


def test_a_worker_refuses_to_start_on_a_view_its_index_does_not_map() -> None:
    run = Running()  # not started
    run.read_model.ensure()  # made by the code before the field
    run.read_model.view = CustomerOrdersWithNote
    run.relay.order_placed("c0")
    with pytest.raises(MappingOutdated) as refused:
        run.worker.run()
    assert refused.value.fields == ["note"]
    assert refused.value.index == run.read_model.serving()
    assert f"cqrskit projections rebuild {run.projection.name}" in str(refused.value)
    assert run.views() == {}  # nothing applied, nothing dead-lettered
    assert run.dead_letters.letters == []
