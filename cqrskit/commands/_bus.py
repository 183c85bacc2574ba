from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import IntegrityError, PersistenceError, Recording
from pydantic import ValidationError
from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from cqrskit.commands._command import Command, CommandResult
from cqrskit.commands._handlers import CommandHandler, CommandHandlers, field_errors
from cqrskit.commands._unit_of_work import UnitOfWork
from cqrskit.domain import Aggregate, CausationContext, causation
from cqrskit.envelope import event_type_of, message_size
from cqrskit.errors import (
    CommandRejected,
    ConcurrencyError,
    EventTooLarge,
    IdempotencyKeyReused,
    PermanentError,
    ServiceUnavailable,
    VersionConflict,
)
from cqrskit.eventstore import Application, IdempotencyRecord
from cqrskit.observability import command_span

__all__ = ["CommandBus"]


class CommandBus:
    """Dispatches commands to their handlers and appends the resulting events.

    Each attempt loads fresh aggregates, runs the handler, and appends every
    new event in one transaction. If another writer got there first, the
    attempt is thrown away and run again (up to ``settings.command_retries``
    times, with jittered exponential backoff), so no update is ever lost.
    """

    def __init__(self, application: Application, handlers: CommandHandlers):
        self.application = application
        self.handlers = handlers

    def dispatch(
        self,
        command: Command,
        *,
        idempotency_key: str | None = None,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
        traceparent: str | None = None,
    ) -> CommandResult:
        """Handle ``command`` and append its events; return what it did.

        With ``idempotency_key``, sending the same command again (from any
        process, after any restart, or at the same moment) appends nothing
        and returns the first result with ``replayed=True``. That holds for a
        command that changed nothing too (its key is recorded all the same),
        and for a twin that raced the first and was refused by the state the
        first left: a refusal is checked against the key before it is raised.

        Raises:
            UnknownCommand: no handler is registered for the command's type.
            CommandRejected: an event's payload failed validation; nothing stored.
            EventTooLarge: an event would be a Kafka message larger than
                ``settings.max_event_bytes``; nothing stored.
            AggregateNotFound: the handler asked for an aggregate that does not exist.
            IdempotencyKeyReused: the key was used before for a different command.
            ConcurrencyError: the aggregate kept changing; retries ran out.
            ServiceUnavailable: the event store could not be reached.
        """
        handler = self.handlers.handler_for(command)
        fingerprint = command.fingerprint() if idempotency_key else ""
        if idempotency_key:
            earlier = self._find_key(idempotency_key)
            if earlier is not None:
                return _replay(earlier, fingerprint, command)
        command_id = uuid4()
        with command_span(command.command_type, traceparent) as span_traceparent:
            context = CausationContext(
                correlation_id=correlation_id or causation_id or command_id,
                causation_id=causation_id or command_id,
                traceparent=span_traceparent,
            )
            return self._dispatch(command, handler, idempotency_key, fingerprint, context)

    def _dispatch(
        self,
        command: Command,
        handler: CommandHandler[Any],
        idempotency_key: str | None,
        fingerprint: str,
        context: CausationContext,
    ) -> CommandResult:
        attempts = self.application.settings.command_retries
        retrying = Retrying(
            retry=retry_if_exception_type(VersionConflict),
            stop=stop_after_attempt(attempts),
            wait=wait_random_exponential(multiplier=0.005, max=0.25),
        )
        try:
            for attempt in retrying:
                with attempt:
                    return self._attempt(command, handler, context, idempotency_key, fingerprint)
        except RetryError as exc:
            conflict = exc.last_attempt.exception()
            assert isinstance(conflict, VersionConflict)
            raise ConcurrencyError(conflict.aggregate_id, attempts, str(conflict)) from conflict
        raise AssertionError("unreachable: tenacity either returns or raises")

    def _attempt(
        self,
        command: Command,
        handler: CommandHandler[Any],
        context: CausationContext,
        key: str | None,
        fingerprint: str,
    ) -> CommandResult:
        uow = UnitOfWork(self.application)
        try:
            with causation(context):
                primary = handler(command, uow)
        except (ValidationError, PermanentError) as exc:
            # A twin with the same key may have committed between our look-up
            # and the handler's load: refused against the state it left, we
            # answer with its outcome, which is this command's own.
            earlier = self._find_key(key) if key else None
            if earlier is not None:
                return _replay(earlier, fingerprint, command)
            if isinstance(exc, ValidationError):
                raise CommandRejected(command.command_type, field_errors(exc)) from exc
            raise
        if primary is not None:
            uow.add(primary)
        changed = [a for a in uow.aggregates if a.pending_events]
        subject = primary or (changed[0] if changed else None)
        if subject is None:
            raise ValueError(
                f"the handler of {command.command_type} returned no aggregate and changed none"
            )
        if not changed and not key:
            return CommandResult(
                aggregate_id=subject.id, version=subject.version, position=None, events=0
            )
        self._refuse_oversized(command, changed)
        record = None
        if key:
            # Recorded even when nothing changed: a retry after the state has
            # moved on must get this outcome, not act on the new state.
            record = IdempotencyRecord(
                key, fingerprint, command.command_type, subject.id, subject.version, None
            )
        try:
            recordings = self._save(changed, record)
        except IntegrityError as exc:
            if key:
                earlier = self._find_key(key)
                if earlier is not None:
                    return _replay(earlier, fingerprint, command)
            raise VersionConflict(subject.id, str(exc).splitlines()[0]) from exc
        positions = [r.notification.id for r in recordings if r.notification.id is not None]
        return CommandResult(
            aggregate_id=subject.id,
            version=subject.version,
            position=max(positions) if positions else None,
            events=len(recordings),
        )

    def _refuse_oversized(self, command: Command, aggregates: Sequence[Aggregate]) -> None:
        """Raise EventTooLarge for the first event the broker would refuse as too large."""
        limit = self.application.settings.max_event_bytes
        to_stored = self.application.mapper.to_stored_event
        for aggregate in aggregates:
            for event in aggregate.pending_events:
                stored = to_stored(event)
                size = message_size(
                    aggregate_id=stored.originator_id,
                    aggregate_version=stored.originator_version,
                    topic=stored.topic,
                    state=stored.state,
                )
                if size > limit:
                    event_type = event_type_of(stored.topic)[0]
                    raise EventTooLarge(command.command_type, event_type, aggregate.id, size, limit)

    def _save(
        self, aggregates: Sequence[Aggregate], record: IdempotencyRecord | None
    ) -> list[Recording[UUID]]:
        kwargs = {"idempotency": record} if record is not None else {}
        try:
            return self.application.save(*aggregates, **kwargs)
        except IntegrityError:
            raise
        except PersistenceError as exc:
            if record is not None and self._find_key(record.key) is not None:
                # The append failed because a twin with the same key committed
                # first; report it as the conflict it is, so it is replayed.
                raise IntegrityError(f"idempotency key {record.key!r} taken") from exc
            raise self._unavailable(exc) from exc

    def _find_key(self, key: str) -> IdempotencyRecord | None:
        try:
            return self.application.find_idempotency(key)
        except PersistenceError as exc:
            raise self._unavailable(exc) from exc

    def _unavailable(self, exc: Exception) -> ServiceUnavailable:
        return self.application.unavailable(exc)


def _replay(earlier: IdempotencyRecord, fingerprint: str, command: Command) -> CommandResult:
    if earlier.request_hash != fingerprint:
        raise IdempotencyKeyReused(earlier.key, command.command_type)
    return CommandResult(
        aggregate_id=earlier.aggregate_id,
        version=earlier.aggregate_version,
        position=earlier.position,
        events=0,
        replayed=True,
    )
