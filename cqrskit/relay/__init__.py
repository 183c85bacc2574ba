"""The outbox relay: publishes the event store to Kafka in commit order.

See docs/decisions/0001-outbox.md for why the events table is the outbox.
"""

from cqrskit.relay._layout import (
    LayoutStatus,
    PostgresTopicLayouts,
    TopicLayout,
    layout_status,
    partition_for,
    request_repartition,
)
from cqrskit.relay._outbox import BEFORE_FIRST, OutboxRow, PostgresOutbox, RelayStatus, read_status
from cqrskit.relay._publisher import KafkaPublisher
from cqrskit.relay._relay import OutboxRelay

__all__ = [
    "BEFORE_FIRST",
    "KafkaPublisher",
    "LayoutStatus",
    "OutboxRelay",
    "OutboxRow",
    "PostgresOutbox",
    "PostgresTopicLayouts",
    "RelayStatus",
    "TopicLayout",
    "layout_status",
    "partition_for",
    "read_status",
    "request_repartition",
]
