"""OpenTelemetry spans from command to applied document (the ``[otel]`` extra).

Tracing is on when ``opentelemetry`` is installed and the process has set a
tracer provider (the SDK, an exporter): a command handled inside
:func:`command_span` records the span's ``traceparent`` in its events'
metadata; the relay copies it into the Kafka headers; the worker applies
the event and :func:`record_apply_spans` records a span, a child of
that same trace. Without a
provider every function here is a cheap no-op.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from cqrskit.envelope import Envelope

__all__ = ["command_span", "record_apply_spans", "tracing_enabled"]

try:  # the optional extra
    from opentelemetry import trace
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
except ImportError:  # pragma: no cover - exercised where the extra is missing
    trace = None  # type: ignore[assignment]
    TraceContextTextMapPropagator = None  # type: ignore[assignment,misc]

_TRACER_NAME = "cqrskit"


def tracing_enabled() -> bool:
    """True when OpenTelemetry is installed and a real tracer provider is set."""
    if trace is None:
        return False
    provider = trace.get_tracer_provider()
    return type(provider).__name__ not in ("ProxyTracerProvider", "NoOpTracerProvider")


@contextmanager
def command_span(command_type: str, traceparent: str | None = None) -> Iterator[str | None]:
    """A span around handling one command; yields the traceparent to store in its events.

    ``traceparent`` (from the caller, e.g. an HTTP request) becomes the
    span's parent. Without tracing, yields ``traceparent`` unchanged.
    """
    if not tracing_enabled():
        yield traceparent
        return
    tracer = trace.get_tracer(_TRACER_NAME)
    parent = _context_of(traceparent)
    with tracer.start_as_current_span(
        f"command {command_type}",
        context=parent,
        kind=trace.SpanKind.PRODUCER,
        attributes={"cqrskit.command": command_type},
    ):
        carrier: dict[str, str] = {}
        TraceContextTextMapPropagator().inject(carrier)
        yield carrier.get("traceparent", traceparent)


def _context_of(traceparent: str | None) -> Context | None:
    if not traceparent:
        return None
    return TraceContextTextMapPropagator().extract({"traceparent": traceparent})


def record_apply_spans(
    projection: str, envelopes: Sequence[Envelope], started_ns: int, ended_ns: int
) -> None:
    """One span per applied event that carries a trace, timed by the batch that applied it.

    Each span is a child of the span that appended the event (its
    ``traceparent``), so one trace runs from the command to the document.
    """
    if not tracing_enabled():
        return
    tracer = trace.get_tracer(_TRACER_NAME)
    for envelope in envelopes:
        traceparent = envelope.metadata.traceparent
        if not traceparent:
            continue
        span = tracer.start_span(
            f"apply {projection} {envelope.event_type}",
            context=_context_of(traceparent),
            kind=trace.SpanKind.CONSUMER,
            start_time=started_ns,
            attributes={
                "cqrskit.projection": projection,
                "cqrskit.event_type": envelope.event_type,
                "cqrskit.event_id": str(envelope.event_id),
                "cqrskit.position": envelope.position,
                "cqrskit.aggregate_id": str(envelope.aggregate_id),
            },
        )
        span.end(end_time=ended_ns)
