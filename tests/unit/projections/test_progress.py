"""How a worker's checkpoints record what is searchable, not only applied (decision 0020)."""

from __future__ import annotations

from cqrskit.adapters.memory.read_model import MemoryIndexedReadModel
from cqrskit.checkpoints import Checkpoint
from cqrskit.projections._progress import Span, WorkerCheckpoints
from projections.customers import CustomerOrders

INDEX = "customers-v1"


def recorder() -> tuple[WorkerCheckpoints, MemoryIndexedReadModel]:
    model = MemoryIndexedReadModel("customers", CustomerOrders)
    return WorkerCheckpoints(model, ["shop.Order"]), model


def span(partition: int, start: int, offset: int, position: int) -> Span:
    return Span("shop.Order", partition, start, offset, position)


def searchable(checkpoints: list[Checkpoint]) -> dict[int, tuple[int | None, int]]:
    return {c.partition: (c.searchable, c.position) for c in checkpoints}


def test_effects_not_refreshed_keep_the_searchable_position_back() -> None:
    progress, _ = recorder()
    first = progress.record(INDEX, [span(0, 0, 5, 50)], {}, written={("shop.Order", 0): 1})
    assert searchable(first) == {0: (0, 50)}
    assert progress.unrefreshed() == {INDEX}
    later = progress.record(
        INDEX, [span(0, 5, 9, 90)], {}, written={("shop.Order", 0): 1}, refreshed=True
    )
    assert searchable(later) == {0: (90, 90)}
    assert progress.unrefreshed() == set()


def test_a_refresh_brings_every_lagging_partition_up_not_only_the_batch_s() -> None:
    progress, _ = recorder()
    progress.record(
        INDEX, [span(0, 0, 5, 50), span(1, 0, 3, 40)], {}, written={("shop.Order", 0): 1}
    )
    refreshed = progress.record(
        INDEX, [span(1, 3, 4, 60)], {}, written={("shop.Order", 1): 41}, refreshed=True
    )
    assert searchable(refreshed) == {0: (50, 50), 1: (60, 60)}


def test_a_partition_with_nothing_unrefreshed_moves_on_with_its_watermarks() -> None:
    progress, _ = recorder()
    progress.record(INDEX, [span(0, 0, 5, 50)], {}, written={("shop.Order", 0): 1}, refreshed=True)
    moved = progress.record(INDEX, [span(0, 5, 6, 70)], {})  # a watermark: no effect
    assert searchable(moved) == {0: (70, 70)}


def test_a_run_taken_over_from_another_worker_is_not_trusted_until_a_refresh() -> None:
    progress, model = recorder()
    # Another worker applied up to 80 and had 60 searchable, then lost the partition.
    theirs = Checkpoint(
        projection="customers",
        topic="shop.Order",
        partition=0,
        offset=8,
        position=80,
        partitions=1,
        topics=("shop.Order",),
        index=INDEX,
        searchable=60,
    )
    model.save_checkpoints([theirs])
    taken = progress.record(INDEX, [span(0, 8, 9, 90)], {})  # a watermark only, ours
    assert searchable(taken) == {0: (60, 90)}
    assert progress.unrefreshed() == {INDEX}  # a lagging run asks for a refresh
    trailing = progress.record(INDEX, [], {}, refreshed=True)
    assert searchable(trailing) == {0: (90, 90)}


def test_forgotten_partitions_are_never_written_back() -> None:
    progress, _ = recorder()
    progress.record(
        INDEX, [span(0, 0, 5, 50), span(1, 0, 3, 40)], {}, written={("shop.Order", 0): 1}
    )
    progress.forget([("shop.Order", 1)])
    refreshed = progress.record(INDEX, [], {}, refreshed=True)
    assert set(searchable(refreshed)) == {0}


def test_a_run_extended_backwards_is_searchable_only_below_the_effects_written_now() -> None:
    """Regression: a member resumed from an offset before the stored run's first
    (the offsets committed before a crash lagged) wrote the events before it, and
    the joined run kept the searchable position it had, above those writes."""
    progress, model = recorder()
    theirs = Checkpoint(
        projection="customers",
        topic="shop.Order",
        partition=0,
        offset=85,
        position=182,
        partitions=1,
        topics=("shop.Order",),
        index=INDEX,
        from_offset=81,
        searchable=182,  # their writes, from offset 81, were refreshed
    )
    model.save_checkpoints([theirs])
    joined = progress.record(INDEX, [span(0, 79, 85, 182)], {}, written={("shop.Order", 0): 170})
    assert searchable(joined) == {0: (169, 182)}  # 170, written now at offset 80, is not yet
    assert progress.unrefreshed() == {INDEX}
    assert searchable(progress.record(INDEX, [], {}, refreshed=True)) == {0: (182, 182)}
