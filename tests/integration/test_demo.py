"""The README's first command: the demo runs end to end and shows query results."""

from __future__ import annotations

import subprocess
import sys

from tests.integration.conftest import REPO_ROOT


def test_the_demo_runs_end_to_end(
    postgres_up: None, kafka_up: None, elasticsearch_up: None
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "examples.shop.demo"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for heading in ("orders by status", "largest paid orders", "stock", "search: 'tea'"):
        assert heading in done.stdout
    assert "Green tea from Shizuoka" in done.stdout
    assert "order_summaries" in done.stdout  # projections status
    assert "latency per stage" in done.stdout  # cqrskit status
    assert "publish → applied p99" in done.stdout
    assert "removing this run's schema" in done.stdout
