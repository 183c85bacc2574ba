"""What ``cqrskit teardown`` removes of an application in Elasticsearch.

Each projection's alias and every physical index behind it
(``<alias>-v<n>``), and the projection's documents in the indices the
projections of an index prefix share (checkpoints, rebuilds, stats): the
whole shared index when nothing else is in it, else only those documents,
so that a project created again under the same names starts from nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from elasticsearch import Elasticsearch

from cqrskit.adapters.elasticsearch._client import client
from cqrskit.adapters.elasticsearch._errors import SERVICE, translated
from cqrskit.settings import Settings
from cqrskit.teardown import Removal
from cqrskit.topology import IndexNames

__all__ = ["removals", "remove"]


def removals(settings: Settings, projections: Sequence[str]) -> list[Removal]:
    """The read models of ``projections`` (names) and their shared documents; reads only.

    Raises:
        ServiceUnavailable: the cluster did not answer.
    """
    names = IndexNames.of(settings)
    found: list[Removal] = []
    es = client(settings)
    try:
        with translated(settings.elasticsearch_address(), "listing the read models"):
            for projection in projections:
                alias = names.alias(projection)
                indices = sorted(_get(es, names.index_pattern(projection)))
                aliased = sorted(_aliased(es, alias))
                if aliased:
                    found.append(Removal(SERVICE, "alias", alias, f"on {', '.join(aliased)}"))
                found += [Removal(SERVICE, "index", index) for index in indices]
            for shared in (names.checkpoints_index, names.rebuilds_index, names.stats_index):
                found += _shared(es, shared, projections)
    finally:
        es.close()
    return found


def remove(settings: Settings, projections: Sequence[str], planned: Sequence[Removal]) -> None:
    """Delete the planned aliases, indices and documents; idempotent.

    Raises:
        ServiceUnavailable: the cluster did not answer.
        PermanentError: the cluster refused.
    """
    es = client(settings).options(request_timeout=120)
    lenient = es.options(ignore_status=404)
    try:
        with translated(settings.elasticsearch_address(), "removing the read models"):
            for removal in planned:
                if removal.kind == "alias":
                    lenient.indices.delete_alias(index="_all", name=removal.name)
                elif removal.kind == "index":
                    lenient.indices.delete(index=removal.name)
                elif removal.kind == "documents":
                    lenient.delete_by_query(
                        index=removal.name,
                        query=_of(projections),
                        refresh=True,
                        conflicts="proceed",
                    )
    finally:
        es.close()


def _get(es: Elasticsearch, pattern: str) -> list[str]:
    found = es.indices.get(index=pattern, allow_no_indices=True, expand_wildcards="all")
    return list(found.body)


def _aliased(es: Elasticsearch, alias: str) -> list[str]:
    if not es.indices.exists_alias(name=alias):
        return []
    return list(es.indices.get_alias(name=alias).body)


def _of(projections: Sequence[str]) -> dict[str, Any]:
    return {"terms": {"projection": list(projections)}}


def _shared(es: Elasticsearch, index: str, projections: Sequence[str]) -> list[Removal]:
    """The shared ``index`` whole (nothing else in it), or the projections' documents in it."""
    if not projections or not es.indices.exists(index=index):
        return []
    es.indices.refresh(index=index)
    ours = int(es.count(index=index, query=_of(projections))["count"])
    everything = int(es.count(index=index)["count"])
    if ours == 0:
        return []
    if ours == everything:
        return [Removal(SERVICE, "index", index, f"{ours} documents, all of these projections")]
    return [Removal(SERVICE, "documents", index, f"{ours} of its {everything} documents")]
