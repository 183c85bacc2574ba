"""A command during a real PostgreSQL outage: a clear error, then a safe retry."""

from __future__ import annotations

import subprocess
import time

import pytest

from cqrskit import CommandBus, ServiceUnavailable, Settings
from examples.shop import PlaceOrder, ShopApp, handlers
from tests.integration.conftest import REPO_ROOT

POSTGRES = ["bash", str(REPO_ROOT / "scripts" / "postgres.sh")]
ORDER = PlaceOrder(customer_id="ada", lines=[{"sku": "tea", "quantity": 1, "unit_price": "2.00"}])


def test_an_outage_is_named_and_a_keyed_retry_appends_once(schema_settings: Settings) -> None:
    settings = schema_settings.model_copy(update={"connect_timeout": 2})
    with ShopApp(settings) as app:
        bus = CommandBus(app, handlers)
        bus.dispatch(ORDER)
        subprocess.run([*POSTGRES, "stop"], check=True, timeout=120)
        try:
            with pytest.raises(ServiceUnavailable) as caught:
                bus.dispatch(ORDER, idempotency_key="during-outage")
            assert settings.postgres_address() in str(caught.value)
            assert "CQRSKIT_POSTGRES_DSN" in str(caught.value)
        finally:
            subprocess.run([*POSTGRES, "start"], check=True, timeout=120)

        # What a client does with a transient error: retry with the same key.
        deadline = time.monotonic() + 60
        while True:
            try:
                result = bus.dispatch(ORDER, idempotency_key="during-outage")
                break
            except ServiceUnavailable:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)  # a client's back-off between retries, not a wait on state
        again = bus.dispatch(ORDER, idempotency_key="during-outage")
        assert again.replayed
        assert again.position == result.position
        assert app.recorder.max_notification_id() == 2
