"""The command side: commands, their handlers, and the bus that appends events."""

from cqrskit.commands._async import AsyncCommandBus
from cqrskit.commands._bus import CommandBus
from cqrskit.commands._command import Command, CommandResult
from cqrskit.commands._handlers import CommandHandler, CommandHandlers
from cqrskit.commands._unit_of_work import UnitOfWork

__all__ = [
    "AsyncCommandBus",
    "Command",
    "CommandBus",
    "CommandHandler",
    "CommandHandlers",
    "CommandResult",
    "UnitOfWork",
]
