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

__all__ = ["api", "pipeline"]  # pipeline: the fixture, shared with projections/ tests
from tests.integration.relay.conftest import wait_until

ALL_PROJECTIONS = ("order_summaries", "customer_orders", "products", "stock_levels")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def api(pipeline: Pipeline) -> Iterator[httpx.Client]:
    """An HTTP client for a running API server; relay and workers running too."""
    pipeline.start_relay()
    pipeline.start_worker(*ALL_PROJECTIONS)
    port = free_port()
    log = (pipeline.tmp / "api.log").open("wb")
    server = subprocess.Popen(
        [
            sys.executable, "-m", "uvicorn", "--factory", "examples.shop.api:create_app",
            "--host", "127.0.0.1", "--port", str(port), "--no-access-log",
        ],
        env={**pipeline.env(), "CQRSKIT_READ_WAIT": "5"},
        cwd=REPO_ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)

    def up() -> bool:
        try:
            return client.get("/openapi.json").status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, 60, "the API server to answer")
        yield client
    finally:
        client.close()
        server.terminate()
        server.wait(timeout=30)
        log.close()
