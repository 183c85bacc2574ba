"""Prometheus metrics of the relay and the projection workers.

Metric objects live in the process's default registry, labelled by
application or projection, so that one endpoint serves every relay or
worker thread of a process. Names follow Prometheus conventions: counters
end in ``_total`` when exposed, durations are in seconds.
"""

from __future__ import annotations

import logging
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    make_wsgi_app,
)

from cqrskit.errors import ConfigurationError

__all__ = [
    "BREAKER_STATES",
    "LATENCY_BUCKETS",
    "PROJECTION_STATES",
    "RELAY_STATES",
    "projection_applied",
    "projection_batch_events",
    "projection_dead_letters",
    "projection_errors",
    "projection_es_seconds",
    "projection_lag_events",
    "projection_lag_seconds",
    "projection_state",
    "query_breaker_state",
    "query_in_flight",
    "query_refused",
    "readiness",
    "relay_errors",
    "relay_kafka_ack_seconds",
    "relay_lag_events",
    "relay_lag_seconds",
    "relay_page_events",
    "relay_published",
    "relay_state",
    "serve_metrics",
    "stage_seconds",
]

log = logging.getLogger("cqrskit.metrics")

#: From a millisecond to five minutes: round trips, batches, and lag.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
)  # fmt: skip
_SIZE_BUCKETS = (1, 10, 50, 100, 250, 500, 1000, 2000, 5000, 10000, 50000)

RELAY_STATES = [
    "starting",
    "standby",
    "leading",
    "kafka-unreachable",
    "message-refused",
    "failing",
    "stopped",
]
PROJECTION_STATES = ["starting", "running", "failing", "stopped"]
BREAKER_STATES = ["closed", "open", "half-open"]

# -- the relay -----------------------------------------------------------------------

relay_published = Counter(
    "cqrskit_relay_events_published", "Events the broker acknowledged.", ["application"]
)
relay_page_events = Histogram(
    "cqrskit_relay_page_events",
    "Events per outbox page produced.",
    ["application"],
    buckets=_SIZE_BUCKETS,
)
relay_kafka_ack_seconds = Histogram(
    "cqrskit_relay_kafka_ack_seconds",
    "From producing a page to the broker acknowledging all of it.",
    ["application"],
    buckets=LATENCY_BUCKETS,
)
relay_lag_events = Gauge(
    "cqrskit_relay_lag_events", "Stored events not yet acknowledged by Kafka.", ["application"]
)
relay_lag_seconds = Gauge(
    "cqrskit_relay_lag_seconds",
    "Age of the oldest stored event not yet acknowledged (0 when caught up).",
    ["application"],
)
relay_errors = Counter(
    "cqrskit_relay_errors", "Errors the relay backed off from, by kind.", ["application", "kind"]
)
relay_state = Enum(
    "cqrskit_relay_state", "What the relay is doing.", ["application"], states=RELAY_STATES
)

# -- the projection workers --------------------------------------------------------------

projection_applied = Counter(
    "cqrskit_projection_events_applied",
    "Events applied (or skipped as already applied) and committed.",
    ["projection"],
)
projection_batch_events = Histogram(
    "cqrskit_projection_batch_events",
    "Kafka messages per batch.",
    ["projection"],
    buckets=_SIZE_BUCKETS,
)
projection_lag_events = Gauge(
    "cqrskit_projection_lag_events",
    "Messages on the assigned partitions not yet consumed.",
    ["projection"],
)
projection_lag_seconds = Gauge(
    "cqrskit_projection_lag_seconds",
    "Age of the last applied event when it was applied (0 when idle and caught up).",
    ["projection"],
)
projection_errors = Counter(
    "cqrskit_projection_errors",
    "Errors a worker retried, by kind.",
    ["projection", "kind"],
)
projection_dead_letters = Counter(
    "cqrskit_projection_dead_letters", "Events sent to the dead-letter topic.", ["projection"]
)
projection_es_seconds = Histogram(
    "cqrskit_projection_elasticsearch_seconds",
    "Elasticsearch round trips of a worker, by operation.",
    ["projection", "operation"],
    buckets=LATENCY_BUCKETS,
)
projection_state = Enum(
    "cqrskit_projection_state",
    "What the worker is doing.",
    ["projection"],
    states=PROJECTION_STATES,
)

# -- the pipeline's stages -----------------------------------------------------------------

stage_seconds = Histogram(
    "cqrskit_stage_seconds",
    "Latency of one stage of the pipeline for one event, per projection: "
    "append_to_publish, publish_to_applied, applied_to_searchable.",
    ["projection", "stage"],
    buckets=LATENCY_BUCKETS,
)


#: The states in which a relay or a worker does its job: the process is ready.
READY_STATES = {
    "cqrskit_relay_state": {"leading", "standby"},
    "cqrskit_projection_state": {"running"},
}


def readiness(registry: CollectorRegistry = REGISTRY) -> tuple[bool, str]:
    """Whether every relay and worker of the process is doing its job, and what each does.

    Ready when there is at least one, and each relay leads or stands by and
    each worker runs; the text names each one's state.
    """
    states: list[tuple[str, str, str]] = []
    for family in registry.collect():
        wanted = READY_STATES.get(family.name)
        if wanted is None:
            continue
        for sample in family.samples:
            if sample.value == 1:
                who = sample.labels.get("application") or sample.labels.get("projection", "?")
                states.append((family.name, who, sample.labels[family.name]))
    if not states:
        return False, "no relay or worker has started yet"
    ready = all(state in READY_STATES[name] for name, _, state in states)
    return ready, ", ".join(f"{who}: {state}" for _, who, state in sorted(states))


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Probes every few seconds are not log lines."""


def _with_probes(metrics: Any, registry: CollectorRegistry) -> Any:  # noqa: ANN401
    """``/healthz`` (the process answers), ``/readyz`` (it does its job), then the metrics."""

    def app(environ: dict[str, Any], start_response: Any) -> list[bytes]:  # noqa: ANN401
        path = environ.get("PATH_INFO", "")
        if path in ("/healthz", "/readyz"):
            ready, text = (True, "ok") if path == "/healthz" else readiness(registry)
            status = "200 OK" if ready else "503 Service Unavailable"
            body = f"{text}\n".encode()
            start_response(
                status, [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))]
            )
            return [body]
        result: list[bytes] = metrics(environ, start_response)
        return result

    return app


def serve_metrics(
    port: int, address: str = "0.0.0.0", registry: CollectorRegistry = REGISTRY
) -> int:
    """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``address:port`` from a daemon
    thread; return the port.

    Port 0 picks a free port (logged, and returned). ``/readyz`` answers 503
    until every relay and worker of the process does its job (see
    :func:`readiness`), with each one's state in the body.

    Raises:
        ConfigurationError: the port cannot be bound (taken, or not allowed).
    """
    app = _with_probes(make_wsgi_app(registry), registry)
    try:
        server = make_server(address, port, app, _Server, handler_class=_Quiet)
    except OSError as exc:
        raise ConfigurationError("CQRSKIT_METRICS_PORT", port, f"cannot listen: {exc}") from exc
    threading.Thread(target=server.serve_forever, name="cqrskit-metrics", daemon=True).start()
    bound = int(server.server_port)
    log.info("metrics at http://%s:%d/metrics (probes: /healthz, /readyz)", address, bound)
    return bound


# -- the query side ------------------------------------------------------------------

query_breaker_state = Enum(
    "cqrskit_query_breaker_state",
    "The state of a read model's circuit breaker on the query side.",
    ["view"],
    states=BREAKER_STATES,
)
query_in_flight = Gauge(
    "cqrskit_query_in_flight",
    "Reads of a read model in progress (kind=read) and read-your-writes waits (kind=wait).",
    ["view", "kind"],
)
query_refused = Counter(
    "cqrskit_query_refused",
    "Reads refused at once: the breaker open (reason=open) or a limit reached (read, wait).",
    ["view", "reason"],
)
