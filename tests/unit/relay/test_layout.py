"""A topic's pinned layout: the partition of an event depends on its key and position only."""

from __future__ import annotations

import uuid

from cqrskit.relay import TopicLayout, partition_for


def test_one_step_spreads_keys_by_crc32_like_librdkafka() -> None:
    layout = TopicLayout("shop.order", ((0, 6),))
    # crc32(b"a") = 0xE8B7BE43 = 3904355907, and 3904355907 % 6 == 3
    assert partition_for(b"a", 6) == 3
    assert layout.partition(b"a", 1) == 3
    assert layout.partitions == 6


def test_a_resend_from_before_a_step_repeats_the_first_send() -> None:
    layout = TopicLayout("shop.order", ((0, 3), (1000, 7)))
    keys = [str(uuid.uuid4()).encode() for _ in range(200)]
    for key in keys:
        assert layout.partition(key, 1000) == partition_for(key, 3)
        assert layout.partition(key, 1) == partition_for(key, 3)
        assert layout.partition(key, 1001) == partition_for(key, 7)
    moved = [k for k in keys if partition_for(k, 3) != partition_for(k, 7)]
    assert moved, "the two counts must place some keys differently for this test to mean anything"


def test_only_events_after_a_move_name_the_layout_they_wait_for() -> None:
    layout = TopicLayout("shop.order", ((0, 3), (1000, 7), (5000, 12)))
    assert layout.barrier(1000) is None
    assert layout.barrier(1001) == b"1000:3"
    assert layout.barrier(5001) == b"5000:7"
    assert TopicLayout("shop.order", ((0, 3),)).barrier(10) is None
