from __future__ import annotations

import hashlib
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict

__all__ = ["Command", "CommandResult"]


class Command(BaseModel):
    """Base class of commands: frozen, validated pydantic models.

    A command's type name is its class name unless ``command_type`` is set.
    Unknown fields are refused, so a typo in a client is an error, not a
    silently ignored value.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    command_type: ClassVar[str] = ""

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "command_type" not in cls.__dict__:
            cls.command_type = cls.__name__

    def fingerprint(self) -> str:
        """A hash of the type and content, to tell a retry from a new command."""
        digest = hashlib.sha256(self.command_type.encode())
        digest.update(b"\0")
        digest.update(self.model_dump_json().encode())
        return digest.hexdigest()


class CommandResult(BaseModel):
    """What a command did: the aggregate, its new version, the store position.

    ``position`` is the global position of the last event appended; pass it
    to a query as ``min_position`` to read your own write. ``replayed`` is
    true when an idempotency key matched and the first outcome was returned.
    """

    model_config = ConfigDict(frozen=True)

    aggregate_id: UUID
    version: int
    position: int | None
    events: int
    replayed: bool = False
