"""Metrics, stage latencies and traces on a real run of the pipeline."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from cqrskit import CommandBus
from examples.shop import RegisterItem, RestockItem, ShopApp, handlers
from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline
from tests.integration.relay.conftest import wait_until


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def scrape(port: int) -> dict[str, float]:
    """Every sample of a /metrics page, keyed by name and labels."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}"] = sample.value
    return samples


def send_commands(pipeline: Pipeline, items: int, restocks: int) -> None:
    with ShopApp(pipeline.settings) as app:
        bus = CommandBus(app, handlers)
        for n in range(items):
            item = bus.dispatch(RegisterItem(sku=f"sku-{n}", name=f"item {n}", quantity=1))
            for _ in range(restocks):
                bus.dispatch(RestockItem(item_id=item.aggregate_id, quantity=1))


@pytest.fixture
def observed(pipeline: Pipeline) -> Iterator[tuple[Pipeline, int, int]]:
    relay_port, worker_port = free_port(), free_port()
    log = (pipeline.tmp / "relay.log").open("wb")
    relay = subprocess.Popen(
        [sys.executable, "-m", "cqrskit.cli", "relay", "run", "--metrics-port", str(relay_port)],
        env={**pipeline.env(), "CQRSKIT_LOG_FORMAT": "json"},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    pipeline.extra_env["CQRSKIT_METRICS_PORT"] = str(worker_port)
    pipeline.start_worker("stock_levels")
    try:
        yield pipeline, relay_port, worker_port
    finally:
        relay.terminate()
        relay.wait(timeout=60)
        log.close()


def test_metrics_move_and_lag_returns_to_zero(observed: tuple[Pipeline, int, int]) -> None:
    pipeline, relay_port, worker_port = observed
    published = "cqrskit_relay_events_published_total{application=shop}"
    applied = "cqrskit_projection_events_applied_total{projection=stock_levels}"

    def scraped(port: int, name: str) -> float | None:
        try:
            return scrape(port).get(name)
        except httpx.HTTPError:
            return None  # the process is still starting

    send_commands(pipeline, items=5, restocks=4)
    first = wait_until(lambda: scraped(relay_port, published), 60, "the relay to publish")
    wait_until(lambda: scraped(worker_port, applied), 60, "the worker to apply")
    send_commands(pipeline, items=5, restocks=4)
    wait_until(
        lambda: (scraped(relay_port, published) or 0) >= first + 25, 60, "the counter to move"
    )
    wait_until(lambda: (scraped(worker_port, applied) or 0) >= 50, 60, "all 50 events applied")

    def drained() -> bool:
        relay, worker = scrape(relay_port), scrape(worker_port)
        return (
            relay.get("cqrskit_relay_lag_events{application=shop}") == 0
            and worker.get("cqrskit_projection_lag_events{projection=stock_levels}") == 0
        )

    wait_until(drained, 60, "the lag of the relay and of the worker to return to zero")
    relay, worker = scrape(relay_port), scrape(worker_port)
    assert relay["cqrskit_relay_state{application=shop,cqrskit_relay_state=leading}"] == 1
    assert relay["cqrskit_relay_kafka_ack_seconds_count{application=shop}"] >= 1
    assert (
        worker["cqrskit_projection_state{cqrskit_projection_state=running,projection=stock_levels}"]
        == 1
    )
    assert worker["cqrskit_projection_batch_events_count{projection=stock_levels}"] >= 1
    bulk = "operation=write documents,projection=stock_levels"
    assert worker[f"cqrskit_projection_elasticsearch_seconds_count{{{bulk}}}"] >= 1
    for stage in ("append_to_publish", "publish_to_applied"):
        key = f"cqrskit_stage_seconds_count{{projection=stock_levels,stage={stage}}}"
        assert worker[key] == 50, stage
    searchable = "cqrskit_stage_seconds_count{projection=stock_levels,stage=applied_to_searchable}"
    wait_until(lambda: scrape(worker_port).get(searchable, 0) >= 1, 30, "a searchable sample")

    # The stage samples reach `cqrskit status` through Elasticsearch.
    def status() -> dict[str, object] | None:
        done = subprocess.run(
            [sys.executable, "-m", "cqrskit.cli", "status", "stock_levels", "--json"],
            env=pipeline.env(),
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        found = json.loads(done.stdout)["projections"][0]
        stages = {s["stage"]: s for s in found["stages"]}
        return found if all(s["samples"] > 0 for s in stages.values()) else None

    found = wait_until(status, 30, "cqrskit status to show every stage")
    stages = {s["stage"]: s for s in found["stages"]}  # type: ignore[attr-defined]
    assert stages["publish_to_applied"]["p50"] <= stages["publish_to_applied"]["p99"]
    table = subprocess.run(
        [sys.executable, "-m", "cqrskit.cli", "status", "stock_levels"],
        env=pipeline.env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "append → publish p99" in table
    assert "stock_levels" in table


def test_one_trace_runs_from_the_command_to_the_applied_document(pipeline: Pipeline) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.integration.projections.traced_run"],
        env=pipeline.env(),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    (command,) = [s for s in found["spans"] if s["name"] == "command RegisterItem"]
    (applied,) = [
        s for s in found["spans"] if s["name"] == "apply stock_levels InventoryItem.Registered"
    ]
    assert applied["trace_id"] == command["trace_id"]
    assert applied["parent_id"] == command["span_id"]
    assert applied["aggregate_id"] == found["aggregate_id"]
