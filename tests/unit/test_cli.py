import json
import socket

import pytest
from click.testing import CliRunner

import cqrskit
from cqrskit.cli import main
from cqrskit.cli._projections import _Rates


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert cqrskit.__version__ in result.output


def test_doctor_names_every_unreachable_service_and_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    port = _closed_port()
    monkeypatch.setenv("CQRSKIT_POSTGRES_DSN", f"postgresql://u:p@127.0.0.1:{port}/db")
    monkeypatch.setenv("CQRSKIT_KAFKA_BOOTSTRAP", f"127.0.0.1:{port}")
    monkeypatch.setenv("CQRSKIT_ELASTICSEARCH_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("CQRSKIT_CONNECT_TIMEOUT", "2")
    result = CliRunner().invoke(main, ["doctor", "--json"])
    assert result.exit_code == 1
    checks = {c["service"]: c for c in json.loads(result.output)}
    assert set(checks) == {"PostgreSQL", "Kafka", "Elasticsearch"}
    assert not any(c["ok"] for c in checks.values())
    assert checks["Kafka"]["address"] == f"127.0.0.1:{port}"
    assert "CQRSKIT_KAFKA_BOOTSTRAP" in checks["Kafka"]["hint"]


def test_a_bad_setting_is_reported_without_a_traceback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQRSKIT_ELASTICSEARCH_URL", "nonsense")
    result = CliRunner().invoke(main, ["doctor"])
    assert result.exit_code == 1
    assert "CQRSKIT_ELASTICSEARCH_URL" in result.output
    assert "Traceback" not in result.output


def test_rebuild_rates_count_from_the_phase_start_and_are_never_negative() -> None:
    rates = _Rates()
    assert rates("replaying", 0) == ""  # the phase starts: no rate yet
    assert rates("replaying", -5) == ""
    rate = rates("replaying", 10)
    assert rate.endswith(" events/s")
    assert not rate.startswith("-")
