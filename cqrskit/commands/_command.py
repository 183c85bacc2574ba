from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar
from uuid import UUID

from pydantic import BaseModel, ConfigDict
from pydantic_core import to_json

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
    def __pydantic_init_subclass__(cls, **kwargs: object) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        if "command_type" not in cls.__dict__:
            cls.command_type = cls.__name__

    def fingerprint(self) -> str:
        """A hash of the type and content, to tell a retry from a new command.

        Canonical: the same command gives the same fingerprint in every
        process, whatever its ``PYTHONHASHSEED`` and whatever order a client
        sent a mapping's keys or a set's members in (see
        docs/decisions/0012-idempotency-outcomes.md). For a command with no
        set in it and its mappings' keys in sorted order, this is the hash of
        ``model_dump_json()``, as it always was, so keys stored earlier still
        match.
        """
        digest = hashlib.sha256(self.command_type.encode())
        digest.update(b"\0")
        digest.update(to_json(_canonical(self)))
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


def _canonical(value: object) -> object:
    """``value`` with every set and mapping in a fixed order, models as mappings.

    A model's fields keep their declared order (fixed by the class, not by
    the client), which keeps ``to_json`` byte for byte equal to pydantic's
    ``model_dump_json`` wherever there is nothing to sort. Members are
    ordered by their own canonical JSON, which is total for any JSON value.
    """
    if isinstance(value, BaseModel):
        fields = type(value).model_fields
        return {n: _canonical(getattr(value, n)) for n, f in fields.items() if not f.exclude}
    if isinstance(value, Mapping):
        return dict(_ordered((k, _canonical(v)) for k, v in value.items()))
    if isinstance(value, set | frozenset):
        return [member for member, _ in _ordered((_canonical(m), None) for m in value)]
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def _ordered(pairs: Iterable[tuple[Any, Any]]) -> list[tuple[Any, Any]]:
    """``pairs`` sorted by the canonical JSON of their first member."""
    return sorted(pairs, key=lambda pair: to_json(_canonical(pair[0])))
