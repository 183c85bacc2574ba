"""The saga tests run on the projections' pipeline fixture (store, relay, topics)."""

from tests.integration.projections.conftest import pipeline

__all__ = ["pipeline"]
