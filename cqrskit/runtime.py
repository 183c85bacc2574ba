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

from collections.abc import Callable
from functools import partial
from typing import Any

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch.checkpoints import (
    AsyncElasticsearchCheckpointReader,
    ElasticsearchCheckpointReader,
)
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.adapters.elasticsearch.rebuild_state import ElasticsearchRebuildStates
from cqrskit.adapters.elasticsearch.search import AsyncElasticsearchSearch, ElasticsearchSearch
from cqrskit.adapters.elasticsearch.worker_stats import ElasticsearchWorkerStats
from cqrskit.adapters.kafka.dead_letters import KafkaDeadLetters
from cqrskit.adapters.kafka.offsets import KafkaOffsets
from cqrskit.adapters.kafka.publisher import KafkaPublisher
from cqrskit.adapters.kafka.subscription import PROJECTION_CONFIG, KafkaSubscription
from cqrskit.adapters.kafka.topics import topic_partitions
from cqrskit.adapters.postgres.layouts import layout_status, request_repartition
from cqrskit.adapters.postgres.outbox import PostgresOutbox, read_status
from cqrskit.adapters.postgres.reader import PostgresStoredEvents
from cqrskit.adapters.postgres.saga_store import PostgresSagaStore
from cqrskit.commands import CommandBus, CommandHandlers
from cqrskit.envelope import Seal
from cqrskit.eventstore import Application
from cqrskit.projections import (
    Projection,
    ProjectionStatus,
    ProjectionWorker,
    ReplayResult,
    StageLatency,
    VerifyReport,
    projection_status,
    replay_dead_letters,
    stage_latencies,
    verify,
)
from cqrskit.projections._rebuild import (
    Progress,
    RebuildPlan,
    RebuildPorts,
    RebuildRequest,
    RebuildResult,
    rebuild,
    rebuild_plan,
)
from cqrskit.projections._rollback import prune, prune_plan, rollback, rollback_plan
from cqrskit.projections._worker import WorkerPorts
from cqrskit.queries import (
    AsyncQueryBus,
    AsyncQueryPorts,
    BreakerPolicy,
    Limits,
    QueryBus,
    QueryHandlers,
    QueryPorts,
)
from cqrskit.relay import LayoutStatus, OutboxRelay, RelayOptions, RelayStatus
from cqrskit.sagas import ProcessManager, SagaRunner, SagaStore
from cqrskit.settings import Settings
from cqrskit.topology import IndexNames, Topology

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
        settings = self.settings

        def publishers(
            transactional_id: str,
            on_unreachable: Callable[[str], None] | None = None,
            seal: Seal | None = None,
        ) -> KafkaPublisher:
            return KafkaPublisher(settings, transactional_id, on_unreachable, seal)

        return OutboxRelay(
            Topology.of(settings, application_name),
            relay_name,
            outbox=PostgresOutbox(settings, application_name, relay_name),
            publishers=publishers,
            options=RelayOptions.of(settings),
        )

    def relay_status(self, application_name: str, relay_name: str = "default") -> RelayStatus:
        """Where the relay ``relay_name`` of ``application_name`` is (see ``read_status``)."""
        return read_status(self.settings, application_name, relay_name)

    def layout_status(self, application_name: str) -> list[LayoutStatus]:
        """Each of the application's topics: partitions used by the relay, and in Kafka."""
        start = Topology.of(self.settings, application_name).topic_start
        return layout_status(self.settings, start, partial(topic_partitions, self.settings))

    def request_repartition(
        self, application_name: str, topics: tuple[str, ...] = ()
    ) -> list[tuple[str, int, int]]:
        """Ask the leading relay to move ``topics`` (default: all) onto all their partitions.

        Idempotent; see :func:`cqrskit.adapters.postgres.layouts.request_repartition`.
        """
        start = Topology.of(self.settings, application_name).topic_start
        in_kafka = partial(topic_partitions, self.settings)
        return request_repartition(self.settings, start, topics, in_kafka=in_kafka)

    # -- projections ---------------------------------------------------------------

    def worker(self, application_name: str, projection: Projection[Any]) -> ProjectionWorker:
        """A worker applying ``projection``'s events to its Elasticsearch read model."""

        topology = Topology.of(self.settings, application_name)
        read_model = self.read_model(projection)
        ports = WorkerPorts(
            read_model=read_model,
            dead_letters=self.dead_letters(application_name, projection.name),
            subscription=KafkaSubscription(
                self.settings,
                f"projection {projection.name}",
                topology.projection_group(projection.name),
                topology.topics(projection.aggregate_types()),
                PROJECTION_CONFIG,
            ),
            stats=ElasticsearchWorkerStats(read_model.es, IndexNames.of(self.settings).stats_index),
        )
        return ProjectionWorker(self.settings, application_name, projection, ports)

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

    def stored_events(self, application_name: str) -> PostgresStoredEvents:
        """``application_name``'s event store, read in commit order (replays, verify)."""
        return PostgresStoredEvents(self.settings, application_name)

    def topic_offsets(self, application_name: str, projection: Projection[Any]) -> KafkaOffsets:
        """The offsets of ``projection``'s topics: its live group's and a rebuild's."""
        topology = Topology.of(self.settings, application_name)
        return KafkaOffsets(
            self.settings,
            topology.topics(projection.aggregate_types()),
            live_group=topology.projection_group(projection.name),
            replay_group=topology.rebuild_group(projection.name),
        )

    def worker_stats(self) -> ElasticsearchWorkerStats:
        """Where workers keep their stage samples, beside the checkpoints."""
        return ElasticsearchWorkerStats(
            es_backend.client(self.settings),
            IndexNames.of(self.settings).stats_index,
            self.settings.elasticsearch_address(),
        )

    def rebuild_ports(self, application_name: str, projection: Projection[Any]) -> RebuildPorts:
        """What a rebuild or a rollback of ``projection`` works on."""
        read_model = self.read_model(projection)
        topology = Topology.of(self.settings, application_name)
        return RebuildPorts(
            read_model=read_model,
            states=ElasticsearchRebuildStates(
                read_model.es,
                self.settings.elasticsearch_address(),
                IndexNames.of(self.settings).rebuilds_index,
            ),
            offsets=self.topic_offsets(application_name, projection),
            events=self.stored_events(application_name),
            topics=tuple(topology.topics(projection.aggregate_types())),
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
        ports = self.rebuild_ports(application_name, projection)
        request = RebuildRequest(from_position, drop_old, progress)
        return rebuild(self.settings, projection, ports, request)

    def rebuild_plan(
        self, application_name: str, projection: Projection[Any], *, from_position: int = 0
    ) -> RebuildPlan:
        """What :meth:`rebuild` would do now; read-only (see ``rebuild_plan``)."""
        ports = self.rebuild_ports(application_name, projection)
        return rebuild_plan(self.settings, projection, ports, from_position=from_position)

    def rollback(
        self,
        application_name: str,
        projection: Projection[Any],
        *,
        progress: Progress | None = None,
    ) -> str:
        """Serve the previous index again, caught up first; its name (see ``rollback``)."""
        ports = self.rebuild_ports(application_name, projection)
        if progress is None:
            return rollback(self.settings, projection, ports)
        return rollback(self.settings, projection, ports, progress=progress)

    def rollback_plan(
        self, application_name: str, projection: Projection[Any]
    ) -> tuple[str | None, str]:
        """(the index in service, the one :meth:`rollback` would serve again); read-only."""
        ports = self.rebuild_ports(application_name, projection)
        return rollback_plan(self.settings, projection, ports)

    def prune_plan(self, projection: Projection[Any]) -> list[str]:
        """The indices :meth:`prune` would delete; read-only."""
        return prune_plan(self.read_model(projection))

    def prune(self, projection: Projection[Any]) -> list[str]:
        """Delete every version of the read model except the one in service; return them."""
        return prune(self.read_model(projection))

    def verify(self, application_name: str, projection: Projection[Any]) -> VerifyReport:
        """Fold the store afresh and compare it with the live read model (see ``verify``)."""
        return verify(projection, self.read_model(projection), self.stored_events(application_name))

    def projection_status(
        self, application_name: str, projection: Projection[Any]
    ) -> ProjectionStatus:
        """Where ``projection`` is: checkpoints, documents and lag (see ``projection_status``)."""
        return projection_status(
            self.read_model(projection), self.topic_offsets(application_name, projection)
        )

    def stage_latencies(self, projection_name: str) -> list[StageLatency]:
        """Each stage's p50/p99 over the projection's workers' recent samples."""
        return stage_latencies(self.worker_stats(), projection_name)

    # -- the query side ------------------------------------------------------------

    def query_limits(self) -> Limits:
        """The read wait, bulkheads and breaker policy the settings give each read model."""
        s = self.settings
        return Limits(
            read_wait=s.read_wait,
            max_reads=s.query_max_reads,
            max_waits=s.query_max_waits,
            breaker=BreakerPolicy(
                window=s.query_breaker_window,
                min_calls=s.query_breaker_min_calls,
                failure_rate=s.query_breaker_failure_rate,
                open_for=s.query_breaker_open_seconds,
                half_open_calls=s.query_breaker_half_open_calls,
            ),
        )

    def query_bus(self, handlers: QueryHandlers) -> QueryBus:
        """A blocking query bus serving ``handlers`` from the read models' aliases."""
        es = es_backend.client(self.settings)
        address = self.settings.elasticsearch_address()
        names = IndexNames.of(self.settings)
        ports = QueryPorts(
            ElasticsearchSearch(es, address),
            ElasticsearchCheckpointReader(es, names.checkpoints_index, address),
            close=es.close,
        )
        return QueryBus(handlers, ports, names, self.query_limits())

    def async_query_bus(self, handlers: QueryHandlers) -> AsyncQueryBus:
        """An awaited query bus serving ``handlers``; build it inside the event loop.

        Close it with ``await bus.aclose()`` (the FastAPI lifespan does).
        """
        es = es_backend.async_client(self.settings)
        address = self.settings.elasticsearch_address()
        names = IndexNames.of(self.settings)
        ports = AsyncQueryPorts(
            AsyncElasticsearchSearch(es, address),
            AsyncElasticsearchCheckpointReader(es, names.checkpoints_index, address),
            close=es.close,
        )
        return AsyncQueryBus(handlers, ports, names, self.query_limits())

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
