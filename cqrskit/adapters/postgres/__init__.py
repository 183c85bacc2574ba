"""PostgreSQL adapter: connections, error translation and the health probe."""

from cqrskit.adapters.postgres._client import connect, connection_options, probe
from cqrskit.adapters.postgres._errors import (
    MISSING,
    SERVICE,
    VARIABLE,
    first_line,
    not_set_up,
    translated,
    unavailable,
)

__all__ = [
    "MISSING",
    "SERVICE",
    "VARIABLE",
    "connect",
    "connection_options",
    "first_line",
    "not_set_up",
    "probe",
    "translated",
    "unavailable",
]
