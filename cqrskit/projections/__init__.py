"""Projections: Elasticsearch read models built from the event stream.

A projection is a view model, a document-id rule and handlers per event
type (see :class:`Projection`); a :class:`ProjectionWorker` keeps it up to
date from Kafka, effectively once.
"""

from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.adapters.kafka.dead_letters import KafkaDeadLetters as DeadLetterTopic
from cqrskit.checkpoints import Checkpoint
from cqrskit.projections._applier import Applier, Failure
from cqrskit.projections._mapping import METADATA_FIELD, EsType, Keyword, Text, mapping_for
from cqrskit.projections._memory import MemoryReadModel, fold
from cqrskit.projections._ports import DeadLetter, DocState, DocumentStore, Written
from cqrskit.projections._projection import DELETE, UNCHANGED, Handler, Outcome, Projection, handles
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
    topics_for,
)

__all__ = [
    "DELETE",
    "METADATA_FIELD",
    "UNCHANGED",
    "Applier",
    "Checkpoint",
    "DeadLetter",
    "DeadLetterTopic",
    "DocState",
    "DocumentStore",
    "Drift",
    "ElasticsearchReadModel",
    "EsType",
    "Failure",
    "Handler",
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
    "Written",
    "fold",
    "handles",
    "mapping_for",
    "projection_status",
    "prune",
    "prune_plan",
    "read_model_for",
    "rebuild",
    "rebuild_plan",
    "replay_dead_letters",
    "rollback",
    "rollback_plan",
    "stage_latencies",
    "topics_for",
    "verify",
]
