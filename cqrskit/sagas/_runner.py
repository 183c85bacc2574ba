"""Running a process manager: events from its subscription and due deadlines in, commands out.

For each event: find the instance it correlates to, run the reaction, send
its commands (each keyed by the event's id and its place in the step, so a
re-delivery sends nothing new), run compensations in reverse if a step
failed, and record state, history, deadlines, the handled event and the
position in one transaction. Only then is the Kafka offset committed; on
(re)assignment the runner starts from the positions recorded in PostgreSQL.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from tenacity import RetryError, Retrying, retry_if_exception_type, wait_random_exponential

from cqrskit.commands import Command, CommandBus
from cqrskit.envelope import HEADER_EVENT_TYPE, Envelope
from cqrskit.errors import PermanentError, SagaConflict, TransientError
from cqrskit.sagas._manager import ProcessManager, Step
from cqrskit.sagas._ports import SagaStore
from cqrskit.sagas._records import HistoryEntry, PlannedReaction, SagaInstance, StepRecord
from cqrskit.subscription import Message, Partition, Subscription

R = TypeVar("R")

__all__ = ["SagaRunner", "Trigger", "react"]

log = logging.getLogger("cqrskit.sagas")

#: Sends one command with an idempotency key; raises PermanentError if refused.
Send = Callable[[Command, str], None]


def _as_dict(command: Command) -> dict[str, Any]:
    return {"type": command.command_type, "payload": command.model_dump(mode="json")}


@dataclass(frozen=True)
class Trigger:
    """What one reaction of one instance reacts to, and how it runs."""

    instance_id: str
    #: ``event`` or ``deadline``.
    kind: str
    #: The event's type, or the deadline's name.
    trigger: str
    run: Callable[[BaseModel, Step], BaseModel]
    #: The event may start a new instance.
    starts: bool = False
    event_id: str | None = None
    #: The partition the event came from, and the offset after it (recorded with the step).
    stream: str | None = None
    next_offset: int | None = None


def react(
    manager: ProcessManager[Any], store: SagaStore, send: Send, cause: Trigger
) -> SagaInstance | None:
    """Run one reaction (to an event, or to a due deadline) of one instance, and record it.

    The reaction's outcome, its commands and their keys are recorded as the
    instance's pending plan before the first command is sent; the commands
    sent are the plan's. A plan left pending by a runner that crashed
    mid-step is carried out first, as planned, so a step is never decided
    twice: a re-run sends the very commands (ids, times) whose keys its
    predecessor may have used, and the compensation of each command that
    took effect is on the stack.

    Returns the instance after the reaction (None if the event belongs to no
    instance). Idempotent: a reaction to an event already handled records
    nothing, and its commands, keyed as before, append nothing new.

    Raises:
        TransientError: a service was unavailable, or another runner moved the
            instance; run it again.
    """
    instance_id, kind, trigger, run = cause.instance_id, cause.kind, cause.trigger, cause.run
    starts, event_id, stream, next_offset = (
        cause.starts,
        cause.event_id,
        cause.stream,
        cause.next_offset,
    )
    name = manager.name
    instance = store.load(name, instance_id)
    pending = store.pending(name, instance_id)
    if pending is not None:
        _carry_out(manager, store, send, pending)
        if pending.trigger_key == _trigger_key(kind, trigger, event_id, instance):
            return store.load(name, instance_id)
        instance = store.load(name, instance_id)
    if (instance is None and not starts) or (instance is not None and instance.status != "running"):
        if stream is not None and next_offset is not None:
            store.record_position(name, stream, next_offset)
        return instance
    state = manager.state.model_validate(instance.state) if instance else manager.state()
    step = Step()
    try:
        state = run(state, step)
    except Exception as exc:  # a bug in the reaction: fail the instance, keep the runner
        log.exception("saga %s instance %s: reaction to %s raised", name, instance_id, trigger)
        step.fail(f"the reaction to {trigger} raised {type(exc).__name__}: {exc}")
    trigger_key = _trigger_key(kind, trigger, event_id, instance)
    planned = PlannedReaction(
        saga=name,
        instance_id=instance_id,
        expected_version=instance.version if instance else 0,
        kind=kind,
        trigger=trigger,
        trigger_key=trigger_key,
        status=step.outcome,
        reason=step.reason,
        state=state.model_dump(mode="json"),
        compensations=[
            *(instance.compensations if instance else []),
            *(_as_dict(c) for c in step.compensations),
        ],
        commands=[
            {
                **_as_dict(command),
                "key": f"saga:{name}:{instance_id}:{trigger_key}:{index}",
                "compensation": None if compensation is None else _as_dict(compensation),
            }
            for index, (command, compensation) in enumerate(step.commands)
        ],
        deadlines=dict(step.deadlines),
        cancelled=sorted(step.cancelled),
        event_id=event_id,
        stream=stream,
        next_offset=next_offset,
    )
    recorded = store.plan(planned)
    _carry_out(manager, store, send, recorded)
    if recorded.trigger_key != trigger_key:
        # Another runner planned another reaction of this version first; ours
        # is decided again against the state that one leaves.
        raise SagaConflict(f"saga {name} instance {instance_id} moved on")
    return store.load(name, instance_id)


def _trigger_key(
    kind: str, trigger: str, event_id: str | None, instance: SagaInstance | None
) -> str:
    return event_id or f"{kind}:{trigger}:{instance.version if instance else 0}"


def _carry_out(
    manager: ProcessManager[Any], store: SagaStore, send: Send, planned: PlannedReaction
) -> None:
    """Send the plan's commands, compensate if the step failed, and record it all."""
    status, reason = planned.status, planned.reason
    compensations = list(planned.compensations)
    sent: list[str] = []
    for entry in planned.commands:
        try:
            send(manager.handlers.parse(entry["type"], entry["payload"]), entry["key"])
        except PermanentError as exc:
            status, reason = "failed", f"{entry['type']} refused: {exc}"
            break
        sent.append(entry["type"])
        if entry["compensation"] is not None:
            compensations.append(entry["compensation"])
    now = datetime.now(UTC)
    history = [
        HistoryEntry(now, planned.kind, planned.trigger, {"sent": sent, "state": planned.state})
    ]
    if planned.expected_version == 0:
        history.insert(0, HistoryEntry(now, "started", planned.trigger, {}))
    if status == "failed":
        done = _compensate(manager, send, planned.instance_id, compensations)
        history.append(HistoryEntry(now, "failed", reason, {"compensated": done}))
        compensations = []
    elif status == "done":
        history.append(HistoryEntry(now, "done", planned.trigger, {}))
    store.record(
        StepRecord(
            saga=planned.saga,
            instance_id=planned.instance_id,
            expected_version=planned.expected_version,
            status=status,
            state=planned.state,
            compensations=compensations,
            history=history,
            deadlines=planned.deadlines if status == "running" else {},
            cancelled=frozenset(planned.cancelled),
            cancel_all=status != "running",
            event_id=planned.event_id,
            stream=planned.stream,
            next_offset=planned.next_offset,
        )
    )


def _compensate(
    manager: ProcessManager[Any], send: Send, instance_id: str, compensations: list[dict[str, Any]]
) -> list[str]:
    """Run the compensations newest first; each is keyed by its place in the stack."""
    done: list[str] = []
    for index in reversed(range(len(compensations))):
        entry = compensations[index]
        command = manager.handlers.parse(entry["type"], entry["payload"])
        try:
            send(command, f"saga:{manager.name}:{instance_id}:compensate:{index}")
            done.append(entry["type"])
        except PermanentError as exc:  # already undone, or never done: nothing to undo
            done.append(f"{entry['type']} refused: {exc}")
    return done


class SagaRunner:
    """Runs one process manager until stopped: a consumer group and a deadline clock.

    ``bus`` sends the manager's commands (a bus of ``manager.handlers``);
    ``store`` keeps its instances (with its tables already created);
    ``subscription`` is the manager's consumer group on the topics of the
    aggregates it reads. ``cqrskit.runtime.Runtime.saga_runner`` builds them.
    """

    DEADLINE_SECONDS = 0.5

    def __init__(
        self,
        manager: ProcessManager[Any],
        bus: CommandBus,
        store: SagaStore,
        subscription: Subscription,
    ):
        self.manager = manager
        self.bus = bus
        self.store = store
        self.subscription = subscription
        self.wanted = {t.encode() for t in manager.event_types()}
        self._stopping = threading.Event()
        self.handled = 0

    def stop(self) -> None:
        """Finish the event in hand and return from :meth:`run`.

        An event that cannot be handled before then (a service is down) is
        left unhandled: its offset is not committed, and the next runner
        starts from it.
        """
        self._stopping.set()

    def run(self) -> None:
        """Consume, react and fire deadlines until :meth:`stop`."""
        self._retry(partial(self.subscription.subscribe, self._assigned))
        deadlines_at = 0.0
        try:
            while not self._stopping.is_set():
                for message in self.subscription.poll(1, 0.2):
                    if not self._retry(partial(self._handle, message)):
                        # Stopped before the event was handled (an outage): its
                        # offset must not be committed, or the next runner of a
                        # partition with no recorded position would skip it.
                        return
                    self._commit(message)
                if time.monotonic() - deadlines_at > self.DEADLINE_SECONDS:
                    deadlines_at = time.monotonic()
                    self._retry(self._fire_due)
        finally:
            self.subscription.close()
            log.info("saga %s: stopped", self.manager.name)

    def _assigned(self, partitions: list[Partition]) -> dict[Partition, int]:
        # Positions recorded with the reactions win over Kafka's committed offsets.
        positions = self._retry(lambda: self.store.positions(self.manager.name)) or {}
        return {p: positions[p.key] for p in partitions if p.key in positions}

    def _sleep(self, seconds: float) -> None:
        self._stopping.wait(seconds)

    def _retry(self, action: Callable[[], R]) -> R | None:
        retrying = Retrying(
            retry=retry_if_exception_type(TransientError),
            wait=wait_random_exponential(multiplier=0.2, max=10),
            stop=lambda _state: self._stopping.is_set(),
            sleep=self._sleep,
            before_sleep=lambda rs: log.warning(
                "saga %s: retrying after %s",
                self.manager.name,
                rs.outcome.exception() if rs.outcome else "an error",
            ),
        )
        try:
            return retrying(action)
        except RetryError:
            return None  # stopping: the caller gives up quietly

    def _handle(self, message: Message) -> bool:
        """React to ``message``, or see that there is nothing to do; True when done."""
        stream = message.source.key
        next_offset = message.next_offset
        event_type = message.headers.get(HEADER_EVENT_TYPE)
        if event_type not in self.wanted:
            return True
        try:
            event = Envelope.decode(message.value)
        except (ValidationError, ValueError):
            log.warning(
                "saga %s: skipped a message that is not an event envelope (%s)",
                self.manager.name,
                stream,
            )
            return True
        reaction = self.manager.reaction_for(event.event_type)
        assert reaction is not None
        if self.store.handled(self.manager.name, str(event.event_id)):
            return True
        try:
            instance_id = reaction.correlate(event)
        except (KeyError, TypeError, ValueError):
            log.warning(
                "saga %s: %s carries no correlation id", self.manager.name, event.event_type
            )
            return True

        def send(command: Command, key: str) -> None:
            self.bus.dispatch(
                command,
                idempotency_key=key,
                correlation_id=event.metadata.correlation_id,
                causation_id=event.event_id,
            )

        cause = Trigger(
            instance_id,
            "event",
            event.event_type,
            lambda state, step: self.manager.react(reaction, event, state, step),
            starts=reaction.starts,
            event_id=str(event.event_id),
            stream=stream,
            next_offset=next_offset,
        )
        react(self.manager, self.store, send, cause)
        self.handled += 1
        return True

    def _fire_due(self) -> None:
        for instance_id, name in self.store.due(self.manager.name):

            def send(command: Command, key: str) -> None:
                self.bus.dispatch(command, idempotency_key=key)

            log.info(
                "saga %s instance %s: deadline %s is due", self.manager.name, instance_id, name
            )
            cause = Trigger(instance_id, "deadline", name, partial(self._deadline, name))
            react(self.manager, self.store, send, cause)

    def _deadline(self, name: str, state: BaseModel, step: Step) -> BaseModel:
        step.cancel_deadline(name)
        result: BaseModel = self.manager.on_deadline(name, state, step)
        return result

    def _commit(self, message: Message) -> None:
        try:
            self.subscription.commit({message.source: message.next_offset})
        except TransientError as exc:  # the recorded positions are what count
            log.debug("saga %s: offset not committed: %s", self.manager.name, exc)
