"""A read model in Elasticsearch: versioned indices behind an alias, guarded writes.

Each document carries, under :data:`METADATA_FIELD`, the last version it
applied from every source aggregate, the position of the last event it
applied, events that were dead-lettered, and a deletion flag (a deleted
document stays as a tombstone so that a re-delivered old event cannot bring
it back). Writes are conditional on the ``_seq_no``/``_primary_term`` the
document was read with, so two workers never overwrite each other: a
conflicting document is read again and its events folded again.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from elastic_transport import SerializationError, TransportError
from elasticsearch import ApiError, Elasticsearch
from pydantic import BaseModel

from cqrskit.adapters.elasticsearch._client import client
from cqrskit.adapters.elasticsearch._errors import unavailable
from cqrskit.adapters.elasticsearch.checkpoints import (
    CHECKPOINT_MAPPING,
    CHECKPOINT_PROPERTIES,
    ElasticsearchCheckpointStore,
)
from cqrskit.checkpoints import Checkpoint
from cqrskit.errors import PermanentError, ServiceUnavailable
from cqrskit.observability import _metrics as metrics
from cqrskit.projections._mapping import METADATA_FIELD, unmapped_fields
from cqrskit.projections._ports import DocState, Written
from cqrskit.projections._projection import IndexSettings, Projection
from cqrskit.settings import Settings
from cqrskit.topology import IndexNames, version_number

__all__ = ["ElasticsearchReadModel", "read_model_for"]


#: Bulk item errors that say a document does not fit the index's mapping.
_MAPPING_ERRORS = frozenset(
    {
        "strict_dynamic_mapping_exception",
        "document_parsing_exception",
        "mapper_parsing_exception",
    }
)


class ElasticsearchReadModel:
    """The Elasticsearch side of one projection.

    Every method raises :class:`ServiceUnavailable` when the cluster cannot
    be reached or answers 429/5xx (retrying can help), and
    :class:`PermanentError` for what retrying cannot fix.
    """

    #: The largest bulk request body :meth:`write` sends: Elasticsearch
    #: refuses requests over ``http.max_content_length`` (100 MB by default)
    #: and handles bulks of a few MB to a few tens of MB best. A rebuild's
    #: batches of 20,000 documents of a few hundred bytes fit in one.
    max_bulk_bytes = 10 * 1024 * 1024

    def __init__(
        self,
        es: Elasticsearch,
        settings: Settings,
        name: str,
        view: type[BaseModel],
        mapping: dict[str, Any],
    ):
        self.es = es
        #: The client that answers 404 instead of raising (``options()`` builds a client per call).
        self._lenient = es.options(ignore_status=404)
        self.settings = settings
        self.name = name
        self.view = view
        self.mapping = mapping
        names = IndexNames.of(settings)
        self._names = names
        self.alias = names.alias(name)
        self.checkpoints_index = names.checkpoints_index
        self.checkpoint_store = ElasticsearchCheckpointStore(
            es, settings.elasticsearch_address(), self.checkpoints_index, name
        )
        #: Shards, replicas and refresh of the view's indices (the projection's).
        self.index_settings = IndexSettings()
        #: (index, id, sequence number) of the last document written: the
        #: worker samples how long it takes to become searchable.
        self.last_written: tuple[str, str, int] | None = None

    # -- indices ---------------------------------------------------------------

    def ensure(self) -> None:
        """Create version 1 of the index behind the alias, and the checkpoints index."""
        with self._translated("create indices"):
            if not self.es.indices.exists_alias(name=self.alias):
                self.create_index(self._names.index(self.name, 1), alias=True)
            if not self.es.indices.exists(index=self.checkpoints_index):
                self._create(self.checkpoints_index, CHECKPOINT_MAPPING, None)
            else:  # an index from an older version gains the new fields
                self.es.indices.put_mapping(
                    index=self.checkpoints_index, properties=CHECKPOINT_PROPERTIES
                )

    def create_index(self, index: str, *, alias: bool, loading: bool = False) -> None:
        """Create ``index`` with the view's mapping and the projection's index settings.

        Optionally as the alias's target; ``loading`` (a rebuild's index):
        no replica and no refresh until :meth:`serve_settings`.
        """
        settings = self.index_settings.index_body(loading=loading)
        self._create(index, self.mapping, self.alias if alias else None, settings)

    def serve_settings(self, index: str) -> None:
        """Give ``index`` the projection's replicas and refresh interval, then refresh it."""
        body = self.index_settings.index_body()
        del body["number_of_shards"]
        with self._translated("restore the index settings"):
            self.es.indices.put_settings(index=index, settings={"index": body})
            self.es.indices.refresh(index=index)

    def _create(
        self,
        index: str,
        mapping: dict[str, Any],
        alias: str | None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        body: dict[str, Any] = {
            "settings": settings or {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": mapping,
        }
        if alias:
            body["aliases"] = {alias: {"is_write_index": True}}
        try:
            self.es.indices.create(index=index, **body)
        except ApiError as exc:
            if exc.meta.status == 400 and "resource_already_exists" in str(exc):
                return  # another worker created it first
            raise

    def versions(self) -> list[str]:
        """The physical indices of this read model, oldest first."""
        with self._translated("list indices"):
            found = self.es.indices.get(
                index=self._names.index_pattern(self.name), allow_no_indices=True
            )
        return sorted(found, key=version_number)

    def next_version(self) -> str:
        """The name the next version of the index gets (``<alias>-v<n+1>``)."""
        latest = max(map(version_number, self.versions()), default=0)
        return self._names.index(self.name, latest + 1)

    def serving(self) -> str | None:
        """The index the alias points at (None before the first build)."""
        with self._translated("read the alias"):
            found = self._lenient.indices.get_alias(name=self.alias)
        if found.meta.status == 404:
            return None
        return next(iter(found.body), None)

    def swap(self, to_index: str) -> str | None:
        """Point the alias at ``to_index`` in one atomic step; return the previous index."""
        previous = self.serving()
        actions: list[dict[str, Any]] = [
            {"add": {"index": to_index, "alias": self.alias, "is_write_index": True}}
        ]
        if previous is not None and previous != to_index:
            actions.insert(0, {"remove": {"index": previous, "alias": self.alias}})
        with self._translated("swap the alias"):
            self.es.indices.update_aliases(actions=actions)
        return previous

    def delete_index(self, index: str) -> None:
        """Delete one physical index (never the one behind the alias)."""
        if index == self.serving():
            raise PermanentError(f"{index} is behind the alias {self.alias}; it cannot be deleted")
        with self._translated("delete an index"):
            self._lenient.indices.delete(index=index)

    def refresh(self, index: str | None = None) -> None:
        """Make every write acknowledged so far visible to searches and scans."""
        with self._translated("refresh"):
            self.es.indices.refresh(index=index or self.alias)

    def scan(self, index: str | None = None) -> Iterator[DocState]:
        """Every document (tombstones too), with a point in time and search_after."""
        target = index or self.alias
        with self._translated("scan documents"):
            pit = self.es.open_point_in_time(index=target, keep_alive="2m")["id"]
            try:
                after: list[Any] | None = None
                while True:
                    hits = self.es.search(
                        pit={"id": pit, "keep_alive": "2m"},
                        size=2000,
                        sort=["_shard_doc"],
                        search_after=after,
                        seq_no_primary_term=True,
                    )["hits"]["hits"]
                    if not hits:
                        return
                    for hit in hits:
                        yield self._state(
                            hit["_id"], hit["_source"], hit.get("_seq_no"), hit.get("_primary_term")
                        )
                    after = hits[-1]["sort"]
            finally:
                self.es.close_point_in_time(id=pit)

    # -- documents -------------------------------------------------------------

    def load(self, ids: Iterable[str], index: str | None = None) -> dict[str, DocState]:
        """Current state of the documents (empty states for missing ones)."""
        wanted = sorted(set(ids))
        states = {doc_id: DocState(doc_id) for doc_id in wanted}
        if not wanted:
            return states
        with self._translated("read documents"):
            found = self.es.mget(index=index or self.alias, ids=wanted)
        for doc in found["docs"]:
            if doc.get("found"):
                states[doc["_id"]] = self._state(
                    doc["_id"], doc["_source"], doc["_seq_no"], doc["_primary_term"]
                )
        return states

    def _state(
        self, doc_id: str, source: dict[str, Any], seq_no: int | None, primary_term: int | None
    ) -> DocState:
        return DocState.of_stored(doc_id, source, self.view, (seq_no, primary_term))

    def write(self, docs: Sequence[DocState], index: str | None = None) -> Written:
        """Write changed documents, each guarded by what it was read as.

        Returns the ids that another writer changed in between (to be read
        and folded again), and the documents Elasticsearch refused with a
        4xx (a field the mapping does not allow, a value it cannot parse),
        with its reason; the other documents are written. Many documents go
        in several bulk requests of at most :attr:`max_bulk_bytes` each; a
        failure part way leaves the documents written so far written, which
        the guards make harmless.

        Raises:
            ServiceUnavailable: unreachable, or a document answered 429/5xx.
        """
        written = Written()
        for body in self._bulk_bodies(docs, index or self.alias):
            self._bulk(body, written)
        return written

    def _bulk_bodies(self, docs: Sequence[DocState], target: str) -> Iterator[bytes]:
        """NDJSON bulk bodies of at most ``max_bulk_bytes`` (a larger document goes alone)."""
        dumps = self.es.transport.serializers.get_serializer("application/json").dumps
        body = bytearray()
        for doc in docs:
            if doc.seq_no is None:
                action: dict[str, Any] = {"create": {"_index": target, "_id": doc.doc_id}}
            else:
                action = {
                    "index": {
                        "_index": target,
                        "_id": doc.doc_id,
                        "if_seq_no": doc.seq_no,
                        "if_primary_term": doc.primary_term,
                    }
                }
            try:
                lines = b"%b\n%b\n" % (dumps(action), dumps(doc.body()))
            except SerializationError as exc:
                raise PermanentError(
                    f"document {doc.doc_id!r} of {self.name!r} is not JSON: {exc}"
                ) from exc
            if body and len(body) + len(lines) > self.max_bulk_bytes:
                yield bytes(body)
                body = bytearray()
            body += lines
        if body:
            yield bytes(body)

    def _bulk(self, body: bytes, written: Written) -> None:
        """Send one bulk body; add its conflicts and refusals to ``written``."""
        operations: Any = [body]  # the client sends encoded NDJSON as it is
        with self._translated("write documents"):
            response = self.es.bulk(operations=operations)
        for item in response["items"]:
            result = next(iter(item.values()))
            status = result.get("status", 200)
            if status < 300:
                self.last_written = (result["_index"], result["_id"], result["_seq_no"])
            elif status == 409:
                written.conflicts.add(result["_id"])
            else:
                error = result.get("error", {})
                if status == 429 or status >= 500:
                    raise self._unavailable(f"writing {result.get('_id')!r}: {error}")
                written.refused[result["_id"]] = self._refusal(result["_id"], error)

    def _refusal(self, doc_id: str, error: dict[str, Any]) -> str:
        kind = str(error.get("type"))
        reason = f"Elasticsearch refused document {doc_id!r} of {self.name!r}: {kind}: "
        reason += str(error.get("reason"))
        if kind in _MAPPING_ERRORS:
            reason += (
                "; the index's mapping does not fit the view: fix the view, or run "
                f"'cqrskit projections rebuild {self.name}' to index it with its current "
                f"mapping, then 'cqrskit projections dlq replay {self.name}'"
            )
        return reason

    def count(self) -> int:
        """Live documents behind the alias (tombstones not counted); 0 if there is no index."""
        with self._translated("count documents"):
            if not self.es.indices.exists_alias(name=self.alias):
                return 0
            query = {"bool": {"must_not": {"term": {f"{METADATA_FIELD}.deleted": True}}}}
            return int(self.es.count(index=self.alias, query=query)["count"])

    # -- checkpoints -----------------------------------------------------------

    def save_checkpoints(self, checkpoints: Iterable[Checkpoint]) -> None:
        """Record how far each partition was applied (after its effects are durable)."""
        self.checkpoint_store.save(checkpoints)

    def checkpoints(self, index: str | None = None) -> list[Checkpoint]:
        """The recorded checkpoints of this projection for ``index`` (default: all indices).

        Checkpoints from before they belonged to an index are left out.
        """
        return self.checkpoint_store.read(index)

    def stored_checkpoints(self, ids: Iterable[str]) -> list[Checkpoint]:
        """The checkpoint documents with these ids that exist, read in real time."""
        return self.checkpoint_store.read_ids(ids)

    def unmapped_fields(self) -> list[str]:
        """The view's fields that the serving index's mapping lacks ([] if none serves)."""
        serving = self.serving()
        if serving is None:
            return []
        with self._translated("read the mapping"):
            found = self.es.indices.get_mapping(index=serving)
        have = found.body.get(serving, {}).get("mappings", {})
        return unmapped_fields(self.mapping, have)

    # -- errors ------------------------------------------------------------------

    @contextmanager
    def _translated(self, doing: str) -> Iterator[None]:
        """Driver errors become cqrskit's, named by what we were doing."""
        what = f"{doing} of read model {self.name!r}"
        started = time.perf_counter()
        try:
            yield
            metrics.projection_es_seconds.labels(self.name, doing).observe(
                time.perf_counter() - started
            )
        except TransportError as exc:
            raise self._unavailable(f"{what}: {exc}") from exc
        except ApiError as exc:
            if exc.meta.status == 429 or exc.meta.status >= 500:
                raise self._unavailable(f"{what}: {exc}") from exc
            raise PermanentError(f"cannot {what}: {exc}") from exc

    def _unavailable(self, reason: str) -> ServiceUnavailable:
        return unavailable(self.settings.elasticsearch_address(), reason)


def read_model_for(
    settings: Settings, projection: Projection[Any], es: Elasticsearch | None = None
) -> ElasticsearchReadModel:
    """The Elasticsearch read model of ``projection`` (a client of its own unless ``es``)."""
    model = ElasticsearchReadModel(
        es or client(settings).options(request_timeout=max(30.0, settings.connect_timeout)),
        settings,
        projection.name,
        projection.view,
        projection.mapping(),
    )
    model.index_settings = projection.index_settings
    return model
