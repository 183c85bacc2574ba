"""The example HTTP API as a real server process, on the whole real pipeline."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.integration.conftest import REPO_ROOT
from tests.integration.projections.conftest import Pipeline, pipeline
from tests.integration.projections.test_worker import ALL
from tests.integration.relay.conftest import wait_until

__all__ = ["api", "pipeline"]  # pipeline: the fixture, shared with projections/ tests


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(pipeline: Pipeline) -> Iterator[httpx.Client]:
    """An HTTP client for a running API server; relay and workers running too."""
    pipeline.start_relay()
    pipeline.start_worker(*(p.name for p in ALL))
    port = free_port()
    log = (pipeline.tmp / "api.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory", "examples.shop.api:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        ],
        env={**pipeline.env(), "CQRSKIT_READ_WAIT": "30"},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)

    def up() -> bool:
        try:
            return client.get("/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    def consuming() -> bool:
        # Every worker has joined its groups and read every partition once
        # (the relay's watermarks reach them all): on a broker just started,
        # the first group join waits for Kafka to create its offsets topic.
        statuses = [pipeline.status(p) for p in ALL]
        return all(s is not None and s.partitions > 0 for s in statuses)

    try:
        wait_until(up, 60, "the API server to answer")
        wait_until(consuming, 120, "the projection workers to consume every partition")
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)
        log.close()
