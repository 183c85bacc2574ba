"""The WorkerStats port's contract: stage samples per worker, and when a write is searchable.

Runs in memory and on the real Elasticsearch (fresh indices per test).
Elasticsearch makes writes searchable on its refresh, so reads there wait
for their condition with a time-out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from cqrskit.adapters.elasticsearch.worker_stats import ElasticsearchWorkerStats
from cqrskit.adapters.memory.search import MemorySearch
from cqrskit.adapters.memory.worker_stats import MemoryWorkerStats
from cqrskit.projections._ports import WorkerStats


@dataclass
class Stats:
    """A WorkerStats under test, the index its documents are in, and a way to write one."""

    stats: WorkerStats
    index: str
    #: Writes a document, searchable at once; returns its sequence number.
    put: Callable[[str], int]


@pytest.fixture(params=["memory", pytest.param("elasticsearch", marks=pytest.mark.integration)])
def harness(request: pytest.FixtureRequest) -> Stats:
    if request.param == "memory":
        search = MemorySearch({"docs": {}})

        def put_in_memory(doc_id: str) -> int:
            search.indices["docs"][doc_id] = {"name": doc_id}
            return 0

        return Stats(MemoryWorkerStats(search), "docs", put_in_memory)
    es, prefix = request.getfixturevalue("es"), request.getfixturevalue("es_prefix")

    def put_in_es(doc_id: str) -> int:
        written = es.index(index=f"{prefix}docs", id=doc_id, document={"name": doc_id})
        es.indices.refresh(index=f"{prefix}docs")
        return int(written["_seq_no"])

    es.indices.create(index=f"{prefix}docs")
    return Stats(ElasticsearchWorkerStats(es, f"{prefix}stats"), f"{prefix}docs", put_in_es)


def _body(samples: dict[str, list[float]]) -> dict[str, Any]:
    return {"updated_at": datetime.now(UTC).isoformat(), "samples": samples}


def _eventually(read: Callable[[], Any], expected: Any, patience: float = 30.0) -> Any:
    deadline = time.monotonic() + patience
    found = read()
    while found != expected and time.monotonic() < deadline:
        time.sleep(0.1)  # the stats index becomes searchable on its refresh
        found = read()
    return found


def _by_stage(found: list[dict[str, list[float]]]) -> list[dict[str, list[float]]]:
    return sorted(found, key=lambda samples: sorted(samples.items()))


def test_each_instance_keeps_its_latest_samples_per_projection(harness: Stats) -> None:
    harness.stats.write_samples("orders", "a", _body({"publish_to_applied": [0.5]}))
    harness.stats.write_samples("orders", "b", _body({"publish_to_applied": [0.1]}))
    harness.stats.write_samples("stock", "a", _body({"publish_to_applied": [9.0]}))
    harness.stats.write_samples("orders", "a", _body({"publish_to_applied": [0.2, 0.3]}))
    expected = [{"publish_to_applied": [0.1]}, {"publish_to_applied": [0.2, 0.3]}]
    found = _eventually(lambda: _by_stage(harness.stats.read_samples("orders", 600)), expected)
    assert found == expected


def test_nothing_written_reads_as_no_samples(harness: Stats) -> None:
    assert harness.stats.read_samples("orders", 600) == []


def test_a_written_document_is_searchable_and_a_missing_one_is_not(harness: Stats) -> None:
    seq_no = harness.put("d1")
    assert harness.stats.searchable(harness.index, "d1", seq_no) is True
    assert harness.stats.searchable(harness.index, "nobody", 0) is False
    assert harness.stats.searchable(f"{harness.index}-missing", "d1", 0) is None
