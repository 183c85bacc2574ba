"""The outbox relay: publishes the event store to Kafka in commit order.

See docs/decisions/0001-outbox.md for why the events table is the outbox.
"""

from cqrskit.relay._outbox import BEFORE_FIRST, OutboxRow, PostgresOutbox, RelayStatus, read_status
from cqrskit.relay._publisher import KafkaPublisher
from cqrskit.relay._relay import DeliveryFailed, OutboxRelay, topic_for

__all__ = [
    "BEFORE_FIRST",
    "DeliveryFailed",
    "KafkaPublisher",
    "OutboxRelay",
    "OutboxRow",
    "PostgresOutbox",
    "RelayStatus",
    "read_status",
    "topic_for",
]
