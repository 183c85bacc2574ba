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

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch.checkpoints import ElasticsearchCheckpointReader
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.adapters.elasticsearch.search import ElasticsearchSearch
from cqrskit.adapters.kafka.dead_letters import KafkaDeadLetters
from cqrskit.commands import CommandBus, CommandHandlers
from cqrskit.eventstore import Application
from cqrskit.projections import Projection, ProjectionWorker, ReplayResult, replay_dead_letters
from cqrskit.projections._rebuild import Progress, RebuildResult, rebuild
from cqrskit.queries import QueryBus, QueryHandlers
from cqrskit.relay import OutboxRelay
from cqrskit.sagas import ProcessManager, SagaRunner
from cqrskit.settings import Settings
from cqrskit.topology import IndexNames

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

        return ProjectionWorker(
            self.settings,
            application_name,
            projection,
            read_model=self.read_model(projection),
            dead_letters=self.dead_letters(application_name, projection.name),
        )

    def read_model(self, projection: Projection[Any]) -> ElasticsearchReadModel:
        """``projection``'s read model in Elasticsearch, with a client of its own."""

        return read_model_for(self.settings, projection)

    def dead_letters(self, application_name: str, projection_name: str) -> KafkaDeadLetters:
        """The dead-letter topic of one projection."""

        return KafkaDeadLetters(self.settings, application_name, projection_name)

    def replay_dead_letters(
        self, application_name: str, projection: Projection[Any]
    ) -> ReplayResult:
        """Apply ``projection``'s dead letters again (see ``replay_dead_letters``)."""

        return replay_dead_letters(
            projection,
            self.read_model(projection),
            self.dead_letters(application_name, projection.name),
            retries=self.settings.projection_retries,
        )

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

        es = es_backend.client(self.settings)
        address = self.settings.elasticsearch_address()
        names = IndexNames.of(self.settings)
        return QueryBus(
            handlers,
            ElasticsearchSearch(es, address),
            ElasticsearchCheckpointReader(es, names.checkpoints_index, address),
            names,
            read_wait=self.settings.read_wait,
        )

    # -- process managers ----------------------------------------------------------

    def saga_runner(self, application: Application, manager: ProcessManager[Any]) -> SagaRunner:
        """A runner of ``manager``, its instances kept in ``application``'s database."""

        return SagaRunner(self.settings, application, manager)
