"""Commands dispatched from an event loop, on threads of cqrskit's own.

The command side is blocking (psycopg, and the eventsourcing library on it).
:class:`AsyncCommandBus` runs each dispatch on a bounded pool of threads, so
an ``async def`` endpoint awaits a command without blocking its loop, and
without taking the threads the web framework keeps for its own blocking
work. The caller's context variables (the trace, say) go with the command.
"""

from __future__ import annotations

import asyncio
import contextvars
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar
from uuid import UUID

from cqrskit.commands._bus import CommandBus
from cqrskit.commands._command import Command, CommandResult

__all__ = ["AsyncCommandBus"]

C = TypeVar("C", bound=Command)


class AsyncCommandBus:
    """A :class:`CommandBus` awaited: ``threads`` commands at most run at a time.

    Close it with :meth:`close` (the FastAPI lifespan does); commands in
    flight finish first.
    """

    def __init__(self, bus: CommandBus, threads: int):
        self.bus = bus
        self.threads = threads
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cqrskit-command")

    async def dispatch(
        self,
        command: Command,
        *,
        idempotency_key: str | None = None,
        correlation_id: UUID | None = None,
        causation_id: UUID | None = None,
    ) -> CommandResult:
        """Handle ``command`` on a thread of the pool; see :meth:`CommandBus.dispatch`.

        The idempotency key, correlation and causation go through unchanged;
        so do the same errors.
        """
        call = partial(
            self.bus.dispatch,
            command,
            idempotency_key=idempotency_key,
            correlation_id=correlation_id,
            causation_id=causation_id,
        )
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, call)

    def build(self, command_class: type[C], **data: object) -> C:
        """A command from untrusted data, every field checked.

        Raises:
            CommandRejected: the data is invalid; lists each field path and reason.
        """
        command = self.bus.handlers.parse(command_class.command_type, dict(data))
        assert isinstance(command, command_class)
        return command

    def close(self) -> None:
        """Wait for the commands in flight, then stop the threads."""
        self._pool.shutdown(wait=True)
