"""The shop application: its handlers and its event store settings."""

from __future__ import annotations

from typing import ClassVar

from cqrskit import Application, CommandHandlers, RuleViolated, UnitOfWork
from examples.shop.commands import (
    AuthorisePayment,
    CancelOrder,
    CapturePayment,
    PlaceOrder,
    RefusePayment,
    RegisterItem,
    ReleaseStock,
    ReserveStock,
    RestockItem,
)
from examples.shop.domain import InventoryItem, Order, Payment

handlers = CommandHandlers()


class ShopApp(Application):
    """Orders, inventory and payments in one event store."""

    name = "shop"
    snapshotting_intervals: ClassVar = {InventoryItem: 50}


@handlers.handles(PlaceOrder)
def place_order(command: PlaceOrder, uow: UnitOfWork) -> Order:
    return uow.add(Order(customer_id=command.customer_id, lines=command.lines))


@handlers.handles(CancelOrder)
def cancel_order(command: CancelOrder, uow: UnitOfWork) -> Order:
    order = uow.get(Order, command.order_id)
    order.cancel(command.reason)
    return order


@handlers.handles(RegisterItem)
def register_item(command: RegisterItem, uow: UnitOfWork) -> InventoryItem:
    return uow.add(InventoryItem(sku=command.sku, name=command.name, quantity=command.quantity))


@handlers.handles(RestockItem)
def restock_item(command: RestockItem, uow: UnitOfWork) -> InventoryItem:
    item = uow.get(InventoryItem, command.item_id)
    item.restock(quantity=command.quantity)
    return item


@handlers.handles(ReserveStock)
def reserve_stock(command: ReserveStock, uow: UnitOfWork) -> InventoryItem:
    item = uow.get(InventoryItem, command.item_id)
    item.reserve(command.order_id, command.quantity)
    return item


@handlers.handles(ReleaseStock)
def release_stock(command: ReleaseStock, uow: UnitOfWork) -> InventoryItem:
    item = uow.get(InventoryItem, command.item_id)
    item.release(command.order_id)
    return item


@handlers.handles(AuthorisePayment)
def authorise_payment(command: AuthorisePayment, uow: UnitOfWork) -> Payment:
    order = uow.get(Order, command.order_id)
    if command.amount != order.total:
        raise RuleViolated(f"order {order.id} totals {order.total}, not {command.amount}")
    return uow.add(Payment(order_id=order.id, amount=command.amount))


@handlers.handles(CapturePayment)
def capture_payment(command: CapturePayment, uow: UnitOfWork) -> Payment:
    payment = uow.get(Payment, command.payment_id)
    payment.capture()
    uow.get(Order, payment.order_id).mark_paid(payment.id)
    return payment


@handlers.handles(RefusePayment)
def refuse_payment(command: RefusePayment, uow: UnitOfWork) -> Order:
    order = uow.get(Order, command.order_id)
    order.refuse_payment(command.reason)
    return order
