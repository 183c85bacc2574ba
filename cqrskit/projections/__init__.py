"""Projections: Elasticsearch read models built from the event stream.

A projection is a view model, a document-id rule and handlers per event
type (see :class:`Projection`); a :class:`ProjectionWorker` keeps it up to
date from Kafka, effectively once.
"""

from cqrskit.projections._mapping import EsType, Keyword, Text
from cqrskit.projections._memory import MemoryReadModel, fold
from cqrskit.projections._ports import DeadLetter
from cqrskit.projections._projection import (
    DELETE,
    UNCHANGED,
    IndexSettings,
    Outcome,
    Projection,
    handles,
)
from cqrskit.projections._rebuild import (
    Progress,
    RebuildPlan,
    RebuildResult,
    rebuild,
    rebuild_plan,
)
from cqrskit.projections._rollback import prune, prune_plan, rollback, rollback_plan
from cqrskit.projections._status import (
    ProjectionStatus,
    StageLatency,
    projection_status,
    stage_latencies,
)
from cqrskit.projections._verify import Drift, VerifyReport, verify
from cqrskit.projections._worker import (
    ProjectionWorker,
    ReplayResult,
    replay_dead_letters,
)

__all__ = [
    "DELETE",
    "UNCHANGED",
    "DeadLetter",
    "Drift",
    "EsType",
    "IndexSettings",
    "Keyword",
    "MemoryReadModel",
    "Outcome",
    "Progress",
    "Projection",
    "ProjectionStatus",
    "ProjectionWorker",
    "RebuildPlan",
    "RebuildResult",
    "ReplayResult",
    "StageLatency",
    "Text",
    "VerifyReport",
    "fold",
    "handles",
    "projection_status",
    "prune",
    "prune_plan",
    "rebuild",
    "rebuild_plan",
    "replay_dead_letters",
    "rollback",
    "rollback_plan",
    "stage_latencies",
    "verify",
]
