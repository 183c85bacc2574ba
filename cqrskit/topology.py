"""Every name cqrskit gives to what it creates: tables, topics, groups, indices.

One application's names, derived from its settings in one place, so that
the relay that publishes to a topic, the worker that reads it and the query
that reads the worker's index agree by construction::

    PostgreSQL (schema ``postgres_schema``)
        <app>_events                 the stored events, positions gap-free
        <app>_idempotency            outcomes of commands sent with a key
        <app>_snapshots              snapshots, when the application takes them
        cqrskit_migrations           the migrations applied, per application
        cqrskit_relay                each relay's position and lease
        cqrskit_topic_layout         partitions each topic is published over
        cqrskit_topic_moves          repartitions asked for and done
        <app>_saga_<part>            a process manager's instances and progress
    Kafka (prefix ``topic_prefix``, else the application's name in lower case)
        <prefix>.<aggregate type>    one topic per aggregate type (or
                                     <prefix>.events for all, topic_layout)
        <prefix>.projection.<name>   the consumer group of a projection
        <prefix>.<name>.dlq          its dead letters (one partition)
        <prefix>.<name>.dlq.replay   the group that marks letters replayed
        <prefix>.saga.<name>         the consumer group of a process manager
    Elasticsearch (prefix ``index_prefix``)
        <prefix><projection>         the alias queries read
        <prefix><projection>-v<n>    the physical index behind it, one per build
        <prefix>cqrskit-checkpoints  every worker's checkpoints
        <prefix>cqrskit-rebuilds     the progress of rebuilds, to resume them
        <prefix>cqrskit-stats        workers' recent stage latencies

A Kafka partition is named ``<topic>/<partition>`` wherever cqrskit keeps
it (documents' guards, saga positions, rebuild offsets); see
:func:`partition_key`. Decision 0016 says why names live here.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cqrskit.settings import Settings

__all__ = [
    "LAYOUT_TABLE",
    "MIGRATIONS_TABLE",
    "MOVES_TABLE",
    "RELAY_TABLE",
    "IndexNames",
    "Topology",
    "checkpoint_id",
    "parse_partition_key",
    "partition_key",
    "version_number",
]

#: The schema migrations applied, one row per (application, part, number).
MIGRATIONS_TABLE = "cqrskit_migrations"
#: Each relay's position and lease, one row per (application, relay name).
RELAY_TABLE = "cqrskit_relay"
#: The partition count each topic is published over, and since which position.
LAYOUT_TABLE = "cqrskit_topic_layout"
#: Repartitions asked for (by ``cqrskit relay repartition``) and carried out.
MOVES_TABLE = "cqrskit_topic_moves"

_CHECKPOINTS = "cqrskit-checkpoints"
_REBUILDS = "cqrskit-rebuilds"
_STATS = "cqrskit-stats"
_SAGA_PARTS = ("instances", "history", "deadlines", "handled", "positions", "pending")
#: What follows ``<prefix>.`` in the name of a topic cqrskit creates: an aggregate
#: type's (or ``events``), or a projection's dead letters (``<name>.dlq``).
_OWN_TOPIC = re.compile(r"[^.]+(\.dlq)?")
#: ... and in the name of a consumer group it joins.
_OWN_GROUP = re.compile(r"(projection\.[^.]+(\.rebuild)?|saga\.[^.]+|[^.]+\.dlq\.replay)")


def partition_key(topic: str, partition: int | str) -> str:
    """The one name of a Kafka partition: ``<topic>/<partition>``."""
    return f"{topic}/{partition}"


def parse_partition_key(key: str) -> tuple[str, int]:
    """(topic, partition) of a :func:`partition_key`.

    Also reads ``<topic>|<partition>``, the form rebuild progress was kept
    in before this module, so a rebuild interrupted then resumes. Topic
    names cannot hold either character, so the split is unambiguous.
    """
    separator = "/" if "/" in key else "|"
    topic, _, partition = key.rpartition(separator)
    return topic, int(partition)


def checkpoint_id(index: str, topic: str, partition: int, writer: str) -> str:
    """The id of the checkpoint document of one partition, index and writer."""
    return f"{index}|{topic}|{partition}|{writer}"


def version_number(index: str) -> int:
    """The build number ``n`` of a physical index ``<alias>-v<n>`` (0 if none)."""
    number = index.rpartition("-v")[2]
    return int(number) if number.isdigit() else 0


@dataclass(frozen=True)
class IndexNames:
    """The names of the indices and aliases of every read model under one prefix.

    Apart from :class:`Topology` because the query side knows no application:
    it reads views by alias and checkpoints by index, nothing else.
    """

    #: What every index and alias name starts with.
    prefix: str

    @classmethod
    def of(cls, settings: Settings) -> IndexNames:
        """The index names under ``settings.index_prefix``."""
        return cls(settings.index_prefix)

    # -- Elasticsearch ----------------------------------------------------

    def alias(self, projection: str) -> str:
        """The alias queries read a projection's view through."""
        return f"{self.prefix}{projection}"

    def index(self, projection: str, version: int) -> str:
        """The physical index of build ``version`` of a projection."""
        return f"{self.alias(projection)}-v{version}"

    def index_pattern(self, projection: str) -> str:
        """A pattern matching every physical index of a projection."""
        return f"{self.alias(projection)}-v*"

    @property
    def checkpoints_index(self) -> str:
        """Every worker's checkpoints (shared by the projections of a prefix)."""
        return f"{self.prefix}{_CHECKPOINTS}"

    @property
    def rebuilds_index(self) -> str:
        """The progress of rebuilds, so that an interrupted one resumes."""
        return f"{self.prefix}{_REBUILDS}"

    @property
    def stats_index(self) -> str:
        """Workers' recent stage latencies, for ``cqrskit status``."""
        return f"{self.prefix}{_STATS}"


@dataclass(frozen=True)
class Topology:
    """The names of one application's tables, topics, groups and indices.

    Pure and cheap: build it where names are needed with :meth:`of`.
    """

    #: The application's name as its class gives it (``ShopApp.name``).
    application: str
    #: The PostgreSQL schema every table lives in.
    schema: str
    #: What every topic and consumer group name starts with.
    topic_prefix: str
    #: The names of the read models' indices.
    indices: IndexNames
    #: One topic for all the application's events (``<prefix>.events``)
    #: instead of one per aggregate type (``settings.topic_layout``).
    one_topic: bool = False

    @classmethod
    def of(cls, settings: Settings, application_name: str) -> Topology:
        """The topology of ``application_name`` under ``settings``."""
        return cls(
            application=application_name,
            schema=settings.postgres_schema,
            topic_prefix=settings.topic_prefix or application_name.lower(),
            indices=IndexNames(settings.index_prefix),
            one_topic=settings.topic_layout == "per-application",
        )

    # -- PostgreSQL -------------------------------------------------------

    @property
    def events_table(self) -> str:
        """The stored events (and the channel the relay is notified on)."""
        return f"{self.application.lower()}_events"

    @property
    def idempotency_table(self) -> str:
        """Outcomes of commands sent with an idempotency key."""
        return f"{self.application.lower()}_idempotency"

    @property
    def snapshots_table(self) -> str:
        """Snapshots of aggregates, when the application takes them."""
        return f"{self.application.lower()}_snapshots"

    @property
    def own_tables(self) -> list[str]:
        """Every table of this application alone (not those applications share)."""
        return [
            self.events_table,
            self.idempotency_table,
            self.snapshots_table,
            *(self.saga_table(part) for part in _SAGA_PARTS),
        ]

    def saga_table(self, part: str) -> str:
        """One of the tables of process managers (``instances``, ``history``...)."""
        if part not in _SAGA_PARTS:
            raise ValueError(f"no saga table {part!r}; one of {', '.join(_SAGA_PARTS)}")
        return f"{self.application.lower()}_saga_{part}"

    # -- Kafka ------------------------------------------------------------

    def topic(self, aggregate_type: str) -> str:
        """The topic the events of ``aggregate_type`` are published to."""
        if self.one_topic:
            return f"{self.topic_prefix}.events"
        return f"{self.topic_prefix}.{aggregate_type.lower()}"

    def topics(self, aggregate_types: Iterable[str]) -> list[str]:
        """The topics of ``aggregate_types``, sorted, each once."""
        return sorted({self.topic(t) for t in aggregate_types})

    @property
    def topic_start(self) -> str:
        """What every topic and group of the prefix starts with (``<prefix>.``)."""
        return f"{self.topic_prefix}."

    def is_event_topic(self, topic: str) -> bool:
        """True for a topic of this prefix that carries events (not dead letters)."""
        return topic.startswith(self.topic_start) and not topic.endswith(".dlq")

    def owns_topic(self, topic: str) -> bool:
        """True for a topic named as cqrskit names this application's: events, dead letters.

        A topic of a longer prefix (``shop.eu.order`` beside the prefix
        ``shop``) is not this application's.
        """
        rest = topic.removeprefix(self.topic_start)
        return rest != topic and _OWN_TOPIC.fullmatch(rest) is not None

    def owns_group(self, group: str) -> bool:
        """True for a consumer group named as cqrskit names this application's."""
        rest = group.removeprefix(self.topic_start)
        return rest != group and _OWN_GROUP.fullmatch(rest) is not None

    def projection_group(self, projection: str) -> str:
        """The consumer group of a projection's workers."""
        return f"{self.topic_prefix}.projection.{projection}"

    def rebuild_group(self, projection: str) -> str:
        """The group a rebuild reads partitions' end offsets with (it commits nothing)."""
        return f"{self.projection_group(projection)}.rebuild"

    def dead_letter_topic(self, projection: str) -> str:
        """The topic of a projection's dead letters."""
        return f"{self.topic_prefix}.{projection}.dlq"

    def replay_group(self, projection: str) -> str:
        """The group whose committed offset marks which dead letters were replayed."""
        return f"{self.dead_letter_topic(projection)}.replay"

    def saga_group(self, saga: str) -> str:
        """The consumer group of a process manager's runners."""
        return f"{self.topic_prefix}.saga.{saga}"

    def transactional_id(self, relay_name: str) -> str:
        """The one ``transactional.id`` of all relays of an outbox.

        Stable across restarts and hosts, and the same for exactly the
        relays that compete for one advisory lock (schema, application,
        relay name), plus the topic prefix they publish under.
        """
        return f"cqrskit-relay.{self.topic_prefix}.{self.schema}.{self.application}.{relay_name}"
