"""One document per inventory item: on hand, reserved, available."""

from __future__ import annotations

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import Outcome, Projection, handles


class StockLevel(BaseModel):
    """Stock of one product."""

    item_id: str
    sku: str = ""
    name: str = ""
    on_hand: int = 0
    reserved: int = 0
    available: int = 0


class StockLevels(Projection[StockLevel]):
    """Stock levels per item."""

    name = "stock_levels"
    view = StockLevel

    @staticmethod
    def _with(doc: StockLevel, on_hand: int, reserved: int) -> StockLevel:
        return doc.model_copy(
            update={"on_hand": on_hand, "reserved": reserved, "available": on_hand - reserved}
        )

    @handles("InventoryItem.Registered")
    def registered(self, event: Envelope, doc: StockLevel | None) -> Outcome:
        quantity = int(event.payload["quantity"])
        base = StockLevel(
            item_id=str(event.aggregate_id), sku=event.payload["sku"], name=event.payload["name"]
        )
        return self._with(base, quantity, 0)

    @handles("InventoryItem.Restocked")
    def restocked(self, event: Envelope, doc: StockLevel | None) -> Outcome:
        base = doc or StockLevel(item_id=str(event.aggregate_id))
        return self._with(base, base.on_hand + int(event.payload["quantity"]), base.reserved)

    @handles("InventoryItem.Reserved")
    def reserved(self, event: Envelope, doc: StockLevel | None) -> Outcome:
        base = doc or StockLevel(item_id=str(event.aggregate_id))
        return self._with(base, base.on_hand, base.reserved + int(event.payload["quantity"]))

    @handles("InventoryItem.Released")
    def released(self, event: Envelope, doc: StockLevel | None) -> Outcome:
        base = doc or StockLevel(item_id=str(event.aggregate_id))
        return self._with(base, base.on_hand, base.reserved - int(event.payload["quantity"]))
