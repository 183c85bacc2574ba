"""What a process manager's instances are made of: the records its store keeps.

An instance (:class:`SagaInstance`), its history (:class:`HistoryEntry`),
everything one reaction changes (:class:`StepRecord`) and a reaction
decided but not yet recorded (:class:`PlannedReaction`). Plain values, no
storage: the :class:`~cqrskit.sagas.SagaStore` port reads and writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

__all__ = ["HistoryEntry", "PlannedReaction", "SagaInstance", "Status", "StepRecord"]

Status = Literal["running", "done", "failed"]


@dataclass(frozen=True)
class HistoryEntry:
    """One thing that happened to an instance."""

    at: datetime
    kind: str  # started | event | deadline | compensation | done | failed
    trigger: str
    detail: dict[str, Any]


@dataclass
class SagaInstance:
    """One running (or finished) workflow."""

    saga: str
    instance_id: str
    status: Status
    state: dict[str, Any]
    #: Commands that undo the completed steps, oldest first: {"type", "payload"}.
    compensations: list[dict[str, Any]]
    version: int
    started_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class StepRecord:
    """Everything one reaction changes, written atomically."""

    saga: str
    instance_id: str
    expected_version: int
    status: Status
    state: dict[str, Any]
    compensations: list[dict[str, Any]]
    history: list[HistoryEntry]
    #: Deadlines set by this step: name -> seconds from now.
    deadlines: dict[str, float] = field(default_factory=dict)
    #: Deadlines cancelled (all of them when the instance ends).
    cancelled: frozenset[str] = frozenset()
    cancel_all: bool = False
    event_id: str | None = None
    stream: str | None = None
    next_offset: int | None = None


@dataclass(frozen=True)
class PlannedReaction:
    """A reaction decided but not yet recorded: what it will send, with which keys.

    Written before the first command is sent; a runner that finds one
    pending (its predecessor crashed mid-step) carries it out as planned,
    sending the recorded commands with their recorded keys, instead of
    running the reaction again (which may build other commands: ``uuid4()``,
    ``now()``). Plain JSON values throughout.
    """

    saga: str
    instance_id: str
    expected_version: int
    #: What caused it: ``kind`` (event | deadline), the event type or deadline
    #: name, and the key every command of the step is derived from.
    kind: str
    trigger: str
    trigger_key: str
    status: Status
    reason: str
    state: dict[str, Any]
    #: The instance's compensation stack, with this step's ``on_failure`` ones.
    compensations: list[dict[str, Any]]
    #: {"type", "payload", "key", "compensation"} per command, in order.
    commands: list[dict[str, Any]]
    deadlines: dict[str, float] = field(default_factory=dict)
    cancelled: list[str] = field(default_factory=list)
    event_id: str | None = None
    stream: str | None = None
    next_offset: int | None = None

    def as_json(self) -> dict[str, Any]:
        """The plan as one JSON object."""
        return dict(vars(self))
