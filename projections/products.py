"""Full-text product search over the registered items."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel

from cqrskit.envelope import Envelope
from cqrskit.projections import Outcome, Projection, Text, handles


class Product(BaseModel):
    """A product as search shows it."""

    item_id: str
    sku: str
    name: Annotated[str, Text]


class ProductSearch(Projection[Product]):
    """Products by name, for the shop's search box."""

    name = "products"
    view = Product

    @handles("InventoryItem.Registered")
    def registered(self, event: Envelope, doc: Product | None) -> Outcome:
        return Product(
            item_id=str(event.aggregate_id), sku=event.payload["sku"], name=event.payload["name"]
        )
