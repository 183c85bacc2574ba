"""The in-memory adapters' errors, in cqrskit's tree like every other adapter's."""

from __future__ import annotations

from cqrskit.errors import ServiceUnavailable

__all__ = ["SERVICE", "unavailable"]

SERVICE = "memory"


def unavailable(address: str, reason: str) -> ServiceUnavailable:
    """The in-memory store at ``address`` failed, for ``reason`` (a bug: memory is never away)."""
    return ServiceUnavailable(SERVICE, address, reason)
