"""The shop's order workflow with a payment timeout short enough for a test."""

from typing import ClassVar

from examples.shop.workflow import OrderWorkflow


class QuickOrderWorkflow(OrderWorkflow):
    """Customers have five seconds to pay."""

    name = "order_workflow"
    payment_timeout: ClassVar[float] = 5.0
