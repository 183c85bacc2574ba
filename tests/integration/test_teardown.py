"""``cqrskit teardown`` on the real services, with a schema, topics and indices of its own."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch

from cqrskit import CommandBus, Settings
from cqrskit.adapters import kafka as kafka_backend
from cqrskit.adapters import postgres as pg_backend
from cqrskit.runtime import Runtime
from cqrskit.topology import IndexNames, Topology
from examples.library.app import LibraryApp
from examples.shop import OrderLine, PlaceOrder, ShopApp, handlers
from examples.shop.demo import clean_up
from tests.integration.conftest import REPO_ROOT
from tests.processes import CliProcess, cli_env, cli_run, wait_until


@pytest.fixture
def tag(postgres_up: None, kafka_up: None, elasticsearch_up: None) -> Iterator[str]:
    name = f"td-{uuid.uuid4().hex[:8]}"
    yield name
    clean_up(_settings(name))  # whatever a failed test left


def _settings(tag: str) -> Settings:
    return Settings.load(
        app="examples.shop:ShopApp",
        projections="projections",
        postgres_schema=tag.replace("-", "_"),
        topic_prefix=tag,
        index_prefix=f"{tag}-",
    )


def _teardown(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return cli_run(["teardown", *args], env)


def _answered(env: dict[str, str], answer: str) -> tuple[int, str]:
    """``cqrskit teardown`` on a terminal, answering its question with ``answer``."""
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cqrskit.cli", "teardown"],
        env={**env, "COLUMNS": "200"},
        cwd=REPO_ROOT,
        stdin=follower,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 120
    while b"Go on?" not in seen and time.monotonic() < deadline:
        try:
            seen += os.read(leader, 4096)
        except OSError:
            break
    os.write(leader, f"{answer}\n".encode())
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:  # the terminal closed: the process ended
            break
        if not chunk:
            break
        seen += chunk
    os.close(leader)
    return proc.wait(timeout=60), seen.decode(errors="replace")


def _what_exists(settings: Settings, es: Elasticsearch) -> dict[str, object]:
    topology = Topology.of(settings, "shop")
    with pg_backend.connect(settings) as conn:
        schema = conn.execute(
            "SELECT 1 FROM pg_namespace WHERE nspname = %s", [settings.postgres_schema]
        ).fetchone()
    admin = kafka_backend.admin(settings)
    topics = sorted(
        t for t in admin.list_topics(timeout=30).topics if t.startswith(topology.topic_start)
    )
    groups = admin.list_consumer_groups().result(timeout=30).valid
    indices = es.indices.get(index=f"{settings.index_prefix}*", allow_no_indices=True)
    return {
        "schema": schema is not None,
        "topics": topics,
        "groups": sorted(g.group_id for g in groups if g.group_id.startswith(topology.topic_start)),
        "indices": sorted(indices.body),
    }


def test_teardown_lists_asks_and_removes_the_schema_topics_groups_and_read_models(
    tag: str, es: Elasticsearch, tmp_path: Path
) -> None:
    settings = _settings(tag)
    env = cli_env(tag)
    Runtime(settings).init_schema(ShopApp)
    # A project that ran: its relay published, a worker built a read model.
    relay = CliProcess(["relay", "run"], env, tmp_path / "relay.log", "relay")
    worker = CliProcess(["projections", "run", "order_summaries"], env, tmp_path / "w.log", "w")
    relay.start()
    worker.start()
    try:
        with ShopApp(settings) as app:
            line = OrderLine(sku="tea", quantity=1, unit_price=Decimal("2.00"))
            order = CommandBus(app, handlers).dispatch(PlaceOrder(customer_id="a", lines=[line]))
        alias = IndexNames.of(settings).alias("order_summaries")
        wait_until(
            lambda: es.options(ignore_status=(404, 503)).exists(
                index=alias, id=str(order.aggregate_id)
            ),
            120,
            "the order in its read model",
        )
    finally:
        assert (relay.stop(), worker.stop()) == (0, 0)
    before = _what_exists(settings, es)
    assert before["schema"]
    assert f"{tag}.order" in before["topics"]  # type: ignore[operator]
    assert f"{tag}.projection.order_summaries" in before["groups"]  # type: ignore[operator]
    assert f"{tag}-order_summaries-v1" in before["indices"]  # type: ignore[operator]

    listed = _teardown(env, "--dry-run")
    assert listed.returncode == 0, listed.stderr
    for name in (settings.postgres_schema, f"{tag}.order", f"{tag}-order_summaries-v1", alias):
        assert name in listed.stdout, listed.stdout
    assert f"{tag}-cqrskit-checkpoints" in listed.stdout
    assert "dry run: nothing was removed" in listed.stdout
    assert _what_exists(settings, es) == before

    unasked = _teardown(env)  # no terminal to ask on, no --yes
    assert unasked.returncode == 1
    assert "pass --yes" in unasked.stderr
    declined, shown = _answered(env, "n")
    assert declined == 1, shown
    assert "Go on?" in shown
    assert _what_exists(settings, es) == before

    removed = _teardown(env, "--yes")
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert _what_exists(settings, es) == {
        "schema": False,
        "topics": [],
        "groups": [],
        "indices": [],
    }

    again = _teardown(env, "--yes")
    assert again.returncode == 0, again.stderr
    assert "nothing of 'shop' found" in again.stdout


def test_in_a_schema_it_shares_teardown_removes_only_the_application_s_tables_and_rows(
    tag: str,
) -> None:
    shop = _settings(tag)
    Runtime(shop).init_schema(ShopApp)
    Runtime(shop).init_schema(LibraryApp)
    layouts = f'"{shop.postgres_schema}".cqrskit_topic_layout'
    with pg_backend.connect(shop) as conn:
        for topic in (f"{tag}.book", f"{tag}.eu.book"):  # the second: a longer prefix's
            conn.execute(
                f"INSERT INTO {layouts} (topic, after_position, partitions) VALUES (%s, 0, 3)",
                [topic],
            )
    done = _teardown(cli_env(tag, app="examples.library.app:LibraryApp"), "--yes")
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"kept: schema {shop.postgres_schema!r}" in done.stdout
    with pg_backend.connect(shop) as conn:
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s", [shop.postgres_schema]
            ).fetchall()
        }
        apps = conn.execute(
            f'SELECT DISTINCT application FROM "{shop.postgres_schema}".cqrskit_migrations'
        ).fetchall()
        kept_layouts = conn.execute(f"SELECT topic FROM {layouts}").fetchall()
    assert "library_events" not in tables
    assert {"shop_events", "cqrskit_relay", "cqrskit_migrations"} <= tables
    assert apps == [("shop",)]
    assert kept_layouts == [(f"{tag}.eu.book",)]
    with ShopApp(shop):
        pass  # the shop's schema is still ready
