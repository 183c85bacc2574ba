"""``cqrskit services``: the local services' scripts, run from the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.integration.conftest import REPO_ROOT


def services(*args: str, services_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cqrskit", "services", *args],
        env={**os.environ, "CQRSKIT_SERVICES_DIR": str(services_dir)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_status_names_each_service_this_run_started(
    postgres_up: None, kafka_up: None, elasticsearch_up: None
) -> None:
    done = services("status", services_dir=REPO_ROOT / ".services")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "up at postgresql://cqrskit@127.0.0.1:5432/cqrskit" in done.stdout
    assert "kafka: up at 127.0.0.1:9092" in done.stdout
    assert "elasticsearch: up at http://127.0.0.1:9200" in done.stdout


def test_a_port_held_by_services_started_elsewhere_is_named_not_taken_over(
    kafka_up: None, elasticsearch_up: None, tmp_path: Path
) -> None:
    done = services("up", "kafka", services_dir=tmp_path / "elsewhere")
    assert done.returncode == 1
    assert "127.0.0.1:9092 is already in use by a process this script did not start" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    status = services("status", "kafka", "elasticsearch", services_dir=tmp_path / "elsewhere")
    assert status.returncode == 3
    assert "kafka: down (127.0.0.1:9092 is taken by a process this script did not start" in (
        status.stdout
    )
    # Nothing was stopped or started: the services of this run still answer.
    again = services("status", services_dir=REPO_ROOT / ".services")
    assert again.returncode == 0, again.stdout
