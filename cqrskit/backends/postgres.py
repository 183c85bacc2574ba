"""PostgreSQL adapter: connections, error translation and the health probe."""

from __future__ import annotations

from typing import Any

import psycopg

from cqrskit.backends._probe import ServiceInfo
from cqrskit.errors import ServiceUnavailable
from cqrskit.settings import Settings

__all__ = ["connect", "probe"]

SERVICE = "PostgreSQL"
VARIABLE = "CQRSKIT_POSTGRES_DSN"


def connect(settings: Settings, *, autocommit: bool = True) -> psycopg.Connection[tuple[Any, ...]]:
    """Open one connection to the event store database.

    Raises:
        ServiceUnavailable: the server cannot be reached or refused the login;
            names the address and ``CQRSKIT_POSTGRES_DSN``.
    """
    try:
        return psycopg.connect(
            settings.postgres_dsn,
            autocommit=autocommit,
            connect_timeout=max(1, round(settings.connect_timeout)),
        )
    except psycopg.Error as exc:
        raise ServiceUnavailable(
            SERVICE, settings.postgres_address(), _first_line(exc), VARIABLE
        ) from exc


def probe(settings: Settings) -> ServiceInfo:
    """Connect, ask the server version, and disconnect.

    Raises:
        ServiceUnavailable: as :func:`connect`.
    """
    with connect(settings) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        database = conn.info.dbname
    version = str(row[0]).split()[0] if row else "?"
    return ServiceInfo(SERVICE, settings.postgres_address(), version, f"database {database}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1].strip()
