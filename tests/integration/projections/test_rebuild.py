"""Rebuild, rollback and verify on the real stack, with traffic on both sides."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, TopicPartition
from elasticsearch import ApiError, Elasticsearch

from cqrskit import CommandBus, ServiceUnavailable, Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.elasticsearch.read_model import ElasticsearchReadModel, read_model_for
from cqrskit.adapters.postgres.reader import PostgresStoredEvents, store_head
from cqrskit.projections import verify
from cqrskit.projections._mapping import METADATA_FIELD
from cqrskit.runtime import Runtime
from cqrskit.topology import parse_partition_key
from examples.shop import PlaceOrder, ShopApp, handlers
from examples.shop.queries import CustomerById, queries
from projections import CustomerOrdersProjection
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline
from tests.integration.projections.test_worker import assert_equal_to_fold, bulk_orders
from tests.integration.relay.conftest import LINE, CommandStream, wait_until

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


def live_model(pipeline: Pipeline, orders: int, customers: int = 50) -> None:
    """Orders in the store, a relay and a live worker, and the worker caught up."""
    bulk_orders(pipeline.settings, orders, customers=customers)
    pipeline.start_relay()
    pipeline.start_worker(PROJECTION.name)
    pipeline.wait_applied(PROJECTION)


def caught_up_and_verified(pipeline: Pipeline) -> None:
    pipeline.wait_applied(PROJECTION)
    report = Runtime(pipeline.settings).verify("shop", PROJECTION)
    assert report.compared > 0
    assert report.ok, f"drift after the rebuild: {report.drift[:5]}"


def messages_before(settings: Settings, ends: dict[str, int]) -> int:
    """Messages a consumer receives before ``ends`` (partition key -> offset).

    Not the offsets themselves: each relay transaction's commit marker takes
    an offset and is never received (decision 0008).
    """
    consumer = Consumer(
        {**kafka_backend.consumer_config(settings), "group.id": f"count-{time.monotonic_ns()}"}
    )
    remaining = {parse_partition_key(k): end for k, end in ends.items() if end}
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
    live_model(pipeline, 20_000)
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
    live_model(pipeline, 60_000)
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
    live_model(pipeline, 3_000)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    assert run_cli(pipeline, "rebuild", PROJECTION.name).returncode == 0
    assert serving(pipeline.settings) == f"{alias}-v2"
    bulk_orders(pipeline.settings, 1_000)  # applied to v2 only, by the live worker
    pipeline.wait_applied(PROJECTION)
    rolled = run_cli(pipeline, "rollback", PROJECTION.name, "--yes")
    assert rolled.returncode == 0, rolled.stderr
    assert serving(pipeline.settings) == f"{alias}-v1"
    caught_up_and_verified(pipeline)  # v1 caught up with what only v2 had seen
    totals = pipeline.actual(es, PROJECTION)
    assert sum(d["orders_placed"] for d in totals.values()) == 4_000
    pruned = run_cli(pipeline, "prune", PROJECTION.name, "--yes")
    assert f"{alias}-v2" in pruned.stdout
    assert read_model_for(pipeline.settings, PROJECTION).versions() == [f"{alias}-v1"]


def test_verify_reports_drift_and_exits_non_zero(pipeline: Pipeline, es: Elasticsearch) -> None:
    live_model(pipeline, 500, customers=5)
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

    result = Runtime(settings).rebuild("shop", PROJECTION, progress=more_orders_during_the_replay)
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
            Runtime(settings).rebuild("shop", PROJECTION)
    assert serving(settings) == f"{alias}-v2"
    bulk_orders(settings, 500)  # the live worker applies these to v2 meanwhile
    result = Runtime(settings).rebuild("shop", PROJECTION)
    assert result.resumed
    assert (result.index, result.previous) == (f"{alias}-v2", f"{alias}-v1")
    pipeline.wait_applied(PROJECTION)
    assert_equal_to_fold(pipeline, es, PROJECTION)
    assert Runtime(settings).rollback("shop", PROJECTION) == f"{alias}-v1"


def test_verify_reports_a_document_that_no_event_produced(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    """Regression (issue 15): a document whose recorded position lay past the
    store's head was passed over, so a forged balance verified with exit 0."""
    live_model(pipeline, 200, customers=5)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    head = store_head(pipeline.settings, "shop")
    forged = {"store": head + 1_000}
    es.index(
        index=alias,
        id="c-forged",
        document={
            "customer_id": "c-forged",
            "orders_placed": 5,
            METADATA_FIELD: {
                "sources": {"applied": forged, "failed": {}},
                "position": head + 1_000,
                "deleted": False,
            },
        },
        refresh=True,
    )
    done = run_cli(pipeline, "verify", PROJECTION.name, "--json")
    assert done.returncode == 1, done.stdout
    report = json.loads(done.stdout)
    assert [(d["doc_id"], d["kind"]) for d in report["drift"]] == [("c-forged", "unexplained")]


def test_verify_checks_documents_the_live_worker_changes_meanwhile_without_false_drift(
    pipeline: Pipeline, es: Elasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    live_model(pipeline, 200, customers=5)
    heads: list[int] = []

    class HeadThenMoreOrders(PostgresStoredEvents):
        def head(self) -> int:
            head = super().head()
            if not heads:
                # Orders past the head verify folds to, applied before it scans.
                bulk_orders(self.settings, 100, customers=5)
                pipeline.wait_applied(PROJECTION)
            heads.append(head)
            return head

    events = HeadThenMoreOrders(pipeline.settings, "shop")
    read_model = Runtime(pipeline.settings).read_model(PROJECTION)
    report = verify(PROJECTION, read_model, events)
    assert report.ok, report.drift
    assert report.newer == 5  # every customer changed after the head, each checked
    assert report.compared == 5
    # The newer documents were compared, not passed over: a forged one is caught.
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    es.update(index=alias, id="c-1", doc={"orders_placed": 999}, refresh=True)
    heads.clear()
    report = verify(PROJECTION, read_model, events)
    assert [(d.doc_id, d.kind, d.fields) for d in report.drift] == [
        ("c-1", "different", ("orders_placed",))
    ]


class SwapWithTraffic:
    """Wraps the alias swap of rebuilds and rollbacks with real traffic around it.

    Before the swap (after the catch-up read its end offsets) it places an
    order and waits until the live worker applied it to the index in
    service, then reads it back with read-your-writes just after the swap.
    After the swap it places another order and waits until the live worker
    wrote it to the new index, before the catch-up after the swap starts.
    """

    def __init__(self, settings: Settings, es: Elasticsearch):
        self.settings = settings
        self.es = es
        self.bus = Runtime(settings).query_bus(queries)
        #: (customer, position, stale, document) read just after each swap.
        self.reads: list[tuple[str, int, bool, object]] = []
        self.placed: dict[str, int] = {}

    def place(self, customer: str) -> int:
        with ShopApp(self.settings) as app:
            result = CommandBus(app, handlers).dispatch(
                PlaceOrder(customer_id=customer, lines=[LINE])
            )
        self.placed[customer] = result.position
        return result.position

    def __call__(self, swap: Callable[..., str | None]) -> Callable[..., str | None]:
        def swap_with_traffic(read_model: ElasticsearchReadModel, to_index: str) -> str | None:
            n = len(self.reads)
            before = self.place(f"c-swap-{n}")
            self.bus.ask(CustomerById(customer_id=f"c-swap-{n}"), min_position=before, wait=60)
            previous = swap(read_model, to_index)
            answer = self.bus.ask(
                CustomerById(customer_id=f"c-swap-{n}"),
                min_position=before,
                wait=0,
                on_stale="flag",
            )
            self.reads.append((f"c-swap-{n}", before, answer.stale, answer.value))
            self.place(f"c-after-{n}")

            def in_new_index() -> bool:
                found = self.es.options(ignore_status=404).get(index=to_index, id=f"c-after-{n}")
                return bool(found.get("found"))

            wait_until(in_new_index, 60, f"the live worker to write c-after-{n} to {to_index}")
            return previous

        return swap_with_traffic

    def assert_fresh_reads_had_their_write(self) -> None:
        assert self.reads, "no swap happened"
        wrong = [(c, p) for c, p, stale, doc in self.reads if not stale and doc is None]
        assert not wrong, f"stale=False but the write missing, just after the swap: {wrong}"

    def assert_every_write_readable(self) -> None:
        for customer, position in self.placed.items():
            answer = self.bus.ask(
                CustomerById(customer_id=customer), min_position=position, wait=60
            )
            assert answer.value is not None, f"{customer} (position {position}) missing"


def test_a_read_just_after_a_rebuild_swap_is_fresh_only_if_the_new_index_has_the_write(
    pipeline: Pipeline, es: Elasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 15): checkpoints were the projection's, not the index's, so
    after the swap they counted writes the live worker made to the old index only."""
    live_model(pipeline, 2_000)
    traffic = SwapWithTraffic(pipeline.settings, es)
    monkeypatch.setattr(ElasticsearchReadModel, "swap", traffic(ElasticsearchReadModel.swap))
    Runtime(pipeline.settings).rebuild("shop", PROJECTION)
    traffic.assert_fresh_reads_had_their_write()
    traffic.assert_every_write_readable()
    caught_up_and_verified(pipeline)


def test_a_rollback_keeps_every_write_and_read_your_writes_through_its_swap(
    pipeline: Pipeline, es: Elasticsearch, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression (issue 15): rollback caught the old index up from the offsets
    noted after the rebuild's swap, missing what the live worker wrote to the
    new index between the swap and that note."""
    live_model(pipeline, 2_000)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    traffic = SwapWithTraffic(pipeline.settings, es)
    monkeypatch.setattr(ElasticsearchReadModel, "swap", traffic(ElasticsearchReadModel.swap))
    Runtime(pipeline.settings).rebuild("shop", PROJECTION)
    assert Runtime(pipeline.settings).rollback("shop", PROJECTION) == f"{alias}-v1"
    assert len(traffic.reads) == 2
    traffic.assert_every_write_readable()  # c-after-0 went to v2 only, before the note
    traffic.assert_fresh_reads_had_their_write()
    caught_up_and_verified(pipeline)


def run_on_terminal(pipeline: Pipeline, answer: str, *args: str) -> tuple[int, str]:
    """Run a projections command with a terminal for its input and output; answer its prompt."""
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cqrskit.cli", "projections", *args],
        env={**pipeline.env(), "TERM": "dumb"},
        cwd=REPO_ROOT,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
    )
    os.close(terminal)
    output = b""
    answered = False
    try:
        while True:
            ready, _, _ = select.select([controller], [], [], 120)
            assert ready, f"no output for 120 s; so far: {output!r}"
            try:
                chunk = os.read(controller, 4096)
            except OSError:  # the command exited and closed the terminal
                break
            if not chunk:
                break
            output += chunk
            if not answered and b"[y/N]" in output:
                os.write(controller, answer.encode() + b"\n")
                answered = True
    finally:
        os.close(controller)
    return proc.wait(timeout=120), output.decode(errors="replace")


def indices_and_alias(settings: Settings) -> tuple[list[str], str | None]:
    read_model = read_model_for(settings, PROJECTION)
    return read_model.versions(), read_model.serving()


def test_reset_past_the_store_head_is_refused_and_changes_nothing(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    """Regression (issue 15): reset --to-position 99999999 exited 0 and put an
    empty read model in service."""
    live_model(pipeline, 300)
    before = indices_and_alias(pipeline.settings)
    done = run_cli(pipeline, "reset", PROJECTION.name, "--to-position", "99999999", "--yes")
    assert done.returncode != 0, done.stdout
    assert "99999999" in done.stderr
    assert "head" in done.stderr
    assert "300" in done.stderr
    assert "Traceback" not in done.stderr
    assert indices_and_alias(pipeline.settings) == before


def test_reset_rollback_and_prune_refuse_without_yes_when_there_is_no_terminal(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    live_model(pipeline, 300)
    assert run_cli(pipeline, "rebuild", PROJECTION.name).returncode == 0
    before = indices_and_alias(pipeline.settings)
    assert len(before[0]) == 2
    for args in (("reset", "--to-position", "100"), ("rollback",), ("prune",)):
        done = run_cli(pipeline, args[0], PROJECTION.name, *args[1:])
        assert done.returncode != 0, f"{args[0]} ran without --yes: {done.stdout}"
        assert "--yes" in done.stderr, done.stderr
        assert indices_and_alias(pipeline.settings) == before, f"{args[0]} changed something"


def test_reset_rollback_and_prune_ask_on_a_terminal_and_dry_run_changes_nothing(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    live_model(pipeline, 300)
    alias = f"{pipeline.settings.index_prefix}{PROJECTION.name}"
    assert run_cli(pipeline, "rebuild", PROJECTION.name).returncode == 0
    before = indices_and_alias(pipeline.settings)
    for args in (("reset", "--to-position", "100"), ("rollback",), ("prune",)):
        status, output = run_on_terminal(pipeline, "n", args[0], PROJECTION.name, *args[1:])
        assert "[y/N]" in output, output
        assert status != 0, output
        assert indices_and_alias(pipeline.settings) == before, f"{args[0]} changed something"
    dry = run_cli(pipeline, "prune", PROJECTION.name, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would delete {alias}-v1" in dry.stdout
    dry = run_cli(pipeline, "rollback", PROJECTION.name, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would serve {alias}-v1 again in place of {alias}-v2" in dry.stdout
    dry = run_cli(pipeline, "reset", PROJECTION.name, "--to-position", "100", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"would build {alias}-v3" in dry.stdout
    assert "after position 100" in dry.stdout
    assert indices_and_alias(pipeline.settings) == before
    status, output = run_on_terminal(pipeline, "y", "prune", PROJECTION.name)
    assert status == 0, output
    assert indices_and_alias(pipeline.settings) == ([f"{alias}-v2"], f"{alias}-v2")


def test_rebuild_progress_rates_are_never_negative_or_absurd(
    pipeline: Pipeline, es: Elasticsearch
) -> None:
    """Regression (issue 15): progress showed rates such as -99,993,992,000,000 events/s."""
    bulk_orders(pipeline.settings, 3_000)
    pipeline.start_relay()
    pipeline.wait_relayed()
    done = run_cli(pipeline, "rebuild", PROJECTION.name)
    assert done.returncode == 0, done.stderr
    rates = [int(r.replace(",", "")) for r in re.findall(r"(-?[\d,]+) events/s", done.stdout)]
    assert rates, done.stdout
    # This machine replays some thousands of events a second, never millions.
    assert all(0 <= rate < 1_000_000 for rate in rates), done.stdout
