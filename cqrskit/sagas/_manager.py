"""The process-manager API: which events start and advance an instance, and the reactions."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel

from cqrskit.commands import Command, CommandHandlers
from cqrskit.envelope import Envelope

__all__ = ["ProcessManager", "Step", "by_aggregate", "by_payload", "on_deadline", "reacts"]

S = TypeVar("S", bound=BaseModel)
#: A decorated method, kept as it is.
M = TypeVar("M", bound=Callable[..., object])
Correlate = Callable[[Envelope], str]
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


def by_aggregate(event: Envelope) -> str:
    """Correlate by the id of the aggregate that raised the event."""
    return str(event.aggregate_id)


def by_payload(field_name: str) -> Correlate:
    """Correlate by a field of the event's payload (e.g. ``order_id``)."""

    def correlate(event: Envelope) -> str:
        return str(event.payload[field_name])

    correlate.__name__ = f"by_payload({field_name!r})"
    return correlate


@dataclass(frozen=True)
class Reaction:
    """One registered reaction: to which event, for which instance, by which method."""

    event_type: str
    correlate: Correlate
    starts: bool
    method_name: str


def reacts(
    event_type: str, *, correlate: Correlate = by_aggregate, starts: bool = False
) -> Callable[[M], M]:
    """Decorator: the method reacts to ``event_type`` (e.g. ``"Order.Placed"``).

    ``correlate`` picks the instance from the event; ``starts=True`` lets the
    event start a new instance (otherwise events of unknown instances are
    ignored). The method takes ``(event, state, step)`` and returns the new
    state.
    """

    def register(method: M) -> M:
        marked: Any = method
        marked.__cqrskit_reacts__ = Reaction(event_type, correlate, starts, marked.__name__)
        return method

    return register


def on_deadline(name: str) -> Callable[[M], M]:
    """Decorator: the method runs when the instance's deadline ``name`` falls due.

    It takes ``(state, step)`` and returns the new state.
    """

    def register(method: M) -> M:
        marked: Any = method
        marked.__cqrskit_deadline__ = name
        return method

    return register


@dataclass
class Step:
    """What a reaction asks for: commands, compensations, deadlines, and the outcome."""

    commands: list[tuple[Command, Command | None]] = field(default_factory=list)
    compensations: list[Command] = field(default_factory=list)
    deadlines: dict[str, float] = field(default_factory=dict)
    cancelled: set[str] = field(default_factory=set)
    outcome: Literal["running", "done", "failed"] = "running"
    reason: str = ""

    def send(self, command: Command, *, compensation: Command | None = None) -> None:
        """Send ``command``; if a later step fails, ``compensation`` undoes it."""
        self.commands.append((command, compensation))

    def on_failure(self, compensation: Command) -> None:
        """Undo something that happened before this instance (e.g. cancel the order)."""
        self.compensations.append(compensation)

    def deadline(self, name: str, *, after: timedelta | float) -> None:
        """Set (or move) the deadline ``name``, ``after`` from now; durable across restarts."""
        seconds = after.total_seconds() if isinstance(after, timedelta) else float(after)
        self.deadlines[name] = seconds
        self.cancelled.discard(name)

    def cancel_deadline(self, name: str) -> None:
        """Cancel the deadline ``name`` (the awaited event arrived)."""
        self.deadlines.pop(name, None)
        self.cancelled.add(name)

    def complete(self) -> None:
        """The workflow is done; its pending deadlines are cancelled."""
        self.outcome = "done"

    def fail(self, reason: str) -> None:
        """The workflow failed: compensations run in reverse order."""
        self.outcome = "failed"
        self.reason = reason


class ProcessManager(Generic[S]):
    """Base class of process managers: set ``name``, ``state``, ``handlers``; add reactions.

    Attributes:
        name: the saga's name (its consumer group and its rows in PostgreSQL).
        state: the pydantic model of one instance's state (defaults for a new one).
        handlers: the command handlers of the commands it sends.
    """

    name: ClassVar[str]
    state: ClassVar[type[BaseModel]]
    handlers: ClassVar[CommandHandlers]
    _reactions: ClassVar[dict[str, Reaction]]
    _deadlines: ClassVar[dict[str, str]]

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        name = cls.__dict__.get("name")
        if name is not None and not (isinstance(name, str) and _NAME.fullmatch(name)):
            raise ValueError(
                f"process manager {cls.__qualname__}: name {name!r} must be 1-100 characters "
                "of a-z, 0-9, '_' and '-'"
            )
        reactions: dict[str, Reaction] = {}
        deadlines: dict[str, str] = {}
        for klass in reversed(cls.__mro__):
            for attribute in vars(klass).values():
                reaction = getattr(attribute, "__cqrskit_reacts__", None)
                if reaction is not None:
                    reactions[reaction.event_type] = reaction
                deadline = getattr(attribute, "__cqrskit_deadline__", None)
                if deadline is not None:
                    deadlines[deadline] = attribute.__name__
        cls._reactions = reactions
        cls._deadlines = deadlines

    @classmethod
    def event_types(cls) -> list[str]:
        """The event types this process manager reacts to."""
        return sorted(cls._reactions)

    @classmethod
    def aggregate_types(cls) -> list[str]:
        """The aggregate types whose events it reads."""
        return sorted({t.rpartition(".")[0] or t for t in cls._reactions})

    def reaction_for(self, event_type: str) -> Reaction | None:
        """The reaction to ``event_type``, if any."""
        return self._reactions.get(event_type)

    def react(self, reaction: Reaction, event: Envelope, state: S, step: Step) -> S:
        """Run the reaction's method."""
        result: S = getattr(self, reaction.method_name)(event, state, step)
        return result

    def on_deadline(self, name: str, state: S, step: Step) -> S:
        """Run the handler of deadline ``name`` (fails the instance if there is none)."""
        method_name = self._deadlines.get(name)
        if method_name is None:
            step.fail(f"deadline {name!r} passed")
            return state
        result: S = getattr(self, method_name)(state, step)
        return result
