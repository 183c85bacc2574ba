"""A command that changes nothing when its aim is already met: "top the stock up to N".

Shared by the unit and integration tests of keys recorded for commands that
changed nothing.
"""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from cqrskit import Command, CommandHandlers, UnitOfWork
from examples.shop import InventoryItem
from examples.shop.application import register_item, reserve_stock
from examples.shop.commands import RegisterItem, ReserveStock

handlers = CommandHandlers()
handlers.handles(RegisterItem)(register_item)
handlers.handles(ReserveStock)(reserve_stock)


class TopUp(Command):
    """Restock so that at least ``available`` are available; nothing if they already are."""

    item_id: UUID
    available: int = Field(gt=0)


@handlers.handles(TopUp)
def top_up(command: TopUp, uow: UnitOfWork) -> InventoryItem:
    item = uow.get(InventoryItem, command.item_id)
    if item.available < command.available:
        item.restock(quantity=command.available - item.available)
    return item


class CheckStock(Command):
    """Look at an item for some skus; changes nothing. Its set field's order
    follows PYTHONHASHSEED, which the fingerprint must not."""

    item_id: UUID
    skus: set[str]


@handlers.handles(CheckStock)
def check_stock(command: CheckStock, uow: UnitOfWork) -> InventoryItem:
    return uow.get(InventoryItem, command.item_id)
