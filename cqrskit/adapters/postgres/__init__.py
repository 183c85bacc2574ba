"""PostgreSQL adapter: connections, error translation and the health probe."""

from cqrskit.adapters.postgres._client import connect, connection_options, probe
from cqrskit.adapters.postgres._errors import (
    SERVICE,
    VARIABLE,
    first_line,
    translated,
    unavailable,
)

__all__ = [
    "SERVICE",
    "VARIABLE",
    "connect",
    "connection_options",
    "first_line",
    "probe",
    "translated",
    "unavailable",
]
