"""Errors a new user meets first: one line naming the cause and the setting, no traceback."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import pytest
from elasticsearch import Elasticsearch

from cqrskit import Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.layouts import PostgresTopicLayouts
from cqrskit.topology import Topology
from tests.integration.conftest import REPO_ROOT, init_schema
from tests.processes import wait_until


def cqrskit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cqrskit", *args],
        env={**os.environ, "CQRSKIT_APP": "examples.shop:ShopApp", **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_wrong_postgres_password_is_named_as_such(settings: Settings, postgres_up: None) -> None:
    parts = urlsplit(settings.postgres_dsn)
    user = parts.username or "cqrskit"
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    wrong = urlunsplit(parts._replace(netloc=f"{user}:not-the-password@{host}{port}"))
    done = cqrskit("db", "init", CQRSKIT_POSTGRES_DSN=wrong)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "password authentication failed" in lines[0]
    assert "CQRSKIT_POSTGRES_DSN" in lines[0]
    assert "not-the-password" not in done.stderr  # the secret is never echoed
    assert "Traceback" not in done.stderr


def test_a_misspelt_variable_is_one_line_naming_the_setting_meant() -> None:
    misspelt = cqrskit("relay", "status", CQRSKIT_RELAY_PAGESIZE="5")
    assert misspelt.returncode != 0
    assert misspelt.stderr.strip().splitlines() == [
        "Error: CQRSKIT_RELAY_PAGESIZE='5' is invalid: no such setting; "
        "did you mean CQRSKIT_RELAY_PAGE_SIZE?"
    ]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def app_env(unique_name: str, settings: Settings, es: Elasticsearch) -> Iterator[dict[str, str]]:
    """The variables of an application of its own: schema (with its tables), topics, indices."""
    own = settings.model_copy(
        update={
            "postgres_schema": unique_name,
            "topic_prefix": unique_name,
            "index_prefix": f"{unique_name}-",
        }
    )
    init_schema(own)  # the tables, as 'cqrskit db init' creates them
    with pg_backend.connect(own) as conn:
        layouts = PostgresTopicLayouts(conn, unique_name)
        layouts.pin(Topology.of(own, "shop").topic("Order"), 6)  # relay status compares it
    try:
        yield {
            "CQRSKIT_POSTGRES_SCHEMA": unique_name,
            "CQRSKIT_TOPIC_PREFIX": unique_name,
            "CQRSKIT_INDEX_PREFIX": f"{unique_name}-",
        }
    finally:
        es.options(ignore_status=404).indices.delete(index=f"{unique_name}-*")
        with pg_backend.connect(settings) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{unique_name}" CASCADE')
        admin = kafka_backend.admin(settings)
        topics = [t for t in admin.list_topics(timeout=30).topics if t.startswith(unique_name)]
        for future in admin.delete_topics(topics).values() if topics else ():
            future.result(timeout=30)


KAFKA_COMMANDS = [
    ("relay", "status"),
    ("relay", "repartition"),
    ("status",),
    ("projections", "status"),
    ("projections", "dlq", "list", "products"),
    ("projections", "dlq", "replay", "products"),
    ("projections", "rebuild", "products"),
]


@pytest.mark.parametrize("command", KAFKA_COMMANDS, ids=" ".join)
def test_a_command_that_cannot_reach_kafka_ends_with_one_line_naming_broker_cause_and_setting(
    command: tuple[str, ...], app_env: dict[str, str]
) -> None:
    """Regression: librdkafka printed every retry of every client (97 lines in 5 s)."""
    port = _closed_port()
    done = cqrskit(
        *command,
        CQRSKIT_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}",
        CQRSKIT_CONNECT_TIMEOUT="2",
        **app_env,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    said = done.stderr.strip().splitlines()
    assert len(said) <= 2, done.stderr  # what happened to the broker, then the error
    assert said[-1] == (
        f"Error: Kafka is unreachable at 127.0.0.1:{port} (connection refused"
        + said[-1].split("(connection refused", 1)[1]
    )
    assert said[-1].endswith("; check CQRSKIT_KAFKA_BOOTSTRAP"), said[-1]
    output = done.stdout + done.stderr
    assert "rdkafka" not in output
    assert "Traceback" not in output


def test_the_health_check_names_the_broker_and_the_cause_on_one_line() -> None:
    port = _closed_port()
    done = cqrskit(
        "doctor", CQRSKIT_KAFKA_BOOTSTRAP=f"127.0.0.1:{port}", CQRSKIT_CONNECT_TIMEOUT="2"
    )
    assert done.returncode == 1
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(f"Kafka is unreachable at 127.0.0.1:{port} (connection refused): "), last
    assert last.endswith("or set CQRSKIT_KAFKA_BOOTSTRAP to a reachable server."), last
    assert len(done.stderr.strip().splitlines()) <= 1, done.stderr
    assert "rdkafka" not in done.stdout + done.stderr


def test_a_worker_on_a_view_that_gained_a_field_exits_with_one_log_line_saying_to_rebuild(
    app_env: dict[str, str], es: Elasticsearch, kafka_up: None
) -> None:
    """Regression: every event of such a view was dead-lettered, one warning each."""
    env = {**os.environ, "CQRSKIT_APP": "examples.shop:ShopApp", **app_env}
    env["CQRSKIT_PROJECTIONS"] = "tests.integration.projections.refused"
    index = f"{app_env['CQRSKIT_INDEX_PREFIX']}tabs-v1"
    before = subprocess.Popen(
        [sys.executable, "-m", "cqrskit", "projections", "run", "tabs"],
        env=env,
        cwd=REPO_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_until(lambda: bool(es.indices.exists(index=index)), 120, f"the worker to make {index}")
    finally:
        before.send_signal(signal.SIGTERM)
        assert before.wait(timeout=120) == 0
    for log_format in ("json", "text"):
        done = cqrskit(
            "projections",
            "run",
            "tabs",
            **app_env,
            CQRSKIT_PROJECTIONS=env["CQRSKIT_PROJECTIONS"],
            VIEW_GAINED_A_FIELD="yes",
            CQRSKIT_LOG_FORMAT=log_format,
        )
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        (line,) = done.stderr.strip().splitlines()
        said = (
            f"projection tabs: the view has fields that the mapping of index {index} lacks "
            "(note), so Elasticsearch would refuse its documents; run 'cqrskit projections "
            "rebuild tabs' to index it"
        )
        if log_format == "json":
            record = json.loads(line)
            assert record["level"] == "ERROR"
            assert record["message"].startswith(said), record
            assert (record["projection"], record["index"], record["fields"]) == (
                "tabs",
                index,
                ["note"],
            )
        else:
            assert " ERROR cqrskit.projections: " + said in line, line
            assert line.endswith("[projection=tabs]"), line


@pytest.mark.parametrize(
    "command",
    [("relay", "status"), ("status",), ("projections", "verify", "products")],
    ids=" ".join,
)
def test_a_schema_without_the_event_store_is_one_line_saying_to_run_db_init(
    command: tuple[str, ...], unique_name: str, postgres_up: None
) -> None:
    """Regression: 'relay status' said only '^', and verify printed psycopg's traceback."""
    done = cqrskit(
        *command,
        CQRSKIT_POSTGRES_SCHEMA=unique_name,
        CQRSKIT_TOPIC_PREFIX=unique_name,
        CQRSKIT_INDEX_PREFIX=f"{unique_name}-",
    )
    assert done.returncode == 1
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("Error: "), line
    assert f"'{unique_name}'" in line, line
    assert "run 'cqrskit db init'" in line, line
    assert "CQRSKIT_POSTGRES_SCHEMA" in line, line
