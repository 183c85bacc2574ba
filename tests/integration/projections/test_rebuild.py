"""Rebuild, rollback and verify on the real stack, with traffic on both sides."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import ApiError, Elasticsearch

from cqrskit import ServiceUnavailable, Settings
from cqrskit.backends import kafka as kafka_backend
from cqrskit.projections import (
    ElasticsearchReadModel,
    read_model_for,
    rebuild,
    rollback,
    verify,
)
from projections import CustomerOrdersProjection
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline
from tests.integration.projections.test_worker import assert_equal_to_fold, bulk_orders
from tests.integration.relay.conftest import CommandStream, wait_until

PROJECTION = CustomerOrdersProjection()


class QueryLoop:
    """Queries the alias without pause; remembers errors and the smallest answer."""

    def __init__(self, es: Elasticsearch, alias: str):
        self.es = es
        self.alias = alias
        self.errors: list[BaseException] = []
        self.smallest: int | None = None
        self.queries = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                total = self.es.count(index=self.alias)["count"]
                hits = self.es.search(
                    index=self.alias,
                    size=5,
                    sort=[{"orders_placed": "desc"}],
                    track_total_hits=True,
                )["hits"]
                assert hits["total"]["value"] >= 1
                self.smallest = total if self.smallest is None else min(self.smallest, total)
                self.queries += 1
            except Exception as exc:  # every failure is a finding
                self.errors.append(exc)

    def __enter__(self) -> QueryLoop:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)


def run_cli(pipeline: Pipeline, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", "projections", *args],
        env=pipeline.env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def serving(settings: Settings) -> str | None:
    return read_model_for(settings, PROJECTION).serving()


def caught_up_and_verified(pipeline: Pipeline) -> None:
    pipeline.wait_applied(PROJECTION)
    report = verify(pipeline.settings, "shop", PROJECTION)
    assert report.compared > 0
    assert report.ok, f"drift after the rebuild: {report.drift[:5]}"


def messages_before(settings: Settings, ends: dict[str, int]) -> int:
    """Messages a consumer receives before ``ends`` ("topic|partition" -> offset).

    Not the offsets themselves: each relay transaction's commit marker takes
    an offset and is never received (decision 0008).
    """
    consumer = Consumer(
        {**kafka_backend.consumer_config(settings), "group.id": f"count-{time.monotonic_ns()}"}
    )
    remaining = {(k.split("|")[0], int(k.split("|")[1])): end for k, end in ends.items() if end}
    received = 0
    try:
        consumer.assign([TopicPartition(t, p, 0) for t, p in remaining])
        deadline = time.monotonic() + 60
        while remaining and time.monotonic() < deadline:
            received += sum(
                1
                for m in consumer.consume(1000, timeout=0.5)
                if m.error() is None and m.offset() < remaining.get((m.topic(), m.partition()), 0)
            )
            for tp in consumer.position([TopicPartition(t, p) for t, p in remaining]):
                if tp.offset >= remaining[(tp.topic, tp.partition)]:
                    del remaining[(tp.topic, tp.partition)]
    finally:
        consumer.close()
    assert not remaining, f"partitions not read to their end: {remaining}"
    return received


def test_queries_never_fail_or_see_a_partial_model_during_a_rebuild(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    bulk_orders(pipeline.settings, 20_000)
    pipeline.start_relay()
    pipeline.start_worker(PROJECTION.name)
    pipeline.wait_applied(PROJECTION)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    before = es.count(index=alias)["count"]
    assert serving(pipeline.settings) == f"{alias}-v1"
    with CommandStream(pipeline.settings) as stream, QueryLoop(es, alias) as queries:
        done = run_cli(pipeline, "rebuild", PROJECTION.name)
        wait_until(lambda: stream.accepted > 50, 60, "commands during the rebuild")
    assert done.returncode == 0, done.stderr
    assert "is in service" in done.stdout
    assert not queries.errors, f"{len(queries.errors)} queries failed: {queries.errors[:3]}"
    assert queries.queries > 20
    assert queries.smallest is not None
    assert queries.smallest >= before, "a query saw a partial model"
    assert serving(pipeline.settings) == f"{alias}-v2"
    caught_up_and_verified(pipeline)


def test_a_rebuild_killed_halfway_leaves_the_old_model_and_a_rerun_completes(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    bulk_orders(pipeline.settings, 60_000)
    pipeline.start_relay()
    pipeline.start_worker(PROJECTION.name)
    pipeline.wait_applied(PROJECTION)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    state_index = f"{pipeline.settings.index_prefix}cqrskit-rebuilds"
    rebuild = subprocess.Popen(
        [sys.executable, "-m", "cqrskit.cli", "projections", "rebuild", PROJECTION.name],
        env=pipeline.env(),
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def halfway() -> bool:
        try:
            found = es.options(ignore_status=404).get(index=state_index, id=PROJECTION.name)
        except ApiError:
            return False  # the rebuild is creating its state index right now
        source = found.get("_source") or {}
        return source.get("phase") == "replaying" and 0 < source.get("replayed", 0) < source["head"]

    try:
        wait_until(halfway, 120, "the rebuild to be halfway through the replay")
    finally:
        rebuild.send_signal(signal.SIGKILL)
        rebuild.wait(timeout=30)
    assert serving(pipeline.settings) == f"{alias}-v1"
    assert es.count(index=alias)["count"] == 50  # the old model, whole

    again = run_cli(pipeline, "rebuild", PROJECTION.name)
    assert again.returncode == 0, again.stderr
    assert "(resumed)" in again.stdout
    assert serving(pipeline.settings) == f"{alias}-v2"
    caught_up_and_verified(pipeline)


def test_rollback_restores_the_previous_index_caught_up(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    bulk_orders(pipeline.settings, 3_000)
    pipeline.start_relay()
    pipeline.start_worker(PROJECTION.name)
    pipeline.wait_applied(PROJECTION)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    assert run_cli(pipeline, "rebuild", PROJECTION.name).returncode == 0
    assert serving(pipeline.settings) == f"{alias}-v2"
    bulk_orders(pipeline.settings, 1_000)  # applied to v2 only, by the live worker
    pipeline.wait_applied(PROJECTION)
    rolled = run_cli(pipeline, "rollback", PROJECTION.name)
    assert rolled.returncode == 0, rolled.stderr
    assert serving(pipeline.settings) == f"{alias}-v1"
    caught_up_and_verified(pipeline)  # v1 caught up with what only v2 had seen
    totals = pipeline.actual(es, PROJECTION)
    assert sum(d["orders_placed"] for d in totals.values()) == 4_000
    pruned = run_cli(pipeline, "prune", PROJECTION.name)
    assert f"{alias}-v2" in pruned.stdout
    assert read_model_for(pipeline.settings, PROJECTION).versions() == [f"{alias}-v1"]


def test_verify_reports_drift_and_exits_non_zero(pipeline: Pipeline, es: Elasticsearch) -> None:
    bulk_orders(pipeline.settings, 500, customers=5)
    pipeline.start_relay()
    pipeline.start_worker(PROJECTION.name)
    pipeline.wait_applied(PROJECTION)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    assert run_cli(pipeline, "verify", PROJECTION.name).returncode == 0
    # Tamper with the live model behind the projection's back.
    es.update(index=alias, id="c-1", doc={"orders_placed": 999}, refresh=True)
    es.delete(index=alias, id="c-2", refresh=True)
    done = run_cli(pipeline, "verify", PROJECTION.name, "--json")
    assert done.returncode == 1
    report = json.loads(done.stdout)
    kinds = {d["doc_id"]: (d["kind"], d["fields"]) for d in report["drift"]}
    assert kinds == {"c-1": ("different", ["orders_placed"]), "c-2": ("missing", [])}


def test_a_rebuild_reads_each_message_once_when_the_live_group_never_committed(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    """Regression: the catch-up after the swap started again from the offsets
    noted at the start, so a never-committed group read the whole topic twice."""
    settings = pipeline.settings.model_copy(update={"rebuild_batch_size": 700})
    bulk_orders(settings, 3_000)
    pipeline.start_relay()
    head = pipeline.wait_relayed()
    arrived: list[int] = []

    def more_orders_during_the_replay(phase: str, _done: int, _total: int) -> None:
        if phase.startswith("replaying") and not arrived:
            # Events past the head the rebuild noted: only Kafka has them for it.
            bulk_orders(settings, 1_000)
            arrived.append(pipeline.wait_relayed())
            pipeline.stop()  # nothing more reaches the topic

    result = rebuild(settings, "shop", PROJECTION, progress=more_orders_during_the_replay)
    assert arrived
    assert arrived[0] > head
    assert result.replayed == head
    state = es.get(index=f"{settings.index_prefix}cqrskit-rebuilds", id=PROJECTION.name)
    reached = state["_source"]["caught_up_offsets"]
    assert reached == state["_source"]["swap_offsets"]
    in_the_topic = messages_before(settings, reached)  # every message since offset 0
    assert in_the_topic >= 4_000
    assert result.caught_up == in_the_topic, "the catch-ups read some messages twice"
    assert_equal_to_fold(pipeline, es, PROJECTION)  # each event applied once, none missed


def test_a_rebuild_interrupted_at_the_swap_resumes_and_remembers_the_old_index(
    pipeline: Pipeline, es: Elasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = pipeline.settings.model_copy(update={"rebuild_batch_size": 700})
    bulk_orders(settings, 2_000)
    pipeline.start_relay()
    pipeline.start_worker(PROJECTION.name)
    pipeline.wait_applied(PROJECTION)
    alias = f"{settings.index_prefix}{PROJECTION.name}"
    swap = ElasticsearchReadModel.swap

    def swap_then_die(self: ElasticsearchReadModel, to_index: str) -> str | None:
        swap(self, to_index)
        raise ServiceUnavailable("Elasticsearch", "test", "gone after the swap", "-")

    with monkeypatch.context() as patched:
        patched.setattr(ElasticsearchReadModel, "swap", swap_then_die)
        with pytest.raises(ServiceUnavailable):
            rebuild(settings, "shop", PROJECTION)
    assert serving(settings) == f"{alias}-v2"
    bulk_orders(settings, 500)  # the live worker applies these to v2 meanwhile
    result = rebuild(settings, "shop", PROJECTION)
    assert result.resumed
    assert (result.index, result.previous) == (f"{alias}-v2", f"{alias}-v1")
    pipeline.wait_applied(PROJECTION)
    assert_equal_to_fold(pipeline, es, PROJECTION)
    assert rollback(settings, "shop", PROJECTION) == f"{alias}-v1"
