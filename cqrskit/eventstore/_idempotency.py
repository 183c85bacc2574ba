from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

__all__ = ["IdempotencyRecord"]


@dataclass(frozen=True)
class IdempotencyRecord:
    """The first outcome of a command sent with an idempotency key.

    Stored in the same transaction as the command's events, so a key is
    recorded if and only if its events are; a command that changed nothing
    records its key alone, with ``position`` None.
    """

    key: str
    request_hash: str
    command_type: str
    aggregate_id: UUID
    aggregate_version: int
    position: int | None
