"""The metrics port's probes: /healthz while the process answers, /readyz while it does its job."""

from __future__ import annotations

import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry, Enum

from cqrskit.observability._metrics import PROJECTION_STATES, RELAY_STATES, serve_metrics


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def test_ready_only_while_every_relay_and_worker_does_its_job() -> None:
    registry = CollectorRegistry()
    relay = Enum("cqrskit_relay_state", "", ["application"], states=RELAY_STATES, registry=registry)
    worker = Enum(
        "cqrskit_projection_state", "", ["projection"], states=PROJECTION_STATES, registry=registry
    )
    port = serve_metrics(0, "127.0.0.1", registry)
    assert get(port, "/healthz") == (200, "ok\n")
    assert get(port, "/readyz") == (503, "no relay or worker has started yet\n")
    relay.labels("shop").state("leading")
    worker.labels("orders").state("running")
    assert get(port, "/readyz") == (200, "orders: running, shop: leading\n")
    relay.labels("shop").state("kafka-unreachable")
    status, text = get(port, "/readyz")
    assert (status, text) == (503, "orders: running, shop: kafka-unreachable\n")
    assert get(port, "/healthz")[0] == 200  # alive, though not ready
    status, metrics = get(port, "/metrics")
    assert status == 200
    assert (
        'cqrskit_relay_state{application="shop",cqrskit_relay_state="kafka-unreachable"} 1.0'
        in (metrics)
    )
