"""Consumer settings every reader of the relay's topics relies on (decision 0008)."""

from __future__ import annotations

import pytest

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.errors import ConfigurationError
from cqrskit.topology import Topology


def test_every_consumer_of_the_relays_topics_reads_committed_messages_only() -> None:
    settings = Settings()
    assert kafka_backend.consumer_config(settings)["isolation.level"] == "read_committed"
    assert kafka_backend.group_config(settings)["isolation.level"] == "read_committed"


def test_relays_of_one_outbox_share_one_transactional_id_and_no_other_does() -> None:
    settings = Settings(postgres_schema="tenant_a")
    same = Topology.of(settings, "shop").transactional_id("default")
    assert same == Topology.of(settings, "shop").transactional_id("default")
    others = {
        Topology.of(
            settings.model_copy(update={"postgres_schema": "tenant_b"}), "shop"
        ).transactional_id("default"),
        Topology.of(settings.model_copy(update={"topic_prefix": "other"}), "shop").transactional_id(
            "default"
        ),
        Topology.of(settings, "billing").transactional_id("default"),
        Topology.of(settings, "shop").transactional_id("audit"),
    }
    assert same not in others
    assert len(others) == 4


def test_a_lease_shorter_than_a_second_is_refused_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CQRSKIT_RELAY_LEASE", "0.1")
    with pytest.raises(ConfigurationError, match="CQRSKIT_RELAY_LEASE"):
        Settings.load()
