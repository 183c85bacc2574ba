"""The one error tree of cqrskit.

Every error cqrskit raises is a :class:`CqrskitError`. Its two branches say
whether trying again can help::

    CqrskitError
    ├── TransientError                retrying later may succeed
    │   ├── ServiceUnavailable        a service could not be reached or answered
    │   ├── ConcurrencyError          an aggregate changed under us, retries spent
    │   ├── VersionConflict           one attempt lost a race (the bus retries it)
    │   ├── DeadLetterRefused         Kafka did not keep a dead letter (the batch is held)
    │   ├── MessageTooLarge           the broker refuses an event's message as too large
    │   ├── DocumentsKeptConflicting  other writers kept changing the same documents
    │   ├── SagaConflict              another runner moved a saga instance on first
    │   ├── StaleRead                 a read model had not applied a position in time
    │   ├── ReadRefused               a read refused at once, to protect a read model:
    │   │   ├── CircuitOpen           its circuit breaker is open
    │   │   └── Overloaded            its reads or waits are at their limit
    │   └── relay                     the relay starts over from its recorded position:
    │       ├── DeliveryFailed        a transaction was not committed
    │       ├── KafkaTrouble          librdkafka raised mid-publish
    │       ├── LostSession           the PostgreSQL session (and the leadership) was lost
    │       └── LeaseLost             the lease expired or another relay leads
    └── PermanentError                retrying the same thing fails the same way
        ├── ConfigurationError        a setting is malformed (names the variable)
        ├── MappingOutdated           a view has fields its index's mapping lacks
        ├── CommandRejected           a command failed validation (field paths)
        │   └── EventTooLarge         an event would exceed Kafka's message limit
        ├── RuleViolated              the aggregate's state forbids the command
        ├── UnknownCommand            no handler is registered for a command type
        ├── AggregateNotFound         no aggregate with that id
        ├── IdempotencyKeyReused      a key came back with a different command
        ├── InvalidEventName          an aggregate's or event's stored name is malformed
        │   └── DuplicateEventName    two classes claim one stored name
        ├── UnknownEventName          a stored event names no class the code registers
        ├── PositionBeyondHead        a position past the event store's last event
        ├── AmbiguousRelayPosition    an old relay position could be several apps'
        ├── SchemaNotReady            the schema is missing, behind, or newer than the code
        ├── QueryRejected             a query failed validation (field paths)
        ├── UnknownQuery              no handler is registered for a query type
        ├── NotFound                  a query for one document found none
        └── BadCursor                 a cursor this service did not issue, or expired

Driver errors (psycopg, confluent-kafka, elasticsearch) are translated into
this tree at the adapter edge, in one module per driver
(``cqrskit/adapters/<driver>/_errors.py``), and re-raised ``from`` the
original, so callers never have to import a driver to handle a failure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

__all__ = [
    "AggregateNotFound",
    "AmbiguousRelayPosition",
    "BadCursor",
    "CircuitOpen",
    "CommandRejected",
    "ConcurrencyError",
    "ConfigurationError",
    "CqrskitError",
    "DeadLetterRefused",
    "DeliveryFailed",
    "DocumentsKeptConflicting",
    "DuplicateEventName",
    "EventTooLarge",
    "FieldError",
    "IdempotencyKeyReused",
    "InvalidEventName",
    "KafkaTrouble",
    "LeaseLost",
    "LostSession",
    "MappingOutdated",
    "MessageTooLarge",
    "NotFound",
    "Overloaded",
    "PermanentError",
    "PositionBeyondHead",
    "QueryRejected",
    "ReadRefused",
    "RuleViolated",
    "SagaConflict",
    "SchemaNotReady",
    "ServiceUnavailable",
    "StaleRead",
    "TransientError",
    "UnknownCommand",
    "UnknownEventName",
    "UnknownQuery",
    "VersionConflict",
]


class CqrskitError(Exception):
    """Base of every error cqrskit raises."""

    #: True when the same call may succeed if tried again later.
    transient: bool = False


class TransientError(CqrskitError):
    """Retrying later may succeed: a service was down or state moved under us."""

    transient = True


class PermanentError(CqrskitError):
    """Retrying the same call cannot succeed; the input or the setup is wrong."""

    transient = False


class ServiceUnavailable(TransientError):
    """A service (PostgreSQL, Kafka, Elasticsearch) could not be reached.

    Carries the service name, the address tried, the reason and, when the
    address came from a setting, the environment variable that sets it:
    "Kafka is unreachable at 127.0.0.1:9 (connection refused); check
    CQRSKIT_KAFKA_BOOTSTRAP".
    """

    def __init__(self, service: str, address: str, reason: str, variable: str | None = None):
        self.service = service
        self.address = address
        self.reason = reason
        self.variable = variable
        check = f"; check {variable}" if variable else ""
        super().__init__(f"{service} is unreachable at {address} ({reason}){check}")


class ConcurrencyError(TransientError):
    """An aggregate kept changing under a command until its retries ran out."""

    def __init__(self, aggregate_id: UUID, attempts: int, detail: str = ""):
        self.aggregate_id = aggregate_id
        self.attempts = attempts
        message = (
            f"aggregate {aggregate_id} was changed by another writer on each of {attempts} attempts"
        )
        super().__init__(f"{message}: {detail}" if detail else message)


class VersionConflict(TransientError):
    """Another writer appended to an aggregate first, in one attempt of a command.

    The command bus catches it and runs the command again on the new state;
    only when its retries run out does :class:`ConcurrencyError` reach the caller.
    """

    def __init__(self, aggregate_id: UUID, detail: str):
        self.aggregate_id = aggregate_id
        super().__init__(detail)


class DeadLetterRefused(TransientError):
    """Kafka did not write a dead letter: the topic refused it, or did not answer in time.

    The event is not marked failed and its offset is not committed; the
    worker retries until the topic takes the letter. Carries the topic, the
    event's position (None for a message that is not an event) and where it
    was consumed from, the broker's reason, and how many letters failed.
    """

    def __init__(self, topic: str, position: int | None, source: str, reason: str, count: int = 1):
        self.topic = topic
        self.position = position
        self.source = source
        self.reason = reason
        self.count = count
        what = f"position {position} ({source})" if position is not None else source
        more = f" (and {count - 1} more)" if count > 1 else ""
        super().__init__(f"dead letter of {what} not written to {topic}: {reason}{more}")


class MessageTooLarge(TransientError):
    """The broker refuses the message of a stored event as too large.

    Transient: the relay holds its position (nothing after the event is
    published ahead of it) and tries again slowly; once the topic's
    ``max.message.bytes`` is raised above ``size`` it goes on by itself.
    """

    def __init__(
        self, position: int, aggregate_id: UUID | str, event_type: str, size: int, topic: str
    ):
        self.position = position
        self.aggregate_id = aggregate_id
        self.event_type = event_type
        self.size = size
        self.topic = topic
        super().__init__(
            f"the broker refuses as too large the message of position {position} (event "
            f"{event_type} of aggregate {aggregate_id}, {size:,} bytes) on topic {topic!r}; "
            "the relay holds its position and tries again slowly: raise the topic's "
            f"max.message.bytes above {size:,} and it goes on by itself"
        )


class DocumentsKeptConflicting(TransientError):
    """Other writers kept changing the same documents; the batch will be retried."""


class SagaConflict(TransientError):
    """Another runner changed a saga instance first; the reaction is run again."""


class StaleRead(TransientError):
    """The read model had not applied the asked position within the wait."""

    def __init__(self, view: str, position: int, waited: float):
        self.view = view
        self.position = position
        self.waited = waited
        super().__init__(
            f"read model {view!r} has not applied position {position} after {waited:.1f}s; "
            "retry, or accept a stale answer"
        )


class ReadRefused(TransientError):
    """The query side refused a read at once, to protect a read model's store.

    ``retry_after`` says in how many seconds asking again may succeed (an
    HTTP API sends it as ``Retry-After`` with a 503).
    """

    def __init__(self, view: str, message: str, retry_after: float):
        self.view = view
        self.retry_after = retry_after
        super().__init__(message)


class CircuitOpen(ReadRefused):
    """A read model's circuit breaker is open: its store failed too often of late."""

    def __init__(self, view: str, failures: int, calls: int, retry_after: float):
        self.failures = failures
        self.calls = calls
        super().__init__(
            view,
            f"read model {view!r} is not being asked: {failures} of its last {calls} "
            f"reads failed; trying again in {retry_after:.1f}s",
            retry_after,
        )


class Overloaded(ReadRefused):
    """A read model already has as many reads (or read-your-writes waits) as allowed."""

    def __init__(self, view: str, what: str, limit: int):
        self.what = what
        self.limit = limit
        super().__init__(
            view,
            f"read model {view!r} already has {limit} {what} in progress (the limit); retry",
            1.0,
        )


class DeliveryFailed(TransientError):
    """A relay transaction was not committed (a message refused, the transaction
    aborted by the broker); the relay starts over from its recorded position."""


class KafkaTrouble(TransientError):
    """librdkafka raised mid-publish; the relay starts over from its position."""


class LostSession(TransientError):
    """The relay's PostgreSQL session (and with it the leadership) was lost."""


class LeaseLost(TransientError):
    """A relay did not renew its lease in time, or another relay leads now.

    It stops publishing, drops its producer and stands by again.
    """


class ConfigurationError(PermanentError):
    """A setting is malformed; the message names the variable and the value.

    A file that cannot be read as settings (``value`` None) is named alone.
    """

    def __init__(self, variable: str, value: object, reason: str):
        self.variable = variable
        self.value = value
        self.reason = reason
        shown = variable if value is None else f"{variable}={value!r}"
        super().__init__(f"{shown} is invalid: {reason}")


class MappingOutdated(PermanentError):
    """A projection's view has fields the mapping of the index in service lacks.

    The index's strict mapping would refuse every document with them, so a
    worker refuses to start; rebuilding builds a new index with the view's
    mapping and swaps it in. Carries the projection, the index and the fields.
    """

    def __init__(self, projection: str, index: str, fields: Sequence[str]):
        self.projection = projection
        self.index = index
        self.fields = list(fields)
        named = ", ".join(self.fields)
        super().__init__(
            f"projection {projection}: the view has fields that the mapping of index "
            f"{index} lacks ({named}), so Elasticsearch would refuse its documents; "
            f"run 'cqrskit projections rebuild {projection}' to index it with the view's "
            "mapping (the index in service answers queries until the swap), then start "
            "the worker again"
        )


@dataclass(frozen=True)
class FieldError:
    """One reason a command or payload was refused, at one field path."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class CommandRejected(PermanentError):
    """A command (or an event payload) failed validation; nothing was stored."""

    def __init__(self, command_type: str, errors: Sequence[FieldError]):
        self.command_type = command_type
        self.errors = tuple(errors)
        details = "; ".join(str(e) for e in self.errors)
        super().__init__(f"{command_type} refused: {details}")


class EventTooLarge(CommandRejected):
    """An event would become a Kafka message larger than ``max_event_bytes``; nothing stored.

    The size is that of the message the relay would produce (envelope, key
    and headers), so an event refused here is one the broker would refuse.
    """

    def __init__(
        self, command_type: str, event_type: str, aggregate_id: UUID, size: int, limit: int
    ):
        self.event_type = event_type
        self.aggregate_id = aggregate_id
        self.size = size
        self.limit = limit
        reason = (
            f"event {event_type} of aggregate {aggregate_id} would be a {size:,}-byte Kafka "
            f"message, above the limit of {limit:,} bytes (CQRSKIT_MAX_EVENT_BYTES)"
        )
        super().__init__(command_type, [FieldError(event_type, reason)])


class RuleViolated(PermanentError):
    """A business rule refuses the command in the aggregate's current state.

    Raise it from aggregate methods (for example: cancelling a paid order).
    """


class UnknownCommand(PermanentError):
    """No handler is registered for the command's type."""

    def __init__(self, command_type: str):
        self.command_type = command_type
        super().__init__(f"no handler is registered for command type {command_type!r}")


class AggregateNotFound(PermanentError):
    """No aggregate has the given id."""

    def __init__(self, aggregate_id: UUID, aggregate_type: str | None = None):
        self.aggregate_id = aggregate_id
        self.aggregate_type = aggregate_type
        kind = aggregate_type or "aggregate"
        super().__init__(f"{kind} {aggregate_id} not found")


class IdempotencyKeyReused(PermanentError):
    """An idempotency key was sent again with a different command."""

    def __init__(self, key: str, command_type: str):
        self.key = key
        self.command_type = command_type
        super().__init__(
            f"idempotency key {key!r} was already used for a different {command_type} "
            "command; use a new key for a new command"
        )


class InvalidEventName(PermanentError):
    """An aggregate's or event's stored name is malformed or cannot be used.

    Raised when the class is defined, so a bad name never reaches the store.
    """


class DuplicateEventName(InvalidEventName):
    """Two classes claim one stored name; raised when the second is defined."""

    def __init__(self, name: str, first: str, second: str):
        self.name = name
        self.first = first
        self.second = second
        super().__init__(
            f"two classes claim the stored name {name!r}: {first} and {second}; give one of "
            "them another name: TOPIC = '...' on an aggregate, @event('...', topic='...') "
            "on an event"
        )


class UnknownEventName(PermanentError):
    """A stored event (or the aggregate its first event names) matches no class.

    The class was moved or renamed since the event was stored, or the
    module that defines it has not been imported.
    """

    def __init__(self, name: str, aggregate_id: UUID | str):
        self.name = name
        self.aggregate_id = aggregate_id
        guess = name.rpartition(":")[2]
        super().__init__(
            f"stored name {name!r} of aggregate {aggregate_id} matches no class: import the "
            "module that defines it, or map the old name to the class that reads it now in "
            f"the application's old_names = {{{name!r}: {guess}}}"
        )


class PositionBeyondHead(PermanentError):
    """A position was asked for that the event store has not reached."""

    def __init__(self, position: int, head: int, what: str = "position"):
        self.position = position
        self.head = head
        super().__init__(
            f"{what} {position} is past the event store's head, position {head}: "
            f"no event there yet; give a position up to {head}"
        )


class AmbiguousRelayPosition(PermanentError):
    """A relay position recorded before positions were kept per application.

    The schema holds the events of several applications, so cqrskit cannot
    tell whose position it is; the operator assigns or drops it (the message
    gives both statements) and starts the relay again.
    """

    def __init__(self, schema: str, relay_name: str, position: int, applications: Sequence[str]):
        self.schema = schema
        self.relay_name = relay_name
        self.position = position
        self.applications = tuple(applications)
        table = f'"{schema}".cqrskit_relay'
        row = f"WHERE application = '' AND name = '{relay_name}'"
        super().__init__(
            f"{table} holds the position {position} of relay {relay_name!r}, recorded before "
            "positions were kept per application, and schema "
            f"{schema!r} holds the events of {', '.join(self.applications)}: it may be any "
            "of theirs, so no relay starts from it. Either assign it to the application "
            f"whose relay recorded it: UPDATE {table} SET application = '<application>' {row}; "
            "or drop it, and every application's relay publishes from the start (consumers "
            f"skip what they already applied): DELETE FROM {table} {row}"
        )


class SchemaNotReady(PermanentError):
    """The application's schema is missing, has migrations pending, or is newer than the code.

    Raised by every running process at start (the command side, the relay,
    the workers, the saga runners), which never create or migrate tables
    themselves: ``cqrskit db init`` does (or its ``--sql``, applied by a DBA).
    """

    def __init__(self, schema: str, application: str, reason: str, remedy: str):
        self.schema = schema
        self.application = application
        self.reason = reason
        super().__init__(
            f"schema {schema!r} of application {application!r} is not ready: {reason}; {remedy}"
        )


class QueryRejected(PermanentError):
    """A query's data failed validation; lists each field path and reason."""

    def __init__(self, query_type: str, errors: Sequence[FieldError]):
        self.query_type = query_type
        self.errors = tuple(errors)
        details = "; ".join(str(e) for e in self.errors)
        super().__init__(f"{query_type} refused: {details}")


class UnknownQuery(PermanentError):
    """No handler is registered for the query's type."""

    def __init__(self, query_type: str):
        self.query_type = query_type
        super().__init__(f"no handler is registered for query type {query_type!r}")


class NotFound(PermanentError):
    """A query that answers one document found none."""

    def __init__(self, query_type: str, view: str):
        self.query_type = query_type
        self.view = view
        super().__init__(f"no document of read model {view!r} answers this {query_type}")


class BadCursor(PermanentError):
    """A cursor that this service did not issue, or that expired."""
