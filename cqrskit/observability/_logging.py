"""Log lines: JSON for machines, text for people at a terminal.

Lines about an event carry its ids as fields (``extra={...}`` with
``correlation_id``, ``event_id``, ``projection``, ``position``): in JSON
they are keys of the line, in text they follow the message.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal

from pythonjsonlogger.json import JsonFormatter

__all__ = ["EVENT_FIELDS", "configure_logging"]

#: The fields a line about an event carries, when it has them.
EVENT_FIELDS = ("correlation_id", "event_id", "projection", "position", "event_type", "instance")


def _iso_time(record: logging.LogRecord) -> str:
    """The record's time in ISO 8601 with its UTC offset, to the millisecond."""
    return (
        datetime.fromtimestamp(record.created, UTC).astimezone().isoformat(timespec="milliseconds")
    )


class _TextFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso_time(record)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [f"{k}={getattr(record, k)}" for k in EVENT_FIELDS if hasattr(record, k)]
        return f"{line} [{' '.join(fields)}]" if fields else line


class _JsonFormatter(JsonFormatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return _iso_time(record)


def configure_logging(
    format: Literal["auto", "json", "text"] = "auto", level: int | str = logging.INFO
) -> None:
    """Send the process's logs to stderr, as JSON lines or as text, from ``level`` up.

    ``auto`` (``CQRSKIT_LOG_FORMAT``'s default) means text on a terminal and
    JSON otherwise (a service manager, a container, a pipe). Times are ISO
    8601 with their UTC offset. ``level`` is a number or a name
    (``CQRSKIT_LOG_LEVEL``: ``debug``, ``info``, ``warning``, ``error``).
    """
    if isinstance(level, str):
        level = logging.getLevelNamesMapping()[level.upper()]
    chosen = format
    if chosen == "auto":
        chosen = "text" if sys.stderr.isatty() else "json"
    handler = logging.StreamHandler(sys.stderr)
    if chosen == "json":
        handler.setFormatter(
            _JsonFormatter(
                "{asctime}{levelname}{name}{message}",
                style="{",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Elasticsearch client logs every request at INFO: one line per
    # request, not per change of state.
    logging.getLogger("elastic_transport").setLevel(max(level, logging.WARNING))
