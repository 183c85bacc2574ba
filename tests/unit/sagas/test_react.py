"""A reaction is decided once: a re-run after a crash sends the commands planned."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from pydantic import BaseModel

from cqrskit import Command, CommandHandlers
from cqrskit.sagas import ProcessManager, Step, Trigger, react
from cqrskit.testing import MemorySagaStore

handlers = CommandHandlers()


class Hold(Command):
    hold_id: UUID


class Release(Command):
    hold_id: UUID


class Then(Command):
    pass


for command_class in (Hold, Release, Then):
    handlers.handles(command_class)(lambda command, uow: None)


class Progress(BaseModel):
    hold_id: str = ""


class Holding(ProcessManager[Progress]):
    name = "holding"
    state = Progress
    handlers = handlers

    def hold(self, state: Progress, step: Step) -> Progress:
        hold_id = uuid4()
        step.send(Hold(hold_id=hold_id), compensation=Release(hold_id=hold_id))
        step.send(Then())
        return Progress(hold_id=str(hold_id))


class Crash(BaseException):
    """The process dies: nothing after this point runs."""


def test_a_reaction_rerun_after_a_crash_sends_the_commands_it_planned() -> None:
    """Issue 15, hole 7c, without services."""
    manager, store = Holding(), MemorySagaStore()
    sent: list[tuple[Command, str]] = []

    def crashing_send(command: Command, key: str) -> None:
        sent.append((command, key))
        if isinstance(command, Then):
            raise Crash

    def send(command: Command, key: str) -> None:
        sent.append((command, key))

    run = Trigger(
        instance_id="i-1",
        kind="event",
        trigger="Thing.Happened",
        run=manager.hold,
        starts=True,
        event_id="e-1",
    )
    with pytest.raises(Crash):
        react(manager, store, crashing_send, run)
    assert store.load("holding", "i-1") is None
    first = list(sent)
    sent.clear()
    instance = react(manager, store, send, run)
    assert instance is not None
    assert instance.status == "running"
    assert sent == first, "the same commands, with the same keys"
    hold = first[0][0]
    assert isinstance(hold, Hold)
    assert instance.state["hold_id"] == str(hold.hold_id)
    assert instance.compensations[-1]["payload"] == {"hold_id": str(hold.hold_id)}
    assert store.pending("holding", "i-1") is None
