"""The composition root: settings in, a running pipeline's parts out.

The one place that turns :class:`~cqrskit.settings.Settings` into the
clients and adapters of PostgreSQL, Kafka and Elasticsearch, and hands them
to the stages as ports. The CLI, the example API, the tests and the
benchmarks build through it; the stages themselves never read settings to
find a service (decision 0016)::

    runtime = Runtime(settings)
    relay = runtime.relay(ShopApp.name)                    # OutboxRelay
    worker = runtime.worker(ShopApp.name, OrderSummary())  # ProjectionWorker
    result = runtime.rebuild(ShopApp.name, OrderSummary())
    runner = runtime.saga_runner(ShopApp(settings=settings), Checkout())
    commands = runtime.command_bus(ShopApp(settings=settings), handlers)
    queries = runtime.query_bus(query_handlers)
"""

from __future__ import annotations

from typing import Any

from cqrskit.adapters.kafka.subscription import KafkaSubscription
from cqrskit.adapters.postgres.saga_store import PostgresSagaStore
from cqrskit.commands import CommandBus, CommandHandlers
from cqrskit.eventstore import Application
from cqrskit.projections import Projection, ProjectionWorker
from cqrskit.projections._rebuild import Progress, RebuildResult, rebuild
from cqrskit.queries import QueryBus, QueryHandlers
from cqrskit.relay import OutboxRelay
from cqrskit.sagas import ProcessManager, SagaRunner, SagaStore
from cqrskit.settings import Settings
from cqrskit.topology import Topology

__all__ = ["Runtime"]


class Runtime:
    """Builds each part of the pipeline from one settings object.

    Cheap to create; it opens nothing until a part is asked for, and each
    part owns (and closes) the clients it was built with.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()

    # -- the command side ----------------------------------------------------------

    def command_bus(self, application: Application, handlers: CommandHandlers) -> CommandBus:
        """A command bus appending to ``application``'s event store."""

        return CommandBus(application, handlers)

    # -- the relay -----------------------------------------------------------------

    def relay(self, application_name: str, relay_name: str = "default") -> OutboxRelay:
        """A relay publishing ``application_name``'s outbox to Kafka."""

        return OutboxRelay(self.settings, application_name, relay_name)

    # -- projections ---------------------------------------------------------------

    def worker(self, application_name: str, projection: Projection[Any]) -> ProjectionWorker:
        """A worker applying ``projection``'s events to its Elasticsearch read model."""

        return ProjectionWorker(self.settings, application_name, projection)

    def rebuild(
        self,
        application_name: str,
        projection: Projection[Any],
        *,
        from_position: int = 0,
        drop_old: bool = False,
        progress: Progress | None = None,
    ) -> RebuildResult:
        """Build ``projection``'s read model afresh and put it in service (see ``rebuild``)."""

        options: dict[str, Any] = {"from_position": from_position, "drop_old": drop_old}
        if progress is not None:
            options["progress"] = progress
        return rebuild(self.settings, application_name, projection, **options)

    # -- the query side ------------------------------------------------------------

    def query_bus(self, handlers: QueryHandlers) -> QueryBus:
        """A query bus serving ``handlers`` from the read models' aliases."""

        return QueryBus(self.settings, handlers)

    # -- process managers ----------------------------------------------------------

    def saga_runner(self, application: Application, manager: ProcessManager[Any]) -> SagaRunner:
        """A runner of ``manager``, its instances kept in ``application``'s database.

        Creates the store's tables (idempotent); the runner creates nothing.

        Raises:
            ServiceUnavailable: PostgreSQL did not answer creating the tables.
        """

        topology = Topology.of(self.settings, application.name)
        subscription = KafkaSubscription(
            self.settings,
            f"saga {manager.name}",
            topology.saga_group(manager.name),
            topology.topics(manager.aggregate_types()),
        )
        bus = self.command_bus(application, manager.handlers)
        return SagaRunner(manager, bus, self.saga_store(application.name), subscription)

    def saga_store(self, application_name: str) -> SagaStore:
        """The store of ``application_name``'s process managers, its tables created.

        Raises:
            ServiceUnavailable: PostgreSQL did not answer creating the tables.
        """

        store = PostgresSagaStore(self.settings, application_name)
        store.create_tables()
        return store
