"""PostgreSQL adapter: connections, error translation and the health probe."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from cqrskit.adapters._probe import ServiceInfo
from cqrskit.adapters.postgres._errors import SERVICE, first_line, unavailable
from cqrskit.settings import Settings


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
            **connection_options(settings, tcp_user_timeout),
        )
    except psycopg.Error as exc:
        raise unavailable(settings.postgres_address(), first_line(exc)) from exc


def connection_options(settings: Settings, tcp_user_timeout: float | None = None) -> dict[str, Any]:
    """libpq parameters every connection to the event store gets, beside the DSN's own.

    TCP keepalives and ``tcp_user_timeout`` on both ends of the connection:
    on ours, so that a cut network fails a relay's or a command's query in
    seconds rather than after TCP's own time-outs (minutes to hours); on the
    server's (as session settings in ``options``), so that PostgreSQL ends
    the session of a client that vanished, releasing its locks (a relay's
    leadership among them). ``options`` already in the DSN are kept.
    ``tcp_user_timeout`` (seconds) overrides the setting, for a connection
    that must notice sooner (the relay's, within its lease).
    """
    user_timeout = tcp_user_timeout or settings.postgres_tcp_user_timeout
    user_timeout_ms = round(user_timeout * 1000)
    server = {
        "tcp_keepalives_idle": settings.postgres_keepalives_idle,
        "tcp_keepalives_interval": settings.postgres_keepalives_interval,
        "tcp_keepalives_count": settings.postgres_keepalives_count,
        "tcp_user_timeout": user_timeout_ms,
    }
    options = [str(conninfo_to_dict(settings.postgres_dsn).get("options") or "")]
    options += [f"-c {name}={value}" for name, value in server.items()]
    return {
        "keepalives": 1,
        "keepalives_idle": settings.postgres_keepalives_idle,
        "keepalives_interval": settings.postgres_keepalives_interval,
        "keepalives_count": settings.postgres_keepalives_count,
        "tcp_user_timeout": user_timeout_ms,
        "options": " ".join(o for o in options if o),
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
