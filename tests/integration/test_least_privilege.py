"""The pipeline runs as a role that may create nothing, on a schema psql alone made.

A DBA applies ``cqrskit db init --sql`` with psql; the relay, a projection
worker, a saga runner and the command side then run as a role with no
CREATE right on the database or the schema. What that role needs, and
nothing more (docs/operations.md, "Schema and migrations"):

- USAGE on the schema;
- SELECT, INSERT, UPDATE, DELETE on its tables (UPDATE also lets the command
  side take the events table's EXCLUSIVE lock that keeps positions in commit
  order, and the saga store read instances FOR SHARE);
- USAGE on its sequences (the events' positions, the sagas' history).
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import pytest
from elasticsearch import Elasticsearch
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from cqrskit import CommandBus, Settings
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.saga_store import PostgresSagaStore
from cqrskit.topology import IndexNames
from examples.shop import OrderLine, PlaceOrder, RegisterItem, ShopApp, handlers
from examples.shop.demo import clean_up
from tests.integration.conftest import psql
from tests.processes import CliProcess, cli_env, run_cli, wait_until

GRANTS = (
    "GRANT USAGE ON SCHEMA {schema} TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {schema} TO {role}",
    "GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {role}",
)


@dataclass
class Restricted:
    """The owner's settings, the restricted role's, and the environment its processes get."""

    owner: Settings
    settings: Settings
    env: dict[str, str]
    role: str


@pytest.fixture
def restricted(
    settings: Settings, postgres_up: None, kafka_up: None, elasticsearch_up: None
) -> Iterator[Restricted]:
    tag = f"lp-{uuid.uuid4().hex[:8]}"
    role = tag.replace("-", "_")
    password = uuid.uuid4().hex
    sagas = "tests.integration.sagas.quick"
    owner_env = cli_env(tag, sagas=sagas)
    owner = Settings.load(
        postgres_schema=role, topic_prefix=tag, index_prefix=f"{tag}-", sagas=sagas
    )
    dsn = make_conninfo(settings.postgres_dsn, user=role, password=password)
    env = {**owner_env, "CQRSKIT_POSTGRES_DSN": dsn}
    try:
        yield Restricted(owner, owner.model_copy(update={"postgres_dsn": dsn}), env, role)
    finally:
        clean_up(owner)
        with pg_backend.connect(settings) as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s", [role]
            )
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')


def _psql(settings: Settings, script: str) -> None:
    done = psql(settings, script)
    assert done.returncode == 0, done.stderr


def test_the_pipeline_runs_as_a_role_that_can_create_nothing(
    restricted: Restricted, es: Elasticsearch, tmp_path: Path
) -> None:
    owner, schema, role = restricted.owner, restricted.owner.postgres_schema, restricted.role
    # The DBA: the schema from the script alone, then a role with the least it needs.
    nowhere = make_conninfo(owner.postgres_dsn, port=1)  # --sql connects to nothing
    _psql(
        owner, run_cli(["db", "init", "--sql"], {**restricted.env, "CQRSKIT_POSTGRES_DSN": nowhere})
    )
    password = conninfo_to_dict(restricted.settings.postgres_dsn)["password"]
    grants = [g.format(schema=f'"{schema}"', role=f'"{role}"') for g in GRANTS]
    _psql(owner, ";\n".join([f"CREATE ROLE \"{role}\" LOGIN PASSWORD '{password}'", *grants, ""]))
    with pg_backend.connect(restricted.settings) as conn:
        database = conn.info.dbname
        rights = conn.execute(
            "SELECT has_database_privilege(current_user, %s, 'CREATE'), "
            "has_schema_privilege(current_user, %s, 'CREATE')",
            [database, schema],
        ).fetchone()
    assert rights == (False, False), "the role must not be able to create anything"

    env = restricted.env
    relay = CliProcess(["relay", "run"], env, tmp_path / "relay.log", "relay")
    worker = CliProcess(
        ["projections", "run", "order_summaries"], env, tmp_path / "worker.log", "worker"
    )
    runner = CliProcess(["sagas", "run", "order_workflow"], env, tmp_path / "saga.log", "saga")
    processes = [relay, worker, runner]
    for process in processes:
        process.start()
    try:
        with ShopApp(restricted.settings) as app:
            bus = CommandBus(app, handlers)
            item = bus.dispatch(RegisterItem(sku="tea", name="tea", quantity=10)).aggregate_id
            line = OrderLine(sku="tea", quantity=2, unit_price=Decimal("3.00"), item_id=item)
            order = bus.dispatch(PlaceOrder(customer_id="ada", lines=[line])).aggregate_id
        store = PostgresSagaStore(restricted.settings, "shop")

        def reacted() -> bool:
            _alive(processes)
            found = store.load("order_workflow", str(order))
            return found is not None and found.state.get("step") == "awaiting payment"

        wait_until(reacted, 120, "the saga to reserve the order's stock")
        alias = IndexNames.of(owner).alias("order_summaries")

        def in_read_model() -> bool:
            _alive(processes)
            return bool(es.options(ignore_status=(404, 503)).exists(index=alias, id=str(order)))

        wait_until(in_read_model, 120, "the order in the order summaries")
    finally:
        codes = [process.stop() for process in processes]
    logs = "\n".join(p.output() for p in processes)
    assert codes == [0, 0, 0], logs
    assert "permission denied" not in logs.lower(), logs

    # db init on every deployment, as the role: a no-op while up to date...
    assert "it was up to date" in run_cli(["db", "init"], env)
    # ... and one line naming what was refused when something is pending.
    with pg_backend.connect(owner) as conn:
        conn.execute(f'DELETE FROM "{schema}".cqrskit_migrations WHERE part = %s', ["sagas"])
    with pytest.raises(subprocess.CalledProcessError) as refused:
        run_cli(["db", "init"], env)
    error = refused.value.stderr
    assert "Traceback" not in error
    assert f"schema {schema!r} of application 'shop': creating its tables was refused" in error
    assert "permission denied" in error


def _alive(processes: list[CliProcess]) -> None:
    for process in processes:
        if process.running().poll() is not None:
            raise AssertionError(f"{process.name} exited:\n{process.output()}")
