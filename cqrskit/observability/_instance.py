"""Which process this is, as logs, metrics and status tables name it."""

from __future__ import annotations

import os
import socket

__all__ = ["instance_name"]


def instance_name() -> str:
    """host:pid of this process, to say which relay is active."""
    return f"{socket.gethostname()}:{os.getpid()}"
