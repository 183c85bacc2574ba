from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ServiceInfo"]


@dataclass(frozen=True)
class ServiceInfo:
    """What a successful health probe learnt about a service."""

    service: str
    address: str
    version: str
    detail: str = ""
