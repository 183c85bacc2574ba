"""eventsourcing's own recorder conformance suites, run against our recorder.

We subclass the library's PostgreSQL application recorder; these are the
library's tests for that contract, on the real PostgreSQL.
"""

from __future__ import annotations

import uuid

import pytest
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.tests.persistence import (
    ApplicationRecorderTestCase,
    NonInterleavingNotificationIDsBaseCase,
)
from psycopg.conninfo import conninfo_to_dict

from cqrskit import Settings
from cqrskit.adapters import postgres as pg_backend
from cqrskit.adapters.postgres.event_store import PostgresEventRecorder
from cqrskit.adapters.postgres.schema import PostgresSchema

pytestmark = pytest.mark.usefixtures("postgres_up")


class _OnFreshSchema:
    """Each test case gets its own schema and datastore."""

    datastore: PostgresDatastore
    schema: str
    enable_db_functions = False

    def setUp(self) -> None:
        settings = Settings.load()
        params = conninfo_to_dict(settings.postgres_dsn)
        self.schema = f"conformance_{uuid.uuid4().hex[:10]}"
        with pg_backend.connect(settings) as conn:
            conn.execute(f'CREATE SCHEMA "{self.schema}"')
        self.datastore = PostgresDatastore(
            dbname=str(params["dbname"]),
            host=str(params["host"]),
            port=str(params.get("port", 5432)),
            user=str(params["user"]),
            password=str(params["password"]),
            schema=self.schema,
            pool_size=10,
            enable_db_functions=self.enable_db_functions,
        )

    def tearDown(self) -> None:
        self.datastore.close()
        with pg_backend.connect(Settings.load()) as conn:
            conn.execute(f'DROP SCHEMA "{self.schema}" CASCADE')

    def create_recorder(self) -> PostgresEventRecorder:
        # The tables of application "stored" as 'cqrskit db init' creates them.
        settings = Settings.load(postgres_schema=self.schema)
        PostgresSchema(settings, "stored", ("store",)).apply()
        return PostgresEventRecorder(self.datastore, events_table_name="stored_events")


class TestPostgresEventRecorderIsAnApplicationRecorder(
    _OnFreshSchema, ApplicationRecorderTestCase[PostgresEventRecorder]
):
    pass


class TestPostgresEventRecorderNeverInterleavesNotificationIds(
    _OnFreshSchema, NonInterleavingNotificationIDsBaseCase
):
    pass


class TestWithDatabaseFunctionsEnabledIsAnApplicationRecorder(
    _OnFreshSchema, ApplicationRecorderTestCase[PostgresEventRecorder]
):
    enable_db_functions = True


class TestWithDatabaseFunctionsEnabledNeverInterleavesNotificationIds(
    _OnFreshSchema, NonInterleavingNotificationIDsBaseCase
):
    enable_db_functions = True
