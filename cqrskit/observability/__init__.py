"""Seeing where an event is and how late: metrics, per-stage latency, traces, logs.

- :mod:`~cqrskit.observability._metrics`: Prometheus metrics of the relay and
  the projection workers, served over HTTP by :func:`serve_metrics`;
- :mod:`~cqrskit.observability._stages`: the latency of each stage of the
  pipeline (append → publish → applied → searchable), as histograms and as
  recent samples that ``cqrskit status`` summarises;
- :mod:`~cqrskit.observability._tracing`: OpenTelemetry spans from the
  command to the applied document (the ``[otel]`` extra);
- :mod:`~cqrskit.observability._logging`: JSON lines or human text.
"""

from cqrskit.observability._instance import instance_name
from cqrskit.observability._logging import configure_logging
from cqrskit.observability._metrics import serve_metrics
from cqrskit.observability._stages import STAGES, StageSamples, quantile
from cqrskit.observability._tracing import command_span, record_apply_spans, tracing_enabled

__all__ = [
    "STAGES",
    "StageSamples",
    "command_span",
    "configure_logging",
    "instance_name",
    "quantile",
    "record_apply_spans",
    "serve_metrics",
    "tracing_enabled",
]
