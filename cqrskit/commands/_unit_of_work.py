from __future__ import annotations

from typing import TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.application import Application as _LibraryApplication
from eventsourcing.persistence import PersistenceError

from cqrskit.domain import Aggregate
from cqrskit.errors import AggregateNotFound

__all__ = ["UnitOfWork"]

A = TypeVar("A", bound=Aggregate)


class UnitOfWork:
    """The aggregates one command loads and creates, saved together.

    Everything a handler changes through one unit of work is appended in a
    single transaction: all of it or none of it.
    """

    def __init__(self, application: _LibraryApplication[UUID]):
        self._application = application
        self._aggregates: dict[UUID, Aggregate] = {}

    def get(self, aggregate_class: type[A], aggregate_id: UUID) -> A:
        """Load the aggregate with ``aggregate_id``; the same object if loaded before.

        Raises:
            AggregateNotFound: no aggregate of ``aggregate_class`` has that id.
            ServiceUnavailable: the event store could not be read.
        """
        known = self._aggregates.get(aggregate_id)
        if known is None:
            try:
                known = self._application.repository.get(aggregate_id)
            except AggregateNotFoundError:
                raise AggregateNotFound(aggregate_id, aggregate_class.__name__) from None
            except PersistenceError as exc:
                translate = getattr(self._application, "unavailable", None)
                if translate is None:
                    raise
                raise translate(exc) from exc
        if not isinstance(known, aggregate_class):
            raise AggregateNotFound(aggregate_id, aggregate_class.__name__)
        self._aggregates[aggregate_id] = known
        return known

    def add(self, aggregate: A) -> A:
        """Track a new aggregate so that its events are saved with the rest."""
        self._aggregates[aggregate.id] = aggregate
        return aggregate

    @property
    def aggregates(self) -> list[Aggregate]:
        """Every aggregate loaded or added, in order."""
        return list(self._aggregates.values())
