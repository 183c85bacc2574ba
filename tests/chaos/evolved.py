"""The shop's projections after a change that a strict mapping refuses.

``StockLevel`` gains a field. Elasticsearch would refuse every document
written with it (``strict_dynamic_mapping_exception``) until the index's
mapping has the field, as happens when a view is changed and deployed before
its read model is migrated. The fault suite runs the worker on this module to
show that the worker then refuses to start, saying so in one line, while the
events wait in Kafka (nothing lost), and applies them once the mapping is
fixed.
"""

from __future__ import annotations

from projections import customers, stock


class EvolvedStockLevel(stock.StockLevel):
    """A stock level that also names its unit."""

    unit: str = "each"


class EvolvedStockLevels(stock.StockLevels):
    """Stock levels whose documents carry the new field."""

    name = "stock_levels"
    view = EvolvedStockLevel

    @staticmethod
    def _with(doc: stock.StockLevel, on_hand: int, reserved: int) -> stock.StockLevel:
        # Every handler builds its result here: the new view everywhere.
        level = stock.StockLevels._with(doc, on_hand, reserved)
        return EvolvedStockLevel(**level.model_dump())


class CustomerOrders(customers.CustomerOrdersProjection):
    """Unchanged; defined here so that this module names every projection the run uses."""

    name = "customer_orders"
