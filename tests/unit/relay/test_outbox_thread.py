"""The relay reads ahead and records on a helper thread, and that changes nothing it sends."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import cast

import psycopg
import pytest

from cqrskit.relay import OutboxRow, PostgresOutbox
from cqrskit.relay._relay import _OutboxThread


class ListOutbox:
    """An outbox over a list of positions; notes every read, record and thread."""

    def __init__(
        self, head: int, fail_after: int | None = None, fail_record: int | None = None
    ) -> None:
        self.head = head
        self.fail_after = fail_after
        self.fail_record = fail_record
        self.reads: list[int] = []
        self.records: list[int] = []
        self.threads: set[str] = set()
        self.recording = threading.Event()

    def record(self, position: int) -> None:
        self.recording.wait(5)
        if position == self.fail_record:
            raise psycopg.OperationalError("the session is gone")
        self.records.append(position)

    def read(self, after: int, limit: int) -> Sequence[OutboxRow]:
        self.reads.append(after)
        self.threads.add(threading.current_thread().name)
        if self.fail_after is not None and after >= self.fail_after:
            raise psycopg.OperationalError("the session is gone")
        last = min(self.head, after + limit)
        return [(p, "id", 1, "m:A.B", b"{}") for p in range(after + 1, last + 1)]


def pages_of(outbox: ListOutbox, page_size: int) -> _OutboxThread:
    return _OutboxThread(cast(PostgresOutbox, outbox), page_size)


def test_every_event_comes_once_in_order_and_the_next_full_page_is_read_ahead() -> None:
    outbox = ListOutbox(head=25)
    pages = pages_of(outbox, 10)
    seen: list[int] = []
    after = 0
    try:
        while rows := pages.read(after):
            seen += [row[0] for row in rows]
            after = rows[-1][0]
    finally:
        pages.close()
    assert seen == list(range(1, 26))
    # 0 by the caller; 10 and 20 ahead after the full pages; 25 by the caller again.
    assert outbox.reads == [0, 10, 20, 25]
    assert any(name.startswith("cqrskit-relay-pg") for name in outbox.threads)


def test_a_page_read_ahead_for_another_position_is_not_used() -> None:
    outbox = ListOutbox(head=100)
    pages = pages_of(outbox, 10)
    try:
        pages.read(0)  # reads 10 ahead
        rows = pages.read(50)  # a caller that moved elsewhere reads afresh
    finally:
        pages.close()
    assert [row[0] for row in rows] == list(range(51, 61))


def test_a_failed_read_ahead_fails_the_next_read() -> None:
    outbox = ListOutbox(head=100, fail_after=10)
    pages = pages_of(outbox, 10)
    try:
        pages.read(0)
        with pytest.raises(psycopg.OperationalError):
            pages.read(10)
    finally:
        pages.close()


def test_close_drops_a_pending_read_and_its_error() -> None:
    outbox = ListOutbox(head=100, fail_after=10)
    pages = pages_of(outbox, 10)
    pages.read(0)
    pages.close()  # does not raise
    assert outbox.reads == [0, 10]


def test_positions_are_recorded_in_order_and_reported_once_done() -> None:
    outbox = ListOutbox(head=0)
    helper = pages_of(outbox, 10)
    try:
        for position in (10, 20, 30):
            helper.record(position)
        assert helper.recorded() is None  # the commits have not happened yet
        outbox.recording.set()
        assert helper.recorded(wait=True) == 30
        assert helper.recorded() is None
    finally:
        helper.close()
    assert outbox.records == [10, 20, 30]


def test_a_failed_record_is_raised_and_nothing_after_it_reported() -> None:
    outbox = ListOutbox(head=0, fail_record=20)
    outbox.recording.set()
    helper = pages_of(outbox, 10)
    try:
        for position in (10, 20, 30):
            helper.record(position)
        with pytest.raises(psycopg.OperationalError):
            helper.recorded(wait=True)
    finally:
        helper.close()


def test_close_lets_the_records_asked_for_run() -> None:
    outbox = ListOutbox(head=0)
    outbox.recording.set()
    helper = pages_of(outbox, 10)
    helper.record(10)
    helper.record(20)
    helper.close()
    assert outbox.records == [10, 20]
