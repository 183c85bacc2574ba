"""The outbox relay: publishes the event store to Kafka in commit order.

See docs/decisions/0001-outbox.md for why the events table is the outbox.
The relay speaks to its ports (:class:`Outbox`, :class:`Publisher`,
:class:`TopicLayouts`); their adapters are ``cqrskit.adapters.postgres.outbox``
(``PostgresOutbox``, ``read_status``), ``cqrskit.adapters.postgres.layouts``
(``PostgresTopicLayouts``, ``layout_status``, ``request_repartition``),
``cqrskit.adapters.kafka.publisher`` (``KafkaPublisher``) and the in-memory
pair in ``cqrskit.adapters.memory``; ``cqrskit.runtime.Runtime.relay`` wires them.
"""

from cqrskit.relay._layout import LayoutStatus, TopicLayout, partition_for
from cqrskit.relay._ports import (
    BEFORE_FIRST,
    Outbox,
    OutboxRow,
    Publisher,
    Publishers,
    RelayStatus,
    TopicLayouts,
)
from cqrskit.relay._relay import OutboxRelay, RelayOptions

__all__ = [
    "BEFORE_FIRST",
    "LayoutStatus",
    "Outbox",
    "OutboxRelay",
    "OutboxRow",
    "Publisher",
    "Publishers",
    "RelayOptions",
    "RelayStatus",
    "TopicLayout",
    "TopicLayouts",
    "partition_for",
]
