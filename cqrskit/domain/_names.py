"""Stored names: what aggregates and events are stored as, and finding them again.

An event is stored under a registered name (``Book.Lent``) rather than the
module path of its class (``examples.library.domain:Book.Lent``), so code can
move between modules and packages without stranding the events it stored.
The name is eventsourcing's ``TOPIC``: eventsourcing writes it in the
created event's ``originator_topic`` and cqrskit's mapper writes it in the
events table, and both find the class again from eventsourcing's topic
registry (``register_topic``), which eventsourcing fills when a class with
an explicit topic is defined. cqrskit gives every aggregate and event such a
topic by default (docs/decisions/0021-stored-event-names.md).

This module keeps a registry of its own beside eventsourcing's for two
things that registry cannot do: refuse a second claim with a message that
says what to do, and find a registered name without importing anything.
Stores written before names carry module paths; :func:`resolve` finds their
class by importing the path while the module exists, and by its class's
name once it is gone.
"""

from __future__ import annotations

from collections.abc import Mapping
from threading import Lock
from typing import Any, cast
from uuid import UUID

from eventsourcing.utils import TopicError, clear_topic_cache, register_topic, resolve_topic

from cqrskit.errors import DuplicateEventName, InvalidEventName, UnknownEventName

__all__ = [
    "check_event_name",
    "check_name",
    "claim",
    "forget_module",
    "path_of",
    "registered",
    "resolve",
]

_claims: dict[str, type[Any]] = {}
#: Module paths of events stored before names, resolved once each.
_paths: dict[str, type[Any]] = {}
_lock = Lock()


def path_of(cls: type[Any]) -> str:
    """Where ``cls`` is defined, for messages: ``module.Qual.Name``."""
    return f"{cls.__module__}.{cls.__qualname__}"


def check_name(name: str, cls: type[Any]) -> None:
    """Refuse ``name`` for ``cls`` if it is malformed or another class holds it.

    Raises:
        InvalidEventName: the name is empty or holds a colon (colons mark
            the module paths of stores written before names).
        DuplicateEventName: another class claimed the name first.
    """
    if not name or ":" in name:
        raise InvalidEventName(
            f"{path_of(cls)} cannot be stored as {name!r}: a stored name is not empty and has "
            "no ':' (a colon marks an old module path)"
        )
    held = _claims.get(name)
    if held is not None and held is not cls:
        raise DuplicateEventName(name, path_of(held), path_of(cls))


def check_event_name(name: str, aggregate_name: str, cls: type[Any]) -> None:
    """Refuse ``name`` for the event class ``cls`` of the aggregate named ``aggregate_name``.

    An event's name is its aggregate's name and one more part
    (``Book.Lent``): the relay, which imports no domain code, takes the
    aggregate type (and so the Kafka topic) from what comes before the
    last dot, and all of one aggregate's events must share a topic to keep
    their order.

    Raises:
        InvalidEventName: the name is not ``<aggregate name>.<event>``.
        DuplicateEventName: another class claimed the name first.
    """
    head, _, last = name.rpartition(".")
    if head != aggregate_name or not last:
        raise InvalidEventName(
            f"event {path_of(cls)} cannot be stored as {name!r}: an event's name is its "
            f"aggregate's name and one more part, like '{aggregate_name}.{cls.__name__}'"
        )
    check_name(name, cls)


def claim(name: str, cls: type[Any]) -> None:
    """Register ``cls`` as the class stored under ``name``; idempotent.

    Also registers it with eventsourcing (``register_topic``), which is
    how eventsourcing finds the aggregate class a created event names.

    Raises:
        InvalidEventName, DuplicateEventName: as :func:`check_name`.
    """
    with _lock:
        check_name(name, cls)
        register_topic(name, cls)
        _claims[name] = cls


def resolve(stored: str, aggregate_id: UUID | str, old_names: Mapping[str, type[Any]]) -> type[Any]:
    """The class that reads what is stored under ``stored``.

    In order: the application's ``old_names``; a registered name; and for
    a module path (``module:Qual.Name``, as stores written before names
    hold), the class at that path while its module imports, else the class
    registered under its qualified name (``Qual.Name``).

    Raises:
        UnknownEventName: none of them knows the name.
    """
    found = old_names.get(stored) or _claims.get(stored) or _paths.get(stored)
    if found is not None:
        return found
    if ":" in stored:
        try:
            found = cast(type[Any], resolve_topic(stored))
        except TopicError:
            found = _claims.get(stored.partition(":")[2])
        if found is not None:
            _paths[stored] = found
            return found
    raise UnknownEventName(stored, aggregate_id)


def forget_module(module: str) -> dict[str, type[Any]]:
    """Release the names of the classes defined in ``module`` and its submodules.

    For tests that load stored events with a second copy of a domain
    module in the same process, as a deployment with the code moved would.
    Returns the names released; :func:`claim` them again to undo it.
    """

    def inside(cls: type[Any]) -> bool:
        return cls.__module__ == module or cls.__module__.startswith(module + ".")

    with _lock:
        released = {name: cls for name, cls in _claims.items() if inside(cls)}
        for registry in (_claims, _paths):
            for name in [name for name, cls in registry.items() if inside(cls)]:
                del registry[name]
        # eventsourcing refuses to register a topic twice and cannot forget
        # one: start its registry afresh (it resolves module paths again on
        # demand) and give it back the names that stay.
        clear_topic_cache()
        for name, cls in _claims.items():
            register_topic(name, cls)
    return released


def registered(name: str) -> type[Any] | None:
    """The class registered under ``name``, if any; imports nothing."""
    return _claims.get(name)
