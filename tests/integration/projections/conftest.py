"""A whole pipeline per test: store, in-process relay, worker processes, Elasticsearch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch

from cqrskit import ServiceUnavailable, Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters.postgres.outbox import read_status
from cqrskit.adapters.postgres.reader import read_envelopes, store_head
from cqrskit.projections import Projection, ProjectionStatus, fold
from cqrskit.projections._mapping import METADATA_FIELD
from cqrskit.relay import OutboxRelay
from cqrskit.runtime import Runtime
from cqrskit.topology import IndexNames
from tests.integration.conftest import REPO_ROOT, failed
from tests.integration.relay.conftest import wait_until

APP = "examples.shop:ShopApp"


@dataclass
class Worker:
    """One ``cqrskit projections run`` process."""

    proc: subprocess.Popen[bytes]
    log: Path

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=120)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@dataclass
class Pipeline:
    settings: Settings
    tmp: Path
    projections_module: str = "projections"
    extra_env: dict[str, str] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)
    relay: OutboxRelay | None = None
    relay_thread: threading.Thread | None = None

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "CQRSKIT_APP": APP,
            "CQRSKIT_PROJECTIONS": self.projections_module,
            "CQRSKIT_POSTGRES_SCHEMA": self.settings.postgres_schema,
            "CQRSKIT_TOPIC_PREFIX": self.settings.topic_prefix or "",
            "CQRSKIT_INDEX_PREFIX": self.settings.index_prefix,
            "CQRSKIT_PROJECTION_BATCH_SIZE": str(self.settings.projection_batch_size),
            **self.extra_env,
        }

    def start_relay(self) -> None:
        self.relay = Runtime(self.settings).relay("shop")
        self.relay_thread = threading.Thread(target=self.relay.run, daemon=True)
        self.relay_thread.start()

    def start_worker(self, *names: str) -> Worker:
        log = self.tmp / f"worker-{len(self.workers)}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "cqrskit.cli", "projections", "run", *names],
                env=self.env(),
                cwd=REPO_ROOT,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def wait_relayed(self, timeout: float = 120) -> int:
        head = store_head(self.settings, "shop")

        def relayed() -> bool:
            return read_status(self.settings, "shop").position >= head

        wait_until(relayed, timeout, f"the relay to publish up to {head}")
        return head

    def relay_position(self) -> int:
        """The position the relay recorded as acknowledged by Kafka."""
        return read_status(self.settings, "shop").position

    def wait_applied(self, projection: Projection[Any], timeout: float = 180) -> None:
        """Wait until the relay published everything and the worker committed it all."""
        self.wait_relayed(timeout)

        def applied() -> bool:
            status = self.status(projection)
            return status is not None and status.lag == 0 and status.partitions > 0

        wait_until(applied, timeout, f"projection {projection.name} to apply everything")

    def status(self, projection: Projection[Any]) -> ProjectionStatus | None:
        """The projection's status; None while Elasticsearch cannot answer yet
        (just restarted, or an index the worker is creating right now)."""
        try:
            return Runtime(self.settings).projection_status("shop", projection)
        except ServiceUnavailable:
            return None

    def expected(self, projection: Projection[Any]) -> dict[str, dict[str, Any]]:
        views = fold(projection, read_envelopes(self.settings, "shop"))
        return {k: v.model_dump(mode="json") for k, v in views.items()}

    def actual(self, es: Elasticsearch, projection: Projection[Any]) -> dict[str, dict[str, Any]]:
        alias = f"{self.settings.index_prefix}{projection.name}"
        es.indices.refresh(index=alias)
        docs: dict[str, dict[str, Any]] = {}
        search_after: list[Any] | None = None
        pit = es.open_point_in_time(index=alias, keep_alive="1m")["id"]
        while True:
            page = es.search(
                pit={"id": pit, "keep_alive": "1m"},
                size=5000,
                sort=["_shard_doc"],
                search_after=search_after,
            )["hits"]["hits"]
            if not page:
                es.close_point_in_time(id=pit)
                return docs
            for hit in page:
                source = dict(hit["_source"])
                meta = source.pop(METADATA_FIELD)
                if not meta["deleted"]:
                    view = projection.view.model_validate(source)
                    docs[hit["_id"]] = view.model_dump(mode="json")
            search_after = page[-1]["sort"]

    def report(self, es: Elasticsearch) -> None:
        """Print what a failed test needs to be explained: the workers' logs, every
        checkpoint, the relay's status (shown in the test's report)."""
        for n, worker in enumerate(self.workers):
            print(f"--- worker {n} log ---\n{worker.output()[-20_000:]}")
        checkpoints = IndexNames.of(self.settings).checkpoints_index
        try:
            es.indices.refresh(index=checkpoints)
            hits = es.search(index=checkpoints, size=1000)["hits"]["hits"]
            print("--- checkpoints ---")
            for hit in sorted(hits, key=lambda h: h["_id"]):
                print(hit["_id"], hit["_source"])
        except Exception as exc:  # a report, never a second failure
            print(f"--- checkpoints not read: {exc} ---")
        try:
            print(f"--- relay ---\n{read_status(self.settings, 'shop')}")
        except Exception as exc:
            print(f"--- relay status not read: {exc} ---")

    def stop(self) -> None:
        for worker in self.workers:
            if worker.proc.poll() is None:
                worker.kill9()
        if self.relay is not None and self.relay_thread is not None:
            self.relay.stop()
            self.relay_thread.join(timeout=60)


@pytest.fixture
def pipeline(
    request: pytest.FixtureRequest,
    schema_settings: Settings,
    unique_name: str,
    es: Elasticsearch,
    kafka_up: None,
) -> Iterator[Pipeline]:
    tmp_path: Path = request.getfixturevalue("tmp_path")
    settings = schema_settings.model_copy(
        update={
            "topic_prefix": unique_name,
            "index_prefix": f"{unique_name}-",
            "projection_batch_size": 500,
        }
    )
    line = Pipeline(settings, tmp_path)
    try:
        yield line
    finally:
        line.stop()
        if failed(request):
            line.report(es)
        es.options(ignore_status=404).indices.delete(index=f"{unique_name}-*")
        admin = kafka_backend.admin(settings)
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(unique_name)]
        if topics:
            for future in admin.delete_topics(topics).values():
                future.result(timeout=30)
