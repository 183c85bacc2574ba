"""cqrskit's pytest plugin: fixtures that make the testing kit's scenarios and buses.

Installed with cqrskit and loaded by pytest itself (the ``pytest11`` entry
point), it adds three fixtures, each a factory, so that one test can make
several and every one made is closed after the test:

- ``cqrskit_scenario(handlers, application_class=Application)``: a
  :class:`cqrskit.testing.Scenario` (given events, when a command, then
  events or an error) on the in-memory event store;
- ``cqrskit_saga_scenario(manager, refuse=())``: a
  :class:`cqrskit.testing.SagaScenario` for a process manager;
- ``cqrskit_buses(application_class, commands, queries, *projections)``:
  :class:`cqrskit.testing.MemoryBuses`, the real awaited buses on in-memory
  stores, for an API's tests; their threads are stopped after the test.

It lives apart from the ``cqrskit`` package, and imports it only when a test
asks for one of its fixtures: importing ``cqrskit`` takes about a second,
which a pytest run that uses none of them does not pay.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

import pytest

if TYPE_CHECKING:
    from cqrskit.commands import CommandHandlers
    from cqrskit.eventstore import Application
    from cqrskit.projections import Projection
    from cqrskit.queries import QueryHandlers
    from cqrskit.sagas import ProcessManager
    from cqrskit.testing import MemoryBuses, SagaScenario, Scenario

__all__ = [
    "BusesFactory",
    "SagaScenarioFactory",
    "ScenarioFactory",
    "cqrskit_buses",
    "cqrskit_saga_scenario",
    "cqrskit_scenario",
]


class ScenarioFactory(Protocol):
    """What ``cqrskit_scenario`` is: call it to make a :class:`~cqrskit.testing.Scenario`."""

    def __call__(
        self, handlers: CommandHandlers, application_class: type[Application] | None = None
    ) -> Scenario:
        """A scenario of ``handlers`` on ``application_class`` (default: a plain Application)."""
        ...


class SagaScenarioFactory(Protocol):
    """What ``cqrskit_saga_scenario`` is: call it to make a
    :class:`~cqrskit.testing.SagaScenario`."""

    def __call__(self, manager: ProcessManager[Any], refuse: Sequence[str] = ()) -> SagaScenario:
        """A scenario of ``manager`` that refuses the command types ``refuse``."""
        ...


class BusesFactory(Protocol):
    """What ``cqrskit_buses`` is: call it to make :class:`~cqrskit.testing.MemoryBuses`."""

    def __call__(
        self,
        application_class: type[Application],
        commands: CommandHandlers,
        queries: QueryHandlers,
        *projections: Projection[Any],
    ) -> MemoryBuses:
        """The buses of ``application_class`` with the read models of ``projections``."""
        ...


@pytest.fixture
def cqrskit_scenario() -> Iterator[ScenarioFactory]:
    """Make :class:`~cqrskit.testing.Scenario` objects; their applications close afterwards."""
    from cqrskit.testing import Scenario

    made: list[Scenario] = []

    def make(
        handlers: CommandHandlers, application_class: type[Application] | None = None
    ) -> Scenario:
        scenario = (
            Scenario(handlers)
            if application_class is None
            else Scenario(handlers, application_class)
        )
        made.append(scenario)
        return scenario

    yield make
    for scenario in made:
        scenario.application.close()


@pytest.fixture
def cqrskit_saga_scenario() -> SagaScenarioFactory:
    """Make :class:`~cqrskit.testing.SagaScenario` objects (in memory; nothing to close)."""
    from cqrskit.testing import SagaScenario

    def make(manager: ProcessManager[Any], refuse: Sequence[str] = ()) -> SagaScenario:
        return SagaScenario(manager, refuse)

    return make


@pytest.fixture
def cqrskit_buses() -> Iterator[BusesFactory]:
    """Make :class:`~cqrskit.testing.MemoryBuses`; their threads and applications stop
    afterwards."""
    from cqrskit.testing import MemoryBuses

    made: list[MemoryBuses] = []

    def make(
        application_class: type[Application],
        commands: CommandHandlers,
        queries: QueryHandlers,
        *projections: Projection[Any],
    ) -> MemoryBuses:
        buses = MemoryBuses(application_class, commands, queries, *projections)
        made.append(buses)
        return buses

    yield make
    for buses in made:
        buses.close()
        buses.application.close()
