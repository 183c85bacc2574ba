"""A projection worker's stats in Elasticsearch: stage samples for ``cqrskit status``.

The :class:`~cqrskit.projections.WorkerStats` port: each worker instance
keeps its recent stage samples in one document of the stats index (beside
the checkpoints), and its telemetry asks here when a document it wrote
became searchable. Best effort both: a failure is logged at debug level and
costs a sample, never a batch.
"""

from __future__ import annotations

import logging
from typing import Any

from elastic_transport import TransportError
from elasticsearch import ApiError, Elasticsearch

from cqrskit.adapters.elasticsearch._errors import translated

__all__ = ["STATS_MAPPING", "ElasticsearchWorkerStats"]

log = logging.getLogger("cqrskit.projections")

STATS_MAPPING: dict[str, Any] = {
    "dynamic": False,
    "properties": {
        "projection": {"type": "keyword"},
        "instance": {"type": "keyword"},
        "updated_at": {"type": "date"},
        "samples": {"type": "object", "enabled": False},
    },
}


class ElasticsearchWorkerStats:
    """Stage samples in ``index``, one document per projection and worker instance."""

    def __init__(self, es: Elasticsearch, index: str, address: str = "the cluster"):
        self.es = es
        #: The client that answers 404 instead of raising (``options()`` builds a client per call).
        self._lenient = es.options(ignore_status=404)
        self.index = index
        self.address = address
        self._ready = False

    def write_samples(self, projection: str, instance: str, body: dict[str, Any]) -> None:
        """Replace this instance's samples; creates the index on first use."""
        try:
            if not self._ready:
                if not self.es.indices.exists(index=self.index):
                    self.es.options(ignore_status=400).indices.create(
                        index=self.index,
                        mappings=STATS_MAPPING,
                        settings={"number_of_shards": 1, "number_of_replicas": 0},
                    )
                self._ready = True
            document = {**body, "projection": projection, "instance": instance}
            self.es.index(index=self.index, id=f"{projection}|{instance}", document=document)
        except (ApiError, TransportError) as exc:
            log.debug("projection %s: stage samples not written: %s", projection, exc)

    def searchable(self, index: str, doc_id: str, seq_no: int) -> bool | None:
        """Whether a search finds ``doc_id`` at ``seq_no`` or later; None if it cannot ask."""
        try:
            found = self.es.search(
                index=index,
                query={"ids": {"values": [doc_id]}},
                seq_no_primary_term=True,
                source=False,
                size=1,
            )
        except (ApiError, TransportError):
            return None
        hits = found["hits"]["hits"]
        return bool(hits) and int(hits[0].get("_seq_no", -1)) >= seq_no

    def read_samples(self, projection: str, max_age_seconds: float) -> list[dict[str, list[float]]]:
        """The samples of each instance of ``projection`` heard from within the age.

        Raises:
            ServiceUnavailable: the cluster cannot answer.
        """
        with translated(self.address, f"reading the stage samples of {projection!r}"):
            found = self._lenient.search(
                index=self.index,
                query={
                    "bool": {
                        "filter": [
                            {"term": {"projection": projection}},
                            {"range": {"updated_at": {"gte": f"now-{int(max_age_seconds)}s"}}},
                        ]
                    }
                },
                size=100,
            )
        return [
            dict(hit["_source"].get("samples", {})) for hit in found.get("hits", {}).get("hits", [])
        ]
