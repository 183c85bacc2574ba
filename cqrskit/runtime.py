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
    runtime.init_schema(ShopApp)                           # what 'cqrskit db init' runs
    runner = runtime.saga_runner(ShopApp(settings=settings), Checkout())
    commands = runtime.command_bus(ShopApp(settings=settings), handlers)
    queries = runtime.query_bus(query_handlers)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters.elasticsearch import teardown as es_teardown
from cqrskit.adapters.elasticsearch.checkpoints import (
    AsyncElasticsearchCheckpointReader,
    ElasticsearchCheckpointReader,
)
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.adapters.elasticsearch.rebuild_state import ElasticsearchRebuildStates
from cqrskit.adapters.elasticsearch.search import AsyncElasticsearchSearch, ElasticsearchSearch
from cqrskit.adapters.elasticsearch.worker_stats import ElasticsearchWorkerStats
from cqrskit.adapters.kafka import teardown as kafka_teardown
from cqrskit.adapters.kafka.dead_letters import KafkaDeadLetters
from cqrskit.adapters.kafka.offsets import KafkaOffsets
from cqrskit.adapters.kafka.publisher import KafkaPublisher
from cqrskit.adapters.kafka.subscription import PROJECTION_CONFIG, KafkaSubscription
from cqrskit.adapters.kafka.topics import topic_partitions
from cqrskit.adapters.postgres import teardown as pg_teardown
from cqrskit.adapters.postgres.layouts import layout_status, request_repartition
from cqrskit.adapters.postgres.outbox import PostgresOutbox, read_status
from cqrskit.adapters.postgres.reader import PostgresStoredEvents
from cqrskit.adapters.postgres.saga_store import PostgresSagaStore
from cqrskit.adapters.postgres.schema import PostgresSchema
from cqrskit.commands import CommandBus, CommandHandlers
from cqrskit.envelope import Seal
from cqrskit.errors import ServiceUnavailable
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
from cqrskit.schema import Part, PendingMigration, SchemaStatus
from cqrskit.settings import Settings
from cqrskit.teardown import TeardownPlan
from cqrskit.topology import IndexNames, Topology

__all__ = ["Runtime"]

log = logging.getLogger("cqrskit.runtime")


class Runtime:
    """Builds each part of the pipeline from one settings object.

    Cheap to create; it opens nothing until a part is asked for, and each
    part owns (and closes) the clients it was built with.
    """

    def __init__(self, settings: Settings | None = None):
        self.settings = settings or Settings()

    # -- the schema ------------------------------------------------------------------

    def schema_parts(
        self, application: type[Application], *, sagas: bool | None = None
    ) -> tuple[Part, ...]:
        """The parts of the schema ``application`` needs: the store; snapshots when the
        class takes them; the sagas' tables when ``sagas`` (default: ``CQRSKIT_SAGAS`` is set)."""
        parts: list[Part] = ["store"]
        if application.is_snapshotting_enabled or application.snapshotting_intervals:
            parts.append("snapshots")
        if self.settings.sagas is not None if sagas is None else sagas:
            parts.append("sagas")
        return tuple(parts)

    def _schema(self, application: type[Application], sagas: bool | None) -> PostgresSchema:
        return PostgresSchema(
            self.settings, application.name, self.schema_parts(application, sagas=sagas)
        )

    def init_schema(
        self, application: type[Application], *, sagas: bool | None = None
    ) -> list[PendingMigration]:
        """Create or migrate every table ``application`` uses; what it applied.

        What ``cqrskit db init`` runs: the pending migrations of the needed
        parts (:meth:`schema_parts`), in one transaction under an advisory
        lock. Idempotent, safe to run concurrently, never drops anything.

        Raises:
            SchemaNotReady: the schema is newer than this code.
            PermanentError: PostgreSQL refused a statement (a role without CREATE).
            ServiceUnavailable: PostgreSQL cannot be reached.
        """
        return self._schema(application, sagas).apply()

    def schema_sql(self, application: type[Application], *, sagas: bool | None = None) -> str:
        """:meth:`init_schema` as one idempotent SQL script, for a DBA; connects to nothing."""
        return self._schema(application, sagas).script()

    def schema_status(
        self, application: type[Application], *, sagas: bool | None = None
    ) -> SchemaStatus:
        """The migrations applied to ``application``'s schema, and those pending; reads only.

        Raises:
            ServiceUnavailable: PostgreSQL cannot be reached.
        """
        return self._schema(application, sagas).status()

    def require_schema(self, application_name: str, parts: Sequence[Part] = ("store",)) -> None:
        """Refuse unless ``parts`` of the application's schema are up to date; no DDL.

        Raises:
            SchemaNotReady: missing, behind, or newer than this code.
            ServiceUnavailable: PostgreSQL cannot be reached.
        """
        PostgresSchema(self.settings, application_name, parts).require()

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
        in_kafka = partial(topic_partitions, self.settings)
        return layout_status(self.settings, application_name, in_kafka)

    def request_repartition(
        self, application_name: str, topics: tuple[str, ...] = ()
    ) -> list[tuple[str, int, int]]:
        """Ask the leading relay to move ``topics`` (default: all) onto all their partitions.

        Idempotent; see :func:`cqrskit.adapters.postgres.layouts.request_repartition`.
        """
        in_kafka = partial(topic_partitions, self.settings)
        return request_repartition(self.settings, application_name, topics, in_kafka=in_kafka)

    # -- projections ---------------------------------------------------------------

    def worker(self, application_name: str, projection: Projection[Any]) -> ProjectionWorker:
        """A worker applying ``projection``'s events to its Elasticsearch read model.

        Refuses to build one against a schema that is not up to date; a
        worker needs nothing else of PostgreSQL, so when it cannot be reached
        the check is skipped, with a warning.

        Raises:
            SchemaNotReady: the application's schema is missing, behind, or newer.
        """
        try:
            self.require_schema(application_name)
        except ServiceUnavailable as exc:
            log.warning(
                "projection %s: the schema's version was not checked: %s", projection.name, exc
            )
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

        Raises:
            SchemaNotReady: the store's or the sagas' tables are not up to date.
            ServiceUnavailable: PostgreSQL did not answer.
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
        """The store of ``application_name``'s process managers, once its tables are found ready.

        Raises:
            SchemaNotReady: the store's or the sagas' tables are not up to date
                (``cqrskit db init`` with ``CQRSKIT_SAGAS`` set creates them).
            ServiceUnavailable: PostgreSQL did not answer.
        """
        self.require_schema(application_name, ("store", "sagas"))
        return PostgresSagaStore(self.settings, application_name)

    # -- teardown --------------------------------------------------------------------

    def teardown_plan(self, application_name: str, projections: Sequence[str]) -> TeardownPlan:
        """Everything :meth:`teardown` would remove of the application; reads only.

        Its schema (or its tables, in a schema it shares), its topics and
        consumer groups, and the read models of ``projections`` (names).

        Raises:
            ServiceUnavailable: a service did not answer.
        """
        tables, kept = pg_teardown.removals(self.settings, application_name)
        topics = kafka_teardown.removals(self.settings, application_name)
        indices = es_teardown.removals(self.settings, projections)
        return TeardownPlan(
            application_name, tuple(projections), (*tables, *topics, *indices), tuple(kept)
        )

    def teardown(self, plan: TeardownPlan) -> None:
        """Remove what ``plan`` lists, nothing else; idempotent.

        Raises:
            ServiceUnavailable: a service did not answer (what was removed stays removed;
                run it again).
            PermanentError: a service refused.
        """
        es_teardown.remove(self.settings, plan.projections, plan.of("Elasticsearch"))
        kafka_teardown.remove(self.settings, plan.of("Kafka"))
        pg_teardown.remove(self.settings, plan.application, plan.of("PostgreSQL"))
