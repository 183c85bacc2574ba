"""``cqrskit doctor`` against the real services, and with one really stopped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from cqrskit import Settings, check_services

REPO_ROOT = Path(__file__).resolve().parents[2]
CQRSKIT = [sys.executable, "-m", "cqrskit.cli"]


def _doctor() -> tuple[int, list[dict[str, object]]]:
    done = subprocess.run(
        [*CQRSKIT, "doctor", "--json"], check=False, capture_output=True, text=True, timeout=60
    )
    return done.returncode, json.loads(done.stdout)


def test_doctor_reports_all_three_services_with_versions(settings: Settings) -> None:
    code, checks = _doctor()
    assert code == 0
    by_service = {c["service"]: c for c in checks}
    assert set(by_service) == {"PostgreSQL", "Kafka", "Elasticsearch"}
    assert all(c["ok"] for c in checks)
    assert str(by_service["Elasticsearch"]["version"]).startswith("8.")
    assert str(by_service["Kafka"]["version"]).startswith("4.")
    assert str(by_service["PostgreSQL"]["version"])[0].isdigit()


def test_doctor_names_a_stopped_service_and_exits_non_zero(settings: Settings) -> None:
    script = REPO_ROOT / "scripts" / "postgres.sh"
    subprocess.run(["bash", str(script), "stop"], check=True, timeout=120)
    try:
        code, checks = _doctor()
        down = [c["service"] for c in checks if not c["ok"]]
        assert code == 1
        assert down == ["PostgreSQL"]
    finally:
        subprocess.run(["bash", str(script), "start"], check=True, timeout=120)
    assert all(c.ok for c in check_services(settings))
