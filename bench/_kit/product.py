"""Every product name the benchmarks use beyond ``cqrskit``'s top-level exports.

The scripts and the rest of ``_kit`` import the product's modules only from
here (and ``cqrskit`` itself), so that when the product moves a name (a
driver into ``cqrskit.adapters``, a name into ``cqrskit.topology``) one file
is re-pointed. The instrumented runs also wrap two names the product does
not export, both module-level names bound by ``from ... import`` in the
module that uses them: :func:`relay_module` and :func:`consumer_module`;
and the raw query baseline excludes deleted documents with the product's
own clause (``NOT_DELETED``, what every search excludes), not a copy.
"""

from __future__ import annotations

import sys
from types import ModuleType

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.elasticsearch.checkpoints import ElasticsearchCheckpointReader
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.adapters.elasticsearch.search import DELETED, ElasticsearchSearch
from cqrskit.adapters.kafka import _group
from cqrskit.adapters.kafka.publisher import KafkaPublisher
from cqrskit.adapters.postgres.event_store import PostgresEventRecorder, PostgresEventStoreFactory
from cqrskit.adapters.postgres.outbox import PostgresOutbox, read_status
from cqrskit.adapters.postgres.reader import read_envelopes, store_head
from cqrskit.envelope import Seal
from cqrskit.observability import STAGES, quantile
from cqrskit.projections._applier import Applier
from cqrskit.projections._mapping import METADATA_FIELD
from cqrskit.projections._ports import DocState
from cqrskit.queries import Limits, Page, Query, QueryBus, QueryHandlers, QueryPorts, Read, Search
from cqrskit.relay import OutboxRelay
from cqrskit.runtime import Runtime
from cqrskit.topology import IndexNames, Topology

#: The clause every search excludes deleted documents with, as the request body holds it.
NOT_DELETED = DELETED.to_dict()

__all__ = [
    "METADATA_FIELD",
    "NOT_DELETED",
    "STAGES",
    "Applier",
    "DocState",
    "ElasticsearchCheckpointReader",
    "ElasticsearchReadModel",
    "ElasticsearchSearch",
    "IndexNames",
    "KafkaPublisher",
    "Limits",
    "Page",
    "PostgresEventRecorder",
    "PostgresEventStoreFactory",
    "PostgresOutbox",
    "Query",
    "QueryBus",
    "QueryHandlers",
    "QueryPorts",
    "Read",
    "Runtime",
    "Seal",
    "Search",
    "Topology",
    "consumer_module",
    "es_backend",
    "kafka_backend",
    "pg_backend",
    "quantile",
    "read_envelopes",
    "read_model_for",
    "read_status",
    "relay_module",
    "store_head",
]


def relay_module() -> ModuleType:
    """The module defining ``OutboxRelay``: its ``encode`` is the relay's envelope encoder."""
    return sys.modules[OutboxRelay.__module__]


def consumer_module() -> ModuleType:
    """The module whose ``Consumer`` builds the consumer of a worker's group membership."""
    return _group
