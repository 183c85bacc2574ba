"""The fault suite's short form (``make chaos`` runs the full one)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.integration.conftest import REPO_ROOT

#: The short fault suite runs eleven faults one after the other (about 200 s
#: on a warm machine); the suite's default per-test timeout is for single tests.
CHAOS_SECONDS = 1200


@pytest.mark.timeout(CHAOS_SECONDS)
def test_nothing_is_lost_or_doubled_under_faults(
    postgres_up: None, kafka_up: None, elasticsearch_up: None
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.chaos.run", "--short"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=CHAOS_SECONDS - 30,
        check=False,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-5000:]
    assert "PASSED: nothing lost, nothing doubled" in output
    saved = sorted((REPO_ROOT / "bench" / "results").glob("chaos-*.json"))[-1]
    report = json.loads(saved.read_text())
    assert report["effects_missing"] == 0
    assert report["effects_doubled"] == 0
    assert report["events_published"] == report["events_stored"] > 0
    assert report["published_out_of_order"] == 0
    assert report["dead_letters_missing"] == 0
    assert report["slow_takeovers"] == 0
    assert (
        report["second_application_events_published"]
        == report["second_application_events_stored"]
        > 0
    )
    assert len(report["faults"]) == 11
