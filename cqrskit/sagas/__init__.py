"""Process managers (sagas): multi-step workflows driven by events, with compensation.

A process manager consumes events from Kafka as a projection worker does,
keeps one instance per correlated id (an order, say) whose state and
history live in PostgreSQL, and reacts by sending commands, each with an
idempotency key derived from the event that caused it, so that seeing an
event twice sends nothing new. Deadlines are durable timers in PostgreSQL.
A failed step runs the compensations of the completed steps in reverse.

The runner reads through two ports: a :class:`SagaStore` (PostgreSQL's is
``cqrskit.adapters.postgres.saga_store.PostgresSagaStore``; the in-memory
one for tests is ``cqrskit.testing.MemorySagaStore``) and a
:class:`~cqrskit.subscription.Subscription` (Kafka's consumer group);
``cqrskit.runtime.Runtime.saga_runner`` wires them.
"""

from cqrskit.sagas._manager import (
    ProcessManager,
    Step,
    by_aggregate,
    by_payload,
    on_deadline,
    reacts,
)
from cqrskit.sagas._ports import SagaStore
from cqrskit.sagas._records import HistoryEntry, PlannedReaction, SagaInstance, StepRecord
from cqrskit.sagas._runner import SagaRunner, Trigger, react

__all__ = [
    "HistoryEntry",
    "PlannedReaction",
    "ProcessManager",
    "SagaInstance",
    "SagaRunner",
    "SagaStore",
    "Step",
    "StepRecord",
    "Trigger",
    "by_aggregate",
    "by_payload",
    "on_deadline",
    "react",
    "reacts",
]
