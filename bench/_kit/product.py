"""Every product name the benchmarks use beyond ``cqrskit``'s top-level exports.

The scripts and the rest of ``_kit`` import the product's modules only from
here (and ``cqrskit`` itself), so that when the product moves a name (a
driver into ``cqrskit.adapters``, a name into ``cqrskit.topology``) one file
is re-pointed. The instrumented runs also wrap two names the product does
not export, both module-level names bound by ``from ... import`` in the
module that uses them: :func:`relay_module` and :func:`consumer_module`.
"""

from __future__ import annotations

import sys
from types import ModuleType

from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.kafka import _group
from cqrskit.envelope import Seal
from cqrskit.eventstore import PostgresEventRecorder, read_envelopes, store_head
from cqrskit.observability import STAGES, quantile
from cqrskit.projections import (
    METADATA_FIELD,
    Applier,
    DocState,
    ElasticsearchReadModel,
    projection_status,
    read_model_for,
    rebuild,
)
from cqrskit.queries import Page, Query, QueryBus, QueryHandlers, Search
from cqrskit.relay import KafkaPublisher, OutboxRelay, PostgresOutbox, read_status
from cqrskit.topology import IndexNames, Topology

__all__ = [
    "METADATA_FIELD",
    "STAGES",
    "Applier",
    "DocState",
    "ElasticsearchReadModel",
    "IndexNames",
    "KafkaPublisher",
    "Page",
    "PostgresEventRecorder",
    "PostgresOutbox",
    "Query",
    "QueryBus",
    "QueryHandlers",
    "Seal",
    "Search",
    "Topology",
    "consumer_module",
    "es_backend",
    "kafka_backend",
    "pg_backend",
    "projection_status",
    "quantile",
    "read_envelopes",
    "read_model_for",
    "read_status",
    "rebuild",
    "relay_module",
    "store_head",
]


def relay_module() -> ModuleType:
    """The module defining ``OutboxRelay``: its ``encode`` is the relay's envelope encoder."""
    return sys.modules[OutboxRelay.__module__]


def consumer_module() -> ModuleType:
    """The module whose ``Consumer`` builds the consumer of a worker's group membership."""
    return _group
