"""The DeadLetters port's contract: letters kept with why, listed until replayed.

Runs in memory and on the real Kafka (a dead-letter topic of its own per
test, deleted afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.kafka.dead_letters import KafkaDeadLetters
from cqrskit.adapters.memory.dead_letters import MemoryDeadLetters
from cqrskit.projections._ports import DeadLetters
from cqrskit.subscription import Message
from tests.integration.conftest import kafka_up, settings, unique_name

__all__ = ["kafka_up", "settings", "unique_name"]


@pytest.fixture(params=["memory", pytest.param("kafka", marks=pytest.mark.integration)])
def letters(request: pytest.FixtureRequest) -> Iterator[DeadLetters]:
    if request.param == "memory":
        yield MemoryDeadLetters("orders")
        return
    request.getfixturevalue("kafka_up")
    base: Settings = request.getfixturevalue("settings")
    name: str = request.getfixturevalue("unique_name")
    settings = base.model_copy(update={"topic_prefix": name})
    yield KafkaDeadLetters(settings, "shop", "orders")
    admin = kafka_backend.admin(settings)
    doomed = [t for t in admin.list_topics(timeout=30).topics if t.startswith(name)]
    for future in admin.delete_topics(doomed).values() if doomed else ():
        future.result(timeout=30)


def _consumed(offset: int, value: bytes) -> Message:
    return Message(
        topic="shop.order",
        partition=2,
        offset=offset,
        value=value,
        headers={"event-type": b"Order.Placed", "position": b"%d" % (offset + 10)},
        key=b"order-1",
    )


def test_a_flushed_letter_is_pending_with_its_reason_and_origin(letters: DeadLetters) -> None:
    letters.send(_consumed(7, b'{"a": 1}'), "on_placed", "KeyError: 'sku'")
    letters.flush()
    pending, end = letters.pending()
    assert [(p.key, p.value) for p in pending] == [(b"order-1", b'{"a": 1}')]
    (letter,) = pending
    assert letter.error == "KeyError: 'sku'"
    assert letter.source == "shop.order[2]@7"
    assert letter.headers["dlq.handler"] == b"on_placed"
    assert letter.headers["event-type"] == b"Order.Placed"
    assert end == letter.offset + 1


def test_replayed_letters_are_no_longer_pending_unless_asked_for(letters: DeadLetters) -> None:
    for offset in range(3):
        letters.send(_consumed(offset, b"v%d" % offset), "h", "boom")
    letters.flush()
    pending, end = letters.pending()
    assert [p.value for p in pending] == [b"v0", b"v1", b"v2"]
    letters.mark_replayed(end)
    assert letters.pending()[0] == []
    assert [p.value for p in letters.pending(include_replayed=True)[0]] == [b"v0", b"v1", b"v2"]


def test_a_letter_sent_again_keeps_its_origin_with_the_new_reason(letters: DeadLetters) -> None:
    letters.send(_consumed(4, b"v"), "h", "first reason")
    letters.flush()
    (first,), end = letters.pending()
    letters.mark_replayed(end)
    letters.resend(first, "h2", "second reason")
    letters.flush()
    (again,), _ = letters.pending()
    assert again.error == "second reason"
    assert again.source == "shop.order[2]@4"
    assert again.headers["dlq.handler"] == b"h2"
    assert again.offset > first.offset
