"""A projection that keeps, per inventory item, the versions in the order it applied them."""

from __future__ import annotations

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import Projection, handles
from projections import CustomerOrdersProjection

__all__ = ["CustomerTotals", "Trail", "VersionTrail"]


class CustomerTotals(CustomerOrdersProjection):
    """The shop's customer_orders, loaded from this module beside the trail."""

    name = "customer_orders"


class Trail(BaseModel):
    item_id: str
    versions: list[int] = []


class VersionTrail(Projection[Trail]):
    """Applied in version order, a trail reads 1, 2, 3, ...; a fresh fold always does."""

    name = "version_trail"
    view = Trail

    @staticmethod
    def _append(event: Envelope, doc: Trail | None) -> Trail:
        base = doc or Trail(item_id=str(event.aggregate_id))
        return base.model_copy(update={"versions": [*base.versions, event.aggregate_version]})

    @handles("InventoryItem.Registered")
    def registered(self, event: Envelope, doc: Trail | None) -> Trail:
        return self._append(event, doc)

    @handles("InventoryItem.Restocked")
    def restocked(self, event: Envelope, doc: Trail | None) -> Trail:
        return self._append(event, doc)
