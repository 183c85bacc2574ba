"""The query side: typed queries answered from the read models.

Nothing here imports the command side or the event store: queries read
the read models' aliases and the workers' checkpoints, nothing else.
"""

from cqrskit.queries._freshness import (
    FILL_WRITER,
    WORKER_WRITER,
    Coverage,
    applied_position,
    coverage,
    serving_index,
    wait_for_position,
)
from cqrskit.queries._ports import CheckpointReader, Hits, ViewReader
from cqrskit.queries._queries import Query, QueryBus, QueryHandlers, Stale
from cqrskit.queries._search import Page, Search

__all__ = [
    "FILL_WRITER",
    "WORKER_WRITER",
    "CheckpointReader",
    "Coverage",
    "Hits",
    "Page",
    "Query",
    "QueryBus",
    "QueryHandlers",
    "Search",
    "Stale",
    "ViewReader",
    "applied_position",
    "coverage",
    "serving_index",
    "wait_for_position",
]
