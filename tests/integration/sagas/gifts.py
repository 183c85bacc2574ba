"""A saga whose step builds its command with ``uuid4()`` and ``now()``, and a
point between sending and recording where a process can be killed.

``CrashAfterHold`` is a real command run by the runner's own command bus,
after the step's first command took effect and before the step is recorded.
Its handler changes nothing, unless the file named by ``GIFTS_CRASH_FILE``
exists: then it removes the file and SIGKILLs the process whose id the file
holds (the runner itself when it is empty; a database forwarder, to cut the
runner off from PostgreSQL at that point).
"""

from __future__ import annotations

import os
import signal
from datetime import UTC, datetime
from pathlib import Path
from uuid import UUID, uuid4

from pydantic import BaseModel

from cqrskit import Aggregate, Command, CommandHandlers, RuleViolated, UnitOfWork, event
from cqrskit.envelope import Envelope
from cqrskit.sagas import ProcessManager, Step, reacts
from examples.shop import CancelOrder, Order
from examples.shop.application import cancel_order

handlers = CommandHandlers()
handlers.handles(CancelOrder)(cancel_order)


class GiftHold(Aggregate):
    """Gift wrap held for an order, until released."""

    order_id: UUID
    released: bool

    @event("Held")
    def __init__(self, id: UUID, order_id: UUID, held_at: datetime) -> None:
        self.order_id = order_id
        self.released = False

    def release(self) -> None:
        """Give the wrap back; refused when already given back."""
        if self.released:
            raise RuleViolated(f"gift hold {self.id} is already released")
        self._released()

    @event("Released")
    def _released(self) -> None:
        self.released = True


class HoldGift(Command):
    hold_id: UUID
    order_id: UUID
    held_at: datetime


class ReleaseGift(Command):
    hold_id: UUID


class CrashAfterHold(Command):
    order_id: UUID


@handlers.handles(HoldGift)
def hold_gift(command: HoldGift, uow: UnitOfWork) -> GiftHold:
    # The saga picks the id, as a client may.
    return uow.add(GiftHold(id=command.hold_id, order_id=command.order_id, held_at=command.held_at))


@handlers.handles(ReleaseGift)
def release_gift(command: ReleaseGift, uow: UnitOfWork) -> GiftHold:
    hold = uow.get(GiftHold, command.hold_id)
    hold.release()
    return hold


@handlers.handles(CrashAfterHold)
def crash_after_hold(command: CrashAfterHold, uow: UnitOfWork) -> Order:
    marker = Path(os.environ.get("GIFTS_CRASH_FILE", "/nonexistent/gifts-crash"))
    try:
        pid = marker.read_text().strip()
        marker.unlink()
    except FileNotFoundError:
        return uow.get(Order, command.order_id)
    os.kill(int(pid) if pid else os.getpid(), signal.SIGKILL)
    return uow.get(Order, command.order_id)


class GiftProgress(BaseModel):
    hold_id: str | None = None
    step: str = "new"


class GiftWorkflow(ProcessManager[GiftProgress]):
    """Holds gift wrap for every order; a refused payment releases it and cancels."""

    name = "gift_workflow"
    state = GiftProgress
    handlers = handlers

    @reacts("Order.Placed", starts=True)
    def placed(self, event: Envelope, state: GiftProgress, step: Step) -> GiftProgress:
        order_id = UUID(str(event.aggregate_id))
        step.on_failure(CancelOrder(order_id=order_id, reason="the gift workflow failed"))
        hold_id = uuid4()
        step.send(
            HoldGift(hold_id=hold_id, order_id=order_id, held_at=datetime.now(UTC)),
            compensation=ReleaseGift(hold_id=hold_id),
        )
        step.send(CrashAfterHold(order_id=order_id))
        return state.model_copy(update={"hold_id": str(hold_id), "step": "held"})

    @reacts("Order.PaymentRefused")
    def refused(self, event: Envelope, state: GiftProgress, step: Step) -> GiftProgress:
        step.fail(f"payment refused: {event.payload['reason']}")
        return state.model_copy(update={"step": "payment refused"})
