"""Given/when/then for aggregates and command handlers, in memory.

::

    scenario = Scenario(handlers)
    scenario.given(*placed_order_events).when(CancelOrder(order_id=oid)).then(
        expect(Order.Cancelled, reason="customer asked")
    )

No services are needed: the scenario runs on the in-memory event store
with the same command bus as production. :class:`MemoryBuses` gives an
API's tests the real command and query buses on in-memory stores, to put in
place of the services with FastAPI's ``dependency_overrides``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from cqrskit.adapters.memory.checkpoints import AsyncMemoryCheckpointReader, MemoryCheckpointLog
from cqrskit.adapters.memory.saga_store import MemorySagaStore
from cqrskit.adapters.memory.search import AsyncMemorySearch, MemorySearch
from cqrskit.checkpoints import Checkpoint
from cqrskit.commands import AsyncCommandBus, Command, CommandBus, CommandHandlers, CommandResult
from cqrskit.domain import DomainEvent
from cqrskit.envelope import Envelope, encode
from cqrskit.errors import CqrskitError, RuleViolated
from cqrskit.eventstore import Application
from cqrskit.projections import Projection, fold
from cqrskit.queries import AsyncQueryBus, AsyncQueryPorts, Limits, QueryHandlers
from cqrskit.sagas import ProcessManager, SagaInstance, Step, Trigger, react
from cqrskit.topology import IndexNames

__all__ = [
    "ExpectedEvent",
    "MemoryBuses",
    "MemorySagaStore",
    "SagaScenario",
    "Scenario",
    "expect",
    "payload_of",
    "stored_envelopes",
]

_ENVELOPE_FIELDS = {"originator_id", "originator_version", "timestamp", "metadata"}


def payload_of(event: DomainEvent) -> dict[str, Any]:
    """An event's payload: its fields without ids, version, time and metadata."""
    return {k: v for k, v in event if k not in _ENVELOPE_FIELDS and k != "originator_topic"}


@dataclass(frozen=True)
class ExpectedEvent:
    """An event type and (some or all of) its payload, for :meth:`Scenario.then`."""

    event_class: type[DomainEvent]
    payload: dict[str, Any] = field(default_factory=dict)
    exact: bool = True

    def describe(self) -> str:
        """Human text for assertion messages."""
        return f"{self.event_class.__qualname__}({self.payload})"

    def matches(self, event: DomainEvent) -> bool:
        """True when ``event`` has this type and payload."""
        if type(event) is not self.event_class:
            return False
        actual = payload_of(event)
        if self.exact:
            return actual == self.payload
        return all(actual.get(k) == v for k, v in self.payload.items())


def expect(
    event_class: type[DomainEvent], /, *, exact: bool = True, **payload: object
) -> ExpectedEvent:
    """Expect an event of ``event_class`` with ``payload`` (all of it, or a subset)."""
    return ExpectedEvent(event_class, payload, exact)


def stored_envelopes(application: Application, after: int = 0) -> list[Envelope]:
    """The envelopes of ``application``'s stored events after ``after``, as Kafka carries them.

    Feed them to :func:`cqrskit.projections.fold` to test a projection
    without services.
    """
    notifications = application.recorder.select_notifications(start=after + 1, limit=10**9)
    return [
        Envelope.decode(
            encode(
                position=n.id,
                aggregate_id=n.originator_id,
                aggregate_version=n.originator_version,
                topic=n.topic,
                state=n.state,
            )[0]
        )
        for n in notifications
    ]


class Scenario:
    """Given past events, when a command is dispatched, then expect events or an error."""

    def __init__(
        self, handlers: CommandHandlers, application_class: type[Application] = Application
    ):
        self.application = application_class(persistence="memory")
        self.bus = CommandBus(self.application, handlers)
        self._given = 0
        self._result: CommandResult | None = None
        self._error: CqrskitError | None = None

    def given(self, *events: DomainEvent) -> Scenario:
        """Store ``events`` as history (e.g. ``*aggregate.collect_events()``)."""
        self.application.events.put(list(events))
        self._given += len(events)
        return self

    def when(self, command: Command, *, idempotency_key: str | None = None) -> Scenario:
        """Dispatch ``command``; an error is kept for :meth:`then_raises`."""
        try:
            self._result = self.bus.dispatch(command, idempotency_key=idempotency_key)
        except CqrskitError as exc:
            self._error = exc
        return self

    @property
    def result(self) -> CommandResult:
        """The command's result; fails if it raised."""
        if self._error is not None:
            raise AssertionError(f"the command raised {self._error!r}")
        assert self._result is not None, "call when() first"
        return self._result

    def new_events(self) -> list[DomainEvent]:
        """Events appended by :meth:`when`, in order."""
        notifications = self.application.recorder.select_notifications(
            start=self._given + 1, limit=1_000_000
        )
        mapper = self.application.mapper
        return [mapper.to_domain_event(n) for n in notifications]  # type: ignore[misc]

    def then(self, *expected: ExpectedEvent | type[DomainEvent]) -> Sequence[DomainEvent]:
        """Assert that exactly ``expected`` events were appended, in order."""
        _ = self.result
        wanted = [e if isinstance(e, ExpectedEvent) else expect(e, exact=False) for e in expected]
        actual = self.new_events()
        described = [f"{type(a).__qualname__}({payload_of(a)})" for a in actual]
        if len(actual) != len(wanted) or not all(
            w.matches(a) for w, a in zip(wanted, actual, strict=True)
        ):
            raise AssertionError(
                f"expected events {[w.describe() for w in wanted]}, got {described}"
            )
        return actual

    def then_raises(self, error_class: type[CqrskitError], match: str = "") -> CqrskitError:
        """Assert that the command raised ``error_class`` and appended nothing."""
        if self._error is None:
            raise AssertionError(f"expected {error_class.__name__}, the command succeeded")
        if not isinstance(self._error, error_class):
            raise AssertionError(f"expected {error_class.__name__}, got {self._error!r}")
        if match and match not in str(self._error):
            raise AssertionError(f"expected {match!r} in {str(self._error)!r}")
        if self.new_events():
            raise AssertionError("the command raised but events were appended")
        return self._error


class SagaScenario:
    """Given these events, then these commands (and deadlines): a process manager in memory.

    Commands are recorded, not executed; ``refuse`` names the command types
    the scenario refuses (as a handler would, with ``RuleViolated``), to
    exercise compensations. A command whose idempotency key was seen
    before is not recorded again, as the real command bus appends it once.
    """

    def __init__(self, manager: ProcessManager[Any], refuse: Sequence[str] = ()):
        self.manager = manager
        self.store = MemorySagaStore()
        self.refuse = set(refuse)
        self.sent: list[Command] = []
        self._keys: set[str] = set()

    def _send(self, command: Command, key: str) -> None:
        if command.command_type in self.refuse:
            raise RuleViolated(f"{command.command_type} refused by the scenario")
        if key not in self._keys:
            self._keys.add(key)
            self.sent.append(command)

    def given(self, *events: Envelope) -> SagaScenario:
        """Feed ``events`` in order (their commands are recorded, then forgotten)."""
        for event in events:
            self._feed(event)
        self.sent = []
        return self

    def when(self, *events: Envelope) -> SagaScenario:
        """Feed ``events``; :attr:`sent` holds the commands they caused."""
        self.sent = []
        for event in events:
            self._feed(event)
        return self

    def when_deadline(self, instance_id: str, name: str) -> SagaScenario:
        """Let the deadline ``name`` of an instance fall due."""
        self.sent = []

        def run(state: BaseModel, step: Step) -> BaseModel:
            step.cancel_deadline(name)
            result: BaseModel = self.manager.on_deadline(name, state, step)
            return result

        react(self.manager, self.store, self._send, Trigger(instance_id, "deadline", name, run))
        return self

    def _feed(self, event: Envelope) -> None:
        reaction = self.manager.reaction_for(event.event_type)
        if reaction is None:
            return
        cause = Trigger(
            reaction.correlate(event),
            "event",
            event.event_type,
            lambda state, step: self.manager.react(reaction, event, state, step),
            starts=reaction.starts,
            event_id=str(event.event_id),
        )
        react(self.manager, self.store, self._send, cause)

    def instance(self, instance_id: str) -> SagaInstance:
        """The instance's current record."""
        found = self.store.load(self.manager.name, instance_id)
        assert found is not None, f"no instance {instance_id} of {self.manager.name}"
        return found

    def deadlines(self, instance_id: str) -> set[str]:
        """Names of the instance's pending deadlines."""
        return set(self.store.deadlines(self.manager.name, instance_id))


class MemoryBuses:
    """An application's command bus and query bus, awaited, on in-memory stores.

    ``application_class`` runs on the in-memory event store; the read models
    of ``projections`` are folded from its events on :meth:`project` (what
    the relay and the workers would do), and marked searchable up to the
    last event, so a read-your-writes query of the test answers at once::

        buses = MemoryBuses(LibraryApp, handlers, queries, Catalogue())
        app.dependency_overrides[command_bus] = lambda: buses.commands
        app.dependency_overrides[query_bus] = lambda: buses.queries
    """

    def __init__(
        self,
        application_class: type[Application],
        commands: CommandHandlers,
        queries: QueryHandlers,
        *projections: Projection[Any],
    ):
        self.application = application_class(persistence="memory")
        self.commands = AsyncCommandBus(CommandBus(self.application, commands), threads=4)
        self.projections = projections
        self.search = MemorySearch()
        self.checkpoints = MemoryCheckpointLog()
        self.names = IndexNames("")
        ports = AsyncQueryPorts(
            AsyncMemorySearch(self.search), AsyncMemoryCheckpointReader(self.checkpoints)
        )
        self.queries = AsyncQueryBus(queries, ports, self.names, Limits(read_wait=1.0))

    def project(self) -> int:
        """Fold every projection over every stored event; return the last position."""
        envelopes = stored_envelopes(self.application)
        head = envelopes[-1].position if envelopes else 0
        for projection in self.projections:
            alias = self.names.alias(projection.name)
            index = self.names.index(projection.name, 1)
            documents = {
                doc_id: view.model_dump(mode="json")
                for doc_id, view in fold(projection, envelopes).items()
            }
            self.search.indices[index] = self.search.indices[alias] = documents
            self.checkpoints.aliases[alias] = index
            checkpoint = Checkpoint(
                projection=projection.name,
                topic="memory",
                partition=0,
                offset=len(envelopes),
                position=head,
                partitions=1,
                topics=("memory",),
                index=index,
                searchable=head,
            )
            self.checkpoints.checkpoints[checkpoint.doc_id] = checkpoint
        return head

    def close(self) -> None:
        """Stop the command bus's threads."""
        self.commands.close()
