from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from cqrskit.commands._command import Command
from cqrskit.commands._unit_of_work import UnitOfWork
from cqrskit.domain import Aggregate
from cqrskit.errors import CommandRejected, FieldError, UnknownCommand

__all__ = ["CommandHandler", "CommandHandlers", "field_errors"]

C = TypeVar("C", bound=Command)

#: A handler loads or creates aggregates through the unit of work, calls
#: their methods, and returns the aggregate the command is about (or None
#: to mean the only aggregate it changed).
CommandHandler = Callable[[C, UnitOfWork], Aggregate | None]


class CommandHandlers:
    """A registry of one handler per command type.

    Each handler registers with the decorator::

        handlers = CommandHandlers()

        @handlers.handles(PlaceOrder)
        def place_order(command: PlaceOrder, uow: UnitOfWork) -> Order:
            return uow.add(Order(command.customer_id, command.lines))
    """

    def __init__(self) -> None:
        self._handlers: dict[type[Command], CommandHandler[Any]] = {}
        self._by_name: dict[str, type[Command]] = {}

    def handles(self, command_class: type[C]) -> Callable[[CommandHandler[C]], CommandHandler[C]]:
        """Decorator: register the function as the handler of ``command_class``.

        Raises:
            ValueError: a handler or another class with the same type name is
                already registered.
        """

        def register(func: CommandHandler[C]) -> CommandHandler[C]:
            name = command_class.command_type
            if command_class in self._handlers or name in self._by_name:
                raise ValueError(f"a handler for command type {name!r} is already registered")
            self._handlers[command_class] = func
            self._by_name[name] = command_class
            return func

        return register

    def handler_for(self, command: Command) -> CommandHandler[Any]:
        """The handler of ``command``'s type.

        Raises:
            UnknownCommand: none is registered.
        """
        try:
            return self._handlers[type(command)]
        except KeyError:
            raise UnknownCommand(type(command).command_type) from None

    @property
    def command_types(self) -> Mapping[str, type[Command]]:
        """Registered command classes by type name."""
        return dict(self._by_name)

    def parse(self, command_type: str, data: Mapping[str, Any] | str | bytes) -> Command:
        """Build a command from its type name and JSON (or a mapping).

        Raises:
            UnknownCommand: no command of that type is registered.
            CommandRejected: the data is invalid; lists each field path and reason.
        """
        try:
            command_class = self._by_name[command_type]
        except KeyError:
            raise UnknownCommand(command_type) from None
        try:
            if isinstance(data, str | bytes):
                return command_class.model_validate_json(data)
            return command_class.model_validate(data)
        except ValidationError as exc:
            raise CommandRejected(command_type, field_errors(exc)) from exc


def field_errors(exc: ValidationError) -> list[FieldError]:
    """pydantic's errors as field paths and reasons."""
    return [
        FieldError(".".join(str(p) for p in error["loc"]) or "(root)", error["msg"])
        for error in exc.errors()
    ]
