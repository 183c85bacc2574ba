from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from uuid import UUID

__all__ = ["CausationContext", "causation", "current_causation"]


@dataclass(frozen=True)
class CausationContext:
    """Why events are being raised: set around a command, read by new events."""

    correlation_id: UUID | None = None
    causation_id: UUID | None = None
    traceparent: str | None = None


_NONE = CausationContext()
_CURRENT: ContextVar[CausationContext | None] = ContextVar("cqrskit_causation", default=None)


def current_causation() -> CausationContext:
    """The causation context new events record in their metadata."""
    return _CURRENT.get() or _NONE


@contextmanager
def causation(context: CausationContext) -> Iterator[CausationContext]:
    """Make every event raised inside the block carry ``context`` in its metadata."""
    token = _CURRENT.set(context)
    try:
        yield context
    finally:
        _CURRENT.reset(token)
