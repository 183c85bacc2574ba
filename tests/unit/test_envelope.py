"""The wire format's seal: what tells the relay's messages from anyone else's."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import SecretStr

from cqrskit import ConfigurationError, Settings
from cqrskit.envelope import WATERMARK_EVENT_TYPE, Seal

WHERE: dict[str, Any] = {"topic": "shop.order", "partition": 2, "key": b"agg-1"}


def test_a_seal_holds_only_for_the_message_it_was_made_for() -> None:
    seal = Seal()
    made = seal.event("shop.order", b"agg-1", b"Order.Placed", 41, b"{}")
    said: dict[str, Any] = {"event_type": b"Order.Placed", "position": 41, "value": b"{}"}
    assert seal.verifies(made, **WHERE, **said)
    changes: list[dict[str, Any]] = [
        {"position": 1_000_041},
        {"value": b'{"x": 1}'},
        {"event_type": b"Order.Cancelled"},
        {"key": b"agg-2"},
        {"topic": "shop.payment"},
    ]
    for changed in changes:
        assert not seal.verifies(made, **{**WHERE, **said, **changed}), changed
    assert not seal.verifies(None, **WHERE, **said)
    other = Seal(SecretStr("another relay's secret"))
    assert not other.verifies(made, **WHERE, **said)


def test_a_watermark_seal_names_its_partition() -> None:
    seal = Seal()
    mark = seal.watermark("shop.order", 2, 41, b"{}")
    said: dict[str, Any] = {
        "event_type": WATERMARK_EVENT_TYPE.encode(),
        "position": 41,
        "value": b"{}",
    }
    assert seal.verifies(mark, **WHERE, **said)
    assert not seal.verifies(mark, **{**WHERE, "partition": 3}, **said)


def test_a_seal_key_too_short_to_be_secret_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQRSKIT_RELAY_SEAL_KEY", "short")
    with pytest.raises(ConfigurationError, match="CQRSKIT_RELAY_SEAL_KEY"):
        Settings.load()


def test_one_applications_seal_does_not_vouch_for_another_sharing_its_topics() -> None:
    """Two applications under one topic prefix: each relay marks every topic of the prefix."""
    value = b'{"watermark": 40, "partitions": 6}'
    shop, library = Seal(application="shop"), Seal(application="library")
    seal = library.watermark("staging.order", 0, 40, value)
    common = {"topic": "staging.order", "partition": 0, "key": None, "position": 40}
    kind = WATERMARK_EVENT_TYPE.encode()
    assert library.verifies(seal, event_type=kind, value=value, **common)
    assert not shop.verifies(seal, event_type=kind, value=value, **common)
