"""The application's schema in PostgreSQL: its parts, and where its migrations stand.

Running processes never create or alter a table: ``cqrskit db init`` applies
the migrations (or prints them, ``--sql``, for a DBA or an Alembic
migration), and every process checks at start that the parts it uses are
up to date (docs/decisions/0022-schema-migrations.md).

A schema has parts, each installed when the application needs it:

- ``store``: the events, the idempotency keys, and the relay's tables;
- ``snapshots``: the snapshots, when the application class takes them;
- ``sagas``: the process managers' tables, when ``CQRSKIT_SAGAS`` is set.

The migrations are one numbered list; each says what it does to each part.
A part installed later (sagas configured after the first ``db init``) gets
every migration of that part from the first. The table ``cqrskit_migrations``
records one row per (application, part, migration).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

__all__ = ["PARTS", "AppliedMigration", "Part", "PendingMigration", "SchemaStatus"]

Part = Literal["store", "snapshots", "sagas"]
#: Every part, in the order they are installed.
PARTS: tuple[Part, ...] = ("store", "snapshots", "sagas")


@dataclass(frozen=True)
class PendingMigration:
    """One migration of one part, not applied yet."""

    number: int
    name: str
    part: Part


@dataclass(frozen=True)
class AppliedMigration:
    """One row of the migrations table: a migration applied to one part."""

    number: int
    name: str
    part: str
    applied_at: datetime
    #: The version of cqrskit that applied it.
    cqrskit_version: str


@dataclass(frozen=True)
class SchemaStatus:
    """Where one application's schema stands against the migrations this code knows."""

    schema: str
    application: str
    #: The parts the application needs (its configuration decides).
    parts: tuple[Part, ...]
    #: The latest migration this code knows.
    latest: int
    #: What the migrations table records, oldest first (empty: none recorded).
    history: tuple[AppliedMigration, ...] = ()
    #: Migrations of the needed parts not applied yet, in order.
    pending: tuple[PendingMigration, ...] = field(default=())

    @property
    def version(self) -> int:
        """The highest migration applied to every needed part (0: none)."""
        version = 0
        for number in range(1, self.latest + 1):
            if any(p.number == number for p in self.pending):
                break
            version = number
        return max([version, *self.newer])

    @property
    def newer(self) -> tuple[int, ...]:
        """Migrations recorded that this code does not know: the schema is newer."""
        return tuple(sorted({m.number for m in self.history if m.number > self.latest}))

    @property
    def up_to_date(self) -> bool:
        """Nothing pending and nothing newer."""
        return not self.pending and not self.newer
