"""Every PostgreSQL connection notices a lost network in seconds (issue 15).

Keepalives and ``tcp_user_timeout`` are set on both ends of each
connection: the client's socket (a relay notices the server is gone) and
the server's (PostgreSQL ends the session of a client that vanished, and
with it the relay's leadership lock). The server reports its end in
``SHOW``; the client's end is read back from the socket itself.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg.rows import tuple_row

from cqrskit import Settings
from cqrskit.adapters import postgres as pg_backend
from examples.shop import ShopApp

SERVER_SIDE = ("tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count")


def _server_side(conn: psycopg.Connection[Any]) -> dict[str, str]:
    shown = {}
    with conn.cursor(row_factory=tuple_row) as cursor:
        for name in (*SERVER_SIDE, "tcp_user_timeout"):
            (shown[name],) = cursor.execute(f"SHOW {name}").fetchone() or ("?",)
    return shown


def _client_side(conn: psycopg.Connection[Any]) -> tuple[int, int, int, int]:
    sock = socket.socket(fileno=conn.pgconn.socket)
    try:
        return (
            sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL),
            sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT),
        )
    finally:
        sock.detach()  # the socket is libpq's


@pytest.fixture
def app_connection(schema_settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A connection of an application's own pool (the command side)."""
    with (
        ShopApp(schema_settings) as app,
        app.factory.datastore.get_connection() as conn,  # type: ignore[attr-defined]
    ):
        yield conn


def test_every_postgres_connection_has_keepalives_and_a_user_timeout_by_default(
    settings: Settings, app_connection: psycopg.Connection[Any]
) -> None:
    with pg_backend.connect(settings) as conn:
        direct = (_server_side(conn), _client_side(conn))
    pooled = (_server_side(app_connection), _client_side(app_connection))
    expected = (
        {
            "tcp_keepalives_idle": "10",
            "tcp_keepalives_interval": "5",
            "tcp_keepalives_count": "3",
            "tcp_user_timeout": "30000",
        },
        (1, 10, 5, 30_000),
    )
    assert direct == expected
    assert pooled == expected


def test_keepalive_settings_reach_both_ends_of_the_connection(settings: Settings) -> None:
    tuned = Settings.load(
        postgres_keepalives_idle=4,
        postgres_keepalives_interval=2,
        postgres_keepalives_count=6,
        postgres_tcp_user_timeout=12.5,
        postgres_dsn=f"{settings.postgres_dsn}?options=-c%20statement_timeout%3D9000",
    )
    with pg_backend.connect(tuned) as conn:
        assert _server_side(conn) == {
            "tcp_keepalives_idle": "4",
            "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "6",
            "tcp_user_timeout": "12500",
        }
        assert _client_side(conn) == (1, 4, 2, 12_500)
        # Options already in the DSN are kept.
        assert conn.execute("SHOW statement_timeout").fetchone() == ("9s",)
