from pathlib import Path

import pytest

from cqrskit import ConfigurationError, Settings


def test_defaults_point_at_the_local_services(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("CQRSKIT_POSTGRES_DSN", "CQRSKIT_KAFKA_BOOTSTRAP", "CQRSKIT_ELASTICSEARCH_URL"):
        monkeypatch.delenv(var, raising=False)
    settings = Settings.load()
    assert settings.kafka_bootstrap == "127.0.0.1:9092"
    assert settings.elasticsearch_url == "http://127.0.0.1:9200"
    assert settings.postgres_address() == "127.0.0.1:5432/cqrskit"


def test_environment_overrides_defaults_and_arguments_override_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CQRSKIT_KAFKA_BOOTSTRAP", "broker-a:9093, broker-b:9094")
    monkeypatch.setenv("CQRSKIT_ELASTICSEARCH_URL", "https://search.example:9201/")
    settings = Settings.load()
    assert settings.kafka_bootstrap == "broker-a:9093,broker-b:9094"
    assert settings.elasticsearch_url == "https://search.example:9201"
    assert Settings.load(kafka_bootstrap="other:1").kafka_bootstrap == "other:1"


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("CQRSKIT_KAFKA_BOOTSTRAP", "no-port", "not host:port"),
        ("CQRSKIT_KAFKA_BOOTSTRAP", "host:99999", "not host:port"),
        ("CQRSKIT_ELASTICSEARCH_URL", "ftp://x", "http"),
        ("CQRSKIT_ELASTICSEARCH_URL", "http://h:notaport", "port"),
        ("CQRSKIT_POSTGRES_DSN", "host=a port", "connection string"),
        ("CQRSKIT_CONNECT_TIMEOUT", "-1", "greater than 0"),
        ("CQRSKIT_REBUILD_BATCH_SIZE", "0", "greater than or equal to 1"),
    ],
)
def test_a_bad_value_names_its_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as caught:
        Settings.load()
    assert caught.value.variable == variable
    assert variable in str(caught.value)
    assert reason in str(caught.value)


def test_pyproject_table_sits_between_defaults_and_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.cqrskit]\napp = "shop:App"\ntopic_partitions = 3\n'
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CQRSKIT_TOPIC_PARTITIONS", raising=False)
    monkeypatch.delenv("CQRSKIT_APP", raising=False)
    assert (Settings.load().app, Settings.load().topic_partitions) == ("shop:App", 3)
    monkeypatch.setenv("CQRSKIT_TOPIC_PARTITIONS", "4")
    assert Settings.load().topic_partitions == 4


def test_a_bad_value_in_pyproject_names_the_table(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.cqrskit]\ntopic_partitions = "six"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CQRSKIT_TOPIC_PARTITIONS", raising=False)
    with pytest.raises(ConfigurationError) as caught:
        Settings.load()
    assert "pyproject.toml [tool.cqrskit] topic_partitions" in str(caught.value)
    assert "'six'" in str(caught.value)


def test_a_misspelt_variable_is_refused_with_the_setting_it_means(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CQRSKIT_RELAY_PAGESIZE", "5")
    with pytest.raises(ConfigurationError) as refused:
        Settings.load()
    message = str(refused.value)
    assert "CQRSKIT_RELAY_PAGESIZE" in message
    assert "did you mean CQRSKIT_RELAY_PAGE_SIZE?" in message
    monkeypatch.delenv("CQRSKIT_RELAY_PAGESIZE")
    monkeypatch.setenv("CQRSKIT_KAFKA_HEAP", "512m")  # the local services' own: not a setting
    assert Settings.load().relay_page_size > 0


def test_settings_come_from_the_nearest_pyproject_and_a_malformed_one_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nested = tmp_path / "src" / "shop"
    nested.mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text("[tool.cqrskit]\nrelay_page_size = 77\n")
    monkeypatch.chdir(nested)
    assert Settings.load().relay_page_size == 77
    (tmp_path / "pyproject.toml").write_text("[tool.cqrskit\nrelay_page_size = 77\n")
    with pytest.raises(ConfigurationError) as refused:
        Settings.load()
    assert str(refused.value).startswith(
        f"{tmp_path / 'pyproject.toml'} is invalid: not valid TOML"
    )
    assert "line 1" in str(refused.value)
