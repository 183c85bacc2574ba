"""The product internals the instrumented runs wrap with timers: all of them, in one place.

The timed rounds use only the product's public names. The instrumented
runs (where a run's time goes, what limits it) also need two names the
product does not export, both module-level names bound by ``from ... import``
in the module that uses them; when the product moves them, re-point them here.
"""

from __future__ import annotations

import sys
from types import ModuleType

from cqrskit.adapters.kafka import _group
from cqrskit.relay import OutboxRelay


def relay_module() -> ModuleType:
    """The module defining ``OutboxRelay``: its ``encode`` is the relay's envelope encoder."""
    return sys.modules[OutboxRelay.__module__]


def consumer_module() -> ModuleType:
    """The module whose ``Consumer`` builds the consumer of a worker's group membership."""
    return _group
