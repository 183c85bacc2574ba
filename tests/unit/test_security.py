"""Secrets come from the environment or secret files and are never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cqrskit import ConfigurationError, Settings
from cqrskit.adapters import elasticsearch as es_backend
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.cli import main

DSN = "postgresql://cqrskit:s3cret-pw@db.example:5432/cqrskit"


def test_settings_never_show_a_password_in_their_repr() -> None:
    settings = Settings.load(
        postgres_dsn=DSN,
        elasticsearch_url="https://elastic:es-pw@search.example:9200",
        kafka_sasl_password="sasl-pw",
    )
    text = repr(settings) + str(settings)
    for secret in ("s3cret-pw", "es-pw", "sasl-pw"):
        assert secret not in text
    shown = settings.masked()
    assert shown["postgres_dsn"] == "postgresql://cqrskit:***@db.example:5432/cqrskit"
    assert shown["elasticsearch_url"] == "https://elastic:***@search.example:9200"
    assert shown["kafka_sasl_password"] == "***"


def test_a_malformed_dsn_is_reported_without_its_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CQRSKIT_POSTGRES_DSN", "host=db password=s3cret-pw port")
    with pytest.raises(ConfigurationError) as caught:
        Settings.load()
    assert "CQRSKIT_POSTGRES_DSN" in str(caught.value)
    assert "s3cret-pw" not in str(caught.value)
    assert "password=***" in str(caught.value)


def test_cqrskit_config_masks_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQRSKIT_POSTGRES_DSN", DSN)
    monkeypatch.setenv("CQRSKIT_ELASTICSEARCH_API_KEY", "api-key-value")
    result = CliRunner().invoke(main, ["config", "--json"])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)
    assert shown["postgres_dsn"] == "postgresql://cqrskit:***@db.example:5432/cqrskit"
    assert shown["elasticsearch_api_key"] == "***"
    assert "s3cret-pw" not in result.output
    assert "api-key-value" not in result.output


def test_secrets_can_come_from_files(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "cqrskit_postgres_dsn").write_text(DSN)
    (tmp_path / "cqrskit_kafka_sasl_password").write_text("from-a-file")
    monkeypatch.setenv("CQRSKIT_SECRETS_DIR", str(tmp_path))
    monkeypatch.delenv("CQRSKIT_POSTGRES_DSN", raising=False)
    settings = Settings.load()
    assert settings.postgres_dsn == DSN
    assert settings.kafka_sasl_password is not None
    assert settings.kafka_sasl_password.get_secret_value() == "from-a-file"


def test_kafka_tls_and_sasl_settings_reach_the_client() -> None:
    settings = Settings.load(
        kafka_security_protocol="SASL_SSL",
        kafka_sasl_mechanism="SCRAM-SHA-512",
        kafka_sasl_username="relay",
        kafka_sasl_password="sasl-pw",
        kafka_ssl_ca_location="/etc/ssl/kafka-ca.pem",
    )
    config = kafka_backend.base_config(settings)
    assert config["security.protocol"] == "SASL_SSL"
    assert config["sasl.mechanism"] == "SCRAM-SHA-512"
    assert (config["sasl.username"], config["sasl.password"]) == ("relay", "sasl-pw")
    assert config["ssl.ca.location"] == "/etc/ssl/kafka-ca.pem"
    assert "ssl.key.location" not in config


def test_elasticsearch_api_key_and_tls_settings_reach_the_client() -> None:
    settings = Settings.load(
        elasticsearch_url="https://search.example:9200", elasticsearch_api_key="a2V5OnNlY3JldA=="
    )
    client = es_backend.client(settings)
    try:
        headers = client._headers
        assert headers["authorization"] == "ApiKey a2V5OnNlY3JldA=="
    finally:
        client.close()
