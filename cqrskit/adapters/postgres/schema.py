"""An application's schema in PostgreSQL: apply its migrations, print them, check them.

``apply`` is what ``cqrskit db init`` runs: every pending migration in one
transaction, under an advisory lock, so two ``db init`` at once take turns
(the second finds nothing left to do) and a failure leaves the schema as
it was. ``script`` is the same as SQL text, for ``db init --sql``.
``require`` is what every running process calls at start, instead of
creating anything: one query, and a :class:`~cqrskit.errors.SchemaNotReady`
naming the schema and what to run when it is missing, behind, or newer.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.sql import SQL, Composed, Identifier, Literal

from cqrskit._version import __version__
from cqrskit.adapters.postgres._client import connect
from cqrskit.adapters.postgres._errors import MISSING, first_line, translated
from cqrskit.adapters.postgres.migrations import MIGRATIONS, migrations_table
from cqrskit.errors import PermanentError, SchemaNotReady
from cqrskit.schema import PARTS, AppliedMigration, Part, PendingMigration, SchemaStatus
from cqrskit.settings import Settings
from cqrskit.topology import MIGRATIONS_TABLE, Topology

__all__ = ["DDL_LOCK", "INIT_HINT", "PostgresSchema"]

#: Serialises cqrskit's own DDL between sessions: ``db init`` and ``--sql`` take it.
DDL_LOCK = 0x6371_726B_6974  # "cqrkit"
#: What to run when the schema is not ready.
INIT_HINT = "run 'cqrskit db init' (or apply the output of 'cqrskit db init --sql')"

Connection = psycopg.Connection[tuple[Any, ...]]


class PostgresSchema:
    """The schema of one application: the parts it needs, and their migrations.

    ``parts`` are the parts the application needs (``store`` always comes
    first; see :mod:`cqrskit.schema`).
    """

    def __init__(self, settings: Settings, application_name: str, parts: Sequence[Part]):
        self.settings = settings
        self.application = application_name
        self.parts: tuple[Part, ...] = tuple(p for p in PARTS if p in parts)
        self.topology = Topology.of(settings, application_name)
        self.table = Identifier(settings.postgres_schema, MIGRATIONS_TABLE)
        self.latest = max(m.number for m in MIGRATIONS)

    # -- the statements --------------------------------------------------------

    def _record(self, number: int, name: str, part: Part) -> Composed:
        return SQL(
            "INSERT INTO {table} (application, part, number, name, cqrskit_version) "
            "VALUES ({application}, {part}, {number}, {name}, {version}) ON CONFLICT DO NOTHING"
        ).format(
            table=self.table,
            application=Literal(self.application),
            part=Literal(part),
            number=Literal(number),
            name=Literal(name),
            version=Literal(__version__),
        )

    def _prologue(self) -> list[Composed]:
        return [
            SQL("DO $do$ BEGIN PERFORM pg_advisory_xact_lock({0}); END $do$").format(
                Literal(DDL_LOCK)
            ),
            SQL("CREATE SCHEMA IF NOT EXISTS {0}").format(
                Identifier(self.settings.postgres_schema)
            ),
            *migrations_table(self.topology),
        ]

    def script(self) -> str:
        """Every migration of the needed parts as one idempotent SQL script; connects to nothing.

        One transaction (``BEGIN`` ... ``COMMIT``), under the advisory lock
        ``db init`` takes, recording each migration as ``db init`` does; it
        refuses (and changes nothing) if the schema records migrations newer
        than this code. Apply it with ``psql -v ON_ERROR_STOP=1 -f``.
        """
        newer = SQL(
            "DO $do$ BEGIN IF EXISTS (SELECT 1 FROM {table} WHERE application = {application} "
            "AND number > {latest}) THEN RAISE EXCEPTION {message}; END IF; END $do$"
        ).format(
            table=self.table,
            application=Literal(self.application),
            latest=Literal(self.latest),
            message=Literal(
                f"schema {self.settings.postgres_schema} records migrations of application "
                f"{self.application} newer than cqrskit {__version__} knows (up to "
                f"{self.latest}); nothing was changed"
            ),
        )
        lines = [
            f"-- cqrskit {__version__}: the schema of application {self.application!r} in "
            f"schema {self.settings.postgres_schema!r}, parts {', '.join(self.parts)}.",
            "-- Idempotent: applying it again changes nothing. From 'cqrskit db init --sql'.",
            "BEGIN;",
            *(_text(s) for s in self._prologue()),
            _text(newer),
        ]
        for migration in MIGRATIONS:
            for part in self.parts:
                lines.append(f"-- migration {migration.number} ({migration.name}), part {part}")
                lines += [_text(s) for s in migration.statements(part, self.topology)]
                lines.append(_text(self._record(migration.number, migration.name, part)))
        lines.append("COMMIT;")
        return "\n".join(lines) + "\n"

    # -- against the database -------------------------------------------------------

    def apply(self) -> list[PendingMigration]:
        """Apply every pending migration of the needed parts, in one transaction; what it applied.

        Idempotent, and safe to run concurrently: an advisory lock makes
        two runs take turns, and the second applies nothing. When nothing is
        pending it only reads, so it needs no CREATE right. Never drops
        anything.

        Raises:
            SchemaNotReady: the schema records migrations newer than this
                code (nothing is changed).
            PermanentError: PostgreSQL refused a statement (a role without
                CREATE, say); nothing is changed.
            ServiceUnavailable: PostgreSQL cannot be reached.
        """
        with self._refusals("creating its tables"), connect(self.settings) as conn:
            # Up to date: nothing to lock or create, so a role without CREATE
            # (the application's own) may run it on every deployment.
            status = self._status(conn)
            if status.newer:
                raise self._not_ready(status)
            if not status.pending:
                return []
            with conn.transaction():
                for statement in self._prologue():
                    conn.execute(statement)
                status = self._status(conn)  # again, under the lock
                if status.newer:
                    raise self._not_ready(status)
                for pending in status.pending:
                    migration = next(m for m in MIGRATIONS if m.number == pending.number)
                    for statement in migration.statements(pending.part, self.topology):
                        conn.execute(statement)
                    conn.execute(self._record(pending.number, pending.name, pending.part))
            return list(status.pending)

    def status(self, conn: Connection | None = None) -> SchemaStatus:
        """Where the schema stands: what was applied, what is pending, what is newer.

        Reads only; a schema or migrations table that does not exist has
        every migration pending.

        Raises:
            ServiceUnavailable: PostgreSQL cannot be reached.
            PermanentError: PostgreSQL refused the read (a role without
                SELECT on the migrations table).
        """
        with self._refusals("reading its migrations"):
            if conn is not None:
                return self._status(conn)
            with connect(self.settings) as own:
                return self._status(own)

    def require(self, conn: Connection | None = None) -> None:
        """Refuse unless every needed part is up to date; one query, no DDL.

        Raises:
            SchemaNotReady: the schema is missing, has migrations pending
                for a needed part, or records migrations newer than this code.
            ServiceUnavailable: PostgreSQL cannot be reached.
        """
        status = self.status(conn)
        if not status.up_to_date:
            raise self._not_ready(status)

    def _status(self, conn: Connection) -> SchemaStatus:
        query = SQL(
            "SELECT number, name, part, applied_at, cqrskit_version FROM {table} "
            "WHERE application = %s"
        ).format(table=self.table)
        try:
            with _savepoint(conn):
                rows = conn.execute(query, [self.application]).fetchall()
        except MISSING:  # no schema, or no migrations table: nothing was applied
            rows = []
        rank: dict[str, int] = {part: n for n, part in enumerate(PARTS)}
        history = tuple(
            sorted(
                (AppliedMigration(*row) for row in rows),
                key=lambda m: (m.number, rank.get(m.part, len(rank)), m.applied_at),
            )
        )
        done = {(m.number, m.part) for m in history}
        pending = tuple(
            PendingMigration(m.number, m.name, part)
            for m in MIGRATIONS
            for part in self.parts
            if (m.number, part) not in done
        )
        return SchemaStatus(
            self.settings.postgres_schema,
            self.application,
            self.parts,
            self.latest,
            history,
            pending,
        )

    def _not_ready(self, status: SchemaStatus) -> SchemaNotReady:
        schema, app = status.schema, status.application
        if status.newer:
            by = sorted({m.cqrskit_version for m in status.history if m.number > status.latest})
            return SchemaNotReady(
                schema,
                app,
                f"it records migration {max(status.newer)}, newer than cqrskit {__version__} "
                f"knows (up to {status.latest})",
                f"run a cqrskit as new as the one that applied it ({', '.join(by)})",
            )
        if not status.history:
            return SchemaNotReady(
                schema,
                app,
                "no migration was applied to it",
                f"{INIT_HINT}, or check CQRSKIT_POSTGRES_SCHEMA if it is the wrong schema",
            )
        first = status.pending[0]
        more = len(status.pending) - 1
        return SchemaNotReady(
            schema,
            app,
            f"migration {first.number} ({first.name}) of part {first.part} is pending"
            + (f", and {more} more" if more else ""),
            INIT_HINT,
        )

    @contextlib.contextmanager
    def _refusals(self, doing: str) -> Iterator[None]:
        """PostgreSQL's refusals as one line naming the schema; its absence, ServiceUnavailable."""
        schema = self.settings.postgres_schema
        try:
            with translated(self.settings.postgres_address()):
                yield
        except psycopg.errors.InsufficientPrivilege as exc:
            raise PermanentError(
                f"schema {schema!r} of application {self.application!r}: {doing} was refused: "
                f"{first_line(exc)}; run 'cqrskit db init' as a role that may create tables "
                "in it, or hand the output of 'cqrskit db init --sql' to one"
            ) from exc
        except psycopg.Error as exc:
            raise PermanentError(
                f"schema {schema!r} of application {self.application!r}: {doing} failed: "
                f"{first_line(exc)}"
            ) from exc


@contextlib.contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint inside a transaction (a failed read must not abort it); nothing outside."""
    if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
        yield
    else:
        with conn.transaction():
            yield


def _text(statement: Composed) -> str:
    return f"{statement.as_string()};"
