"""The query side: typed queries answered from the read models, blocking or awaited.

Nothing here imports the command side or the event store: queries read
the read models' aliases and the workers' checkpoints, nothing else.
"""

from cqrskit.queries._criteria import (
    METADATA,
    AnyOf,
    Between,
    Criteria,
    FieldValue,
    Filter,
    Order,
    Term,
    TextMatch,
)
from cqrskit.queries._freshness import (
    FILL_WRITER,
    WORKER_WRITER,
    Coverage,
    Reached,
    applied_position,
    coverage,
    covered_position,
    serving_index,
    wait_for_position,
)
from cqrskit.queries._guard import Breaker, BreakerPolicy, Bulkhead, Guard
from cqrskit.queries._ports import (
    AsyncCheckpointReader,
    AsyncViewReader,
    CheckpointReader,
    Hits,
    ViewReader,
)
from cqrskit.queries._queries import (
    Answer,
    AsyncQueryBus,
    AsyncQueryPorts,
    Limits,
    Query,
    QueryBus,
    QueryHandlers,
    QueryPorts,
)
from cqrskit.queries._reads import (
    Aggregate,
    CountDocuments,
    GetDocument,
    ListDocuments,
    Read,
    Request,
    arun,
    run,
)
from cqrskit.queries._search import Page, Search

__all__ = [
    "FILL_WRITER",
    "METADATA",
    "WORKER_WRITER",
    "Aggregate",
    "Answer",
    "AnyOf",
    "AsyncCheckpointReader",
    "AsyncQueryBus",
    "AsyncQueryPorts",
    "AsyncViewReader",
    "Between",
    "Breaker",
    "BreakerPolicy",
    "Bulkhead",
    "CheckpointReader",
    "CountDocuments",
    "Coverage",
    "Criteria",
    "FieldValue",
    "Filter",
    "GetDocument",
    "Guard",
    "Hits",
    "Limits",
    "ListDocuments",
    "Order",
    "Page",
    "Query",
    "QueryBus",
    "QueryHandlers",
    "QueryPorts",
    "Reached",
    "Read",
    "Request",
    "Search",
    "Term",
    "TextMatch",
    "ViewReader",
    "applied_position",
    "arun",
    "coverage",
    "covered_position",
    "run",
    "serving_index",
    "wait_for_position",
]
