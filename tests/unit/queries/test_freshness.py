"""The rule that turns an index's checkpoints into what it holds (decision 0011)."""

from __future__ import annotations

from cqrskit.checkpoints import FILL_WRITER, WORKER_WRITER, Checkpoint, coverage


def checkpoint(writer: str, start: int, offset: int, position: int) -> Checkpoint:
    return Checkpoint(
        projection="orders",
        topic="orders",
        partition=0,
        writer=writer,
        from_offset=start,
        offset=offset,
        position=position,
    )


def test_an_index_only_workers_wrote_is_covered_by_their_run() -> None:
    assert coverage([checkpoint(WORKER_WRITER, 0, 40, 400)]) == {("orders", 0): (40, 400)}


def test_a_worker_run_past_a_gap_after_the_fill_counts_for_nothing() -> None:
    """The live worker's first batch after a swap starts past what the
    rebuild filled: the writes in between went to the old index only."""
    found = coverage([checkpoint(FILL_WRITER, 0, 30, 300), checkpoint(WORKER_WRITER, 35, 50, 500)])
    assert found == {("orders", 0): (30, 300)}


def test_a_worker_run_the_fill_joins_extends_it() -> None:
    found = coverage([checkpoint(FILL_WRITER, 0, 36, 360), checkpoint(WORKER_WRITER, 35, 50, 500)])
    assert found == {("orders", 0): (50, 500)}


def test_a_fill_beyond_the_worker_run_stands_alone() -> None:
    found = coverage([checkpoint(FILL_WRITER, 0, 60, 600), checkpoint(WORKER_WRITER, 35, 50, 500)])
    assert found == {("orders", 0): (60, 600)}
