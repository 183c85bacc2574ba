"""What ``cqrskit teardown`` removes of an application in PostgreSQL.

The whole schema when it is the application's alone: not ``public``, and
holding no table but the application's own and cqrskit's shared ones
(relay, layouts, migrations), with no other application recorded in them.
Otherwise only what is the application's: its own tables, and its rows in
the shared tables (its relays, its topics' layouts, its migrations); the
shared tables, the composite type and the insert function stay for the
other applications of the schema.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.sql import SQL, Identifier

from cqrskit.adapters.postgres._client import connect
from cqrskit.adapters.postgres._errors import SERVICE, first_line, translated
from cqrskit.errors import PermanentError
from cqrskit.settings import Settings
from cqrskit.teardown import Removal
from cqrskit.topology import LAYOUT_TABLE, MIGRATIONS_TABLE, MOVES_TABLE, RELAY_TABLE, Topology

__all__ = ["removals", "remove"]

_SHARED = (RELAY_TABLE, LAYOUT_TABLE, MOVES_TABLE, MIGRATIONS_TABLE)

Connection = psycopg.Connection[tuple[Any, ...]]


def removals(settings: Settings, application_name: str) -> tuple[list[Removal], list[str]]:
    """(what to remove, what is kept and why) of the application in its schema; reads only.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached.
    """
    topology = Topology.of(settings, application_name)
    schema = settings.postgres_schema
    with _refusals(settings), connect(settings) as conn:
        tables = _tables(conn, schema)
        if tables is None:
            return [], []
        own = [t for t in topology.own_tables if t in tables]
        foreign = sorted(set(tables) - set(topology.own_tables) - set(_SHARED))
        others = _other_applications(conn, topology, tables)
        if schema != "public" and not foreign and not others:
            held = ", ".join(sorted(tables)) or "nothing"
            return [Removal(SERVICE, "schema", schema, f"and all it holds: {held}")], []
        found = [Removal(SERVICE, "table", f"{schema}.{t}") for t in own]
        for table, detail in _ROWS.items():
            count = _count(conn, topology, table) if table in tables else 0
            if count:
                found.append(Removal(SERVICE, "rows", f"{schema}.{table}", f"{count} {detail}"))
    why = (
        "it is public" if schema == "public" else f"it also holds {', '.join([*foreign, *others])}"
    )
    kept = [f"schema {schema!r} and cqrskit's shared tables in it are kept: {why}"]
    return found, kept


def remove(settings: Settings, application_name: str, planned: Sequence[Removal]) -> None:
    """Remove what :func:`removals` planned, in one transaction; idempotent.

    Raises:
        ServiceUnavailable: PostgreSQL cannot be reached.
        PermanentError: PostgreSQL refused (a role that does not own the tables).
    """
    topology = Topology.of(settings, application_name)
    with _refusals(settings), connect(settings) as conn, conn.transaction():
        for removal in planned:
            if removal.kind == "schema":
                conn.execute(
                    SQL("DROP SCHEMA IF EXISTS {0} CASCADE").format(Identifier(removal.name))
                )
            elif removal.kind == "table":
                schema, _, table = removal.name.partition(".")
                conn.execute(
                    SQL("DROP TABLE IF EXISTS {0} CASCADE").format(Identifier(schema, table))
                )
            elif removal.kind == "rows":
                schema, _, table = removal.name.partition(".")
                where, values = _mine(conn, topology, table)
                conn.execute(
                    SQL("DELETE FROM {0} WHERE ").format(Identifier(schema, table)) + where, values
                )


def _tables(conn: Connection, schema: str) -> list[str] | None:
    """The tables and views of ``schema``; None if it does not exist."""
    if not conn.execute("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]).fetchone():
        return None
    rows = conn.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY c.relname",
        [schema],
    ).fetchall()
    return [str(r[0]) for r in rows]


def _other_applications(conn: Connection, topology: Topology, tables: list[str]) -> list[str]:
    """Other applications cqrskit keeps in the schema: their migrations or relays."""
    found: set[str] = set()
    for table in (MIGRATIONS_TABLE, RELAY_TABLE):
        if table in tables:
            rows = conn.execute(
                SQL(
                    "SELECT DISTINCT application FROM {0} WHERE application NOT IN (%s, '')"
                ).format(Identifier(topology.schema, table)),
                [topology.application],
            ).fetchall()
            found |= {f"application {r[0]!r}" for r in rows}
    return sorted(found)


#: The shared tables the application has rows in, and what its rows are.
_ROWS = {
    MIGRATIONS_TABLE: "migrations of the application",
    RELAY_TABLE: "relay positions of the application",
    LAYOUT_TABLE: "layouts of the application's topics",
    MOVES_TABLE: "repartitions asked for its topics",
}


def _mine(conn: Connection, topology: Topology, table: str) -> tuple[SQL, list[Any]]:
    """The WHERE clause (and its values) of the application's rows in a shared ``table``.

    Topics are the application's by :meth:`Topology.owns_topic`, decided
    here and not by a prefix match: ``shop.eu.order`` is not ``shop``'s.
    """
    if table in (MIGRATIONS_TABLE, RELAY_TABLE):
        return SQL("application = %s"), [topology.application]
    rows = conn.execute(
        SQL("SELECT DISTINCT topic FROM {0}").format(Identifier(topology.schema, table))
    ).fetchall()
    return SQL("topic = ANY(%s)"), [[t for (t,) in rows if topology.owns_topic(str(t))]]


def _count(conn: Connection, topology: Topology, table: str) -> int:
    where, values = _mine(conn, topology, table)
    query = SQL("SELECT count(*) FROM {0} WHERE ").format(Identifier(topology.schema, table))
    row = conn.execute(query + where, values).fetchone()
    return int(row[0]) if row else 0


@contextlib.contextmanager
def _refusals(settings: Settings) -> Iterator[None]:
    """PostgreSQL's refusals as one line naming the schema; its absence as ServiceUnavailable."""
    try:
        with translated(settings.postgres_address(), "tearing down"):
            yield
    except psycopg.Error as exc:
        raise PermanentError(f"schema {settings.postgres_schema!r}: {first_line(exc)}") from exc
