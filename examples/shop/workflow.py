"""The order workflow: order placed → reserve stock → authorise payment → confirm order.

A payment refusal, a refused reservation or no payment authorised in time
releases the stock already reserved and cancels the order (compensations,
newest first). Run it with ``cqrskit sagas run order_workflow``.
"""

from __future__ import annotations

from decimal import Decimal
from typing import ClassVar
from uuid import UUID

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.sagas import ProcessManager, Step, by_payload, on_deadline, reacts
from examples.shop.application import handlers
from examples.shop.commands import CancelOrder, CapturePayment, ReleaseStock, ReserveStock


class OrderProgress(BaseModel):
    """Where one order's workflow is."""

    order_id: str = ""
    step: str = "placed"
    lines: int = 0
    reserved: int = 0
    total: Decimal = Decimal(0)
    payment_id: str | None = None


class OrderWorkflow(ProcessManager[OrderProgress]):
    """Reserves stock for a placed order, waits for its payment, then captures it."""

    name = "order_workflow"
    state = OrderProgress
    handlers = handlers
    #: Seconds a customer has to pay once the stock is reserved.
    payment_timeout: ClassVar[float] = 15 * 60

    @reacts("Order.Placed", starts=True)
    def placed(self, event: Envelope, state: OrderProgress, step: Step) -> OrderProgress:
        order_id = UUID(str(event.aggregate_id))
        step.on_failure(CancelOrder(order_id=order_id, reason="the order workflow failed"))
        lines = [line for line in event.payload["lines"] if line.get("item_id")]
        for line in lines:
            item_id = UUID(line["item_id"])
            step.send(
                ReserveStock(item_id=item_id, order_id=order_id, quantity=line["quantity"]),
                compensation=ReleaseStock(item_id=item_id, order_id=order_id),
            )
        total = sum(
            (
                Decimal(str(line["unit_price"])) * line["quantity"]
                for line in event.payload["lines"]
            ),
            Decimal(0),
        )
        if not lines:
            step.deadline("payment", after=self.payment_timeout)
        return state.model_copy(
            update={
                "order_id": str(order_id),
                "step": "reserving" if lines else "awaiting payment",
                "lines": len(lines),
                "total": total,
            }
        )

    @reacts("InventoryItem.Reserved", correlate=by_payload("order_id"))
    def reserved(self, event: Envelope, state: OrderProgress, step: Step) -> OrderProgress:
        reserved = state.reserved + 1
        if reserved < state.lines or state.payment_id is not None:
            return state.model_copy(update={"reserved": reserved})
        step.deadline("payment", after=self.payment_timeout)
        return state.model_copy(update={"reserved": reserved, "step": "awaiting payment"})

    @reacts("Payment.Authorised", correlate=by_payload("order_id"))
    def authorised(self, event: Envelope, state: OrderProgress, step: Step) -> OrderProgress:
        step.cancel_deadline("payment")
        step.send(CapturePayment(payment_id=UUID(str(event.aggregate_id))))
        return state.model_copy(update={"payment_id": str(event.aggregate_id), "step": "capturing"})

    @reacts("Order.Paid")
    def paid(self, event: Envelope, state: OrderProgress, step: Step) -> OrderProgress:
        step.complete()
        return state.model_copy(update={"step": "confirmed"})

    @reacts("Order.PaymentRefused")
    def refused(self, event: Envelope, state: OrderProgress, step: Step) -> OrderProgress:
        step.fail(f"payment refused: {event.payload['reason']}")
        return state.model_copy(update={"step": "payment refused"})

    @reacts("Order.Cancelled")
    def cancelled(self, event: Envelope, state: OrderProgress, step: Step) -> OrderProgress:
        step.fail(f"order cancelled: {event.payload['reason']}")
        return state.model_copy(update={"step": "cancelled"})

    @on_deadline("payment")
    def payment_overdue(self, state: OrderProgress, step: Step) -> OrderProgress:
        step.fail(f"no payment authorised within {self.payment_timeout:g} seconds")
        return state.model_copy(update={"step": "payment overdue"})
