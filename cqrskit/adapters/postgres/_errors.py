"""PostgreSQL's errors, translated into cqrskit's tree in one place.

psycopg raises ``OperationalError`` (and ``InterfaceError`` on a closed
connection) when the server is away, restarting or refuses the login; the
pool raises ``PoolTimeout`` when no connection comes in time. Each becomes
:class:`~cqrskit.errors.ServiceUnavailable` naming the address and the
variable that sets it, re-raised ``from`` the driver's error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
import psycopg_pool

from cqrskit.errors import PermanentError, ServiceUnavailable

__all__ = [
    "MISSING",
    "SERVICE",
    "VARIABLE",
    "first_line",
    "not_set_up",
    "translated",
    "unavailable",
]

SERVICE = "PostgreSQL"
VARIABLE = "CQRSKIT_POSTGRES_DSN"

#: What the server or the pool raises when retrying later may help.
UNAVAILABLE: tuple[type[Exception], ...] = (
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
)


#: A schema or table that is not there: the event store was never set up in it.
MISSING = (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName)


def first_line(exc: BaseException) -> str:
    """The reason of a driver error in one line.

    The server's primary message when it sent one (a statement's error,
    whose text goes on with the statement and a caret); otherwise the last
    line of the text, where libpq puts why a connection failed.
    """
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return str(primary)
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[-1].strip()


def not_set_up(application_name: str, settings_schema: str) -> PermanentError:
    """The event store of ``application_name`` is not in ``settings_schema``."""
    return PermanentError(
        f"the event store of {application_name!r} does not exist in schema "
        f"{settings_schema!r}; run 'cqrskit db init' first, or check CQRSKIT_POSTGRES_SCHEMA"
    )


def unavailable(address: str, reason: str) -> ServiceUnavailable:
    """PostgreSQL at ``address`` did not answer, for ``reason``."""
    return ServiceUnavailable(SERVICE, address, reason, VARIABLE)


@contextmanager
def translated(address: str, doing: str = "") -> Iterator[None]:
    """Re-raise the server being away as ServiceUnavailable.

    ``doing`` (for example "reading the outbox") prefixes the reason. Other
    driver errors (a constraint, a syntax error) pass through: they are
    bugs or conflicts that the caller handles by type.
    """
    try:
        yield
    except UNAVAILABLE as exc:
        reason = first_line(exc)
        raise unavailable(address, f"{doing}: {reason}" if doing else reason) from exc
