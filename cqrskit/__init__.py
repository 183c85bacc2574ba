"""cqrskit: CQRS and event sourcing on PostgreSQL, Kafka and Elasticsearch.

Commands change aggregates whose events are stored in PostgreSQL; an outbox
relay publishes them to Kafka; projection workers build Elasticsearch read
models that query handlers serve. See ``docs/`` for the concepts.
"""

from cqrskit._version import __version__
from cqrskit.commands import (
    Command,
    CommandBus,
    CommandHandler,
    CommandHandlers,
    CommandResult,
    UnitOfWork,
)
from cqrskit.doctor import ServiceCheck, check_services
from cqrskit.domain import (
    Aggregate,
    CausationContext,
    DomainEvent,
    EventMetadata,
    Snapshot,
    causation,
    event,
)
from cqrskit.envelope import Envelope
from cqrskit.errors import (
    AggregateNotFound,
    AmbiguousRelayPosition,
    CommandRejected,
    ConcurrencyError,
    ConfigurationError,
    CqrskitError,
    DeadLetterRefused,
    EventTooLarge,
    FieldError,
    IdempotencyKeyReused,
    MessageTooLarge,
    PermanentError,
    PositionBeyondHead,
    RuleViolated,
    ServiceUnavailable,
    TransientError,
    UnknownCommand,
)
from cqrskit.eventstore import Application, IdempotencyRecord, Upcaster, Upcasters
from cqrskit.projections import (
    DELETE,
    UNCHANGED,
    EsType,
    Keyword,
    Projection,
    ProjectionWorker,
    Text,
    handles,
)
from cqrskit.relay import OutboxRelay
from cqrskit.settings import Settings

__all__ = [
    "DELETE",
    "UNCHANGED",
    "Aggregate",
    "AggregateNotFound",
    "AmbiguousRelayPosition",
    "Application",
    "CausationContext",
    "Command",
    "CommandBus",
    "CommandHandler",
    "CommandHandlers",
    "CommandRejected",
    "CommandResult",
    "ConcurrencyError",
    "ConfigurationError",
    "CqrskitError",
    "DeadLetterRefused",
    "DomainEvent",
    "Envelope",
    "EsType",
    "EventMetadata",
    "EventTooLarge",
    "FieldError",
    "IdempotencyKeyReused",
    "IdempotencyRecord",
    "Keyword",
    "MessageTooLarge",
    "OutboxRelay",
    "PermanentError",
    "PositionBeyondHead",
    "Projection",
    "ProjectionWorker",
    "RuleViolated",
    "ServiceCheck",
    "ServiceUnavailable",
    "Settings",
    "Snapshot",
    "Text",
    "TransientError",
    "UnitOfWork",
    "UnknownCommand",
    "Upcaster",
    "Upcasters",
    "__version__",
    "causation",
    "check_services",
    "event",
    "handles",
]
