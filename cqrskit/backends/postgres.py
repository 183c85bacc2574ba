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


def connect(
    settings: Settings, *, autocommit: bool = True, tcp_user_timeout: float | None = None
) -> psycopg.Connection[tuple[Any, ...]]:
    """Open one connection to the event store database.

    ``tcp_user_timeout`` (seconds) makes a call on a connection whose peer
    stopped answering (a network partition) fail after that long instead of
    waiting for the kernel's retransmissions, about 15 minutes.

    Raises:
        ServiceUnavailable: the server cannot be reached or refused the login;
            names the address and ``CQRSKIT_POSTGRES_DSN``.
    """
    try:
        return psycopg.connect(
            settings.postgres_dsn,
            autocommit=autocommit,
            connect_timeout=max(1, round(settings.connect_timeout)),
            **_tcp_options(tcp_user_timeout),
        )
    except psycopg.Error as exc:
        raise ServiceUnavailable(
            SERVICE, settings.postgres_address(), _first_line(exc), VARIABLE
        ) from exc


def _tcp_options(user_timeout: float | None) -> dict[str, Any]:
    if user_timeout is None:
        return {}
    # Keepalives find a dead peer on an idle connection (one waiting for
    # notifications); the user timeout one with unacknowledged writes.
    idle = max(1, int(user_timeout / 3))
    return {
        "tcp_user_timeout": int(user_timeout * 1000),
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": idle,
        "keepalives_count": 3,
    }


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
