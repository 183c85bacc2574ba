"""One command through relay and worker with OpenTelemetry's SDK, in a process of its own.

A tracer provider is global to a process and cannot be unset, so the trace
test runs this module as a subprocess (settings from the environment) and
reads the spans it prints as JSON.
"""

from __future__ import annotations

import json
import threading
import time

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cqrskit import CommandBus, Settings
from cqrskit.runtime import Runtime
from examples.shop import RegisterItem, ShopApp, handlers
from projections import StockLevels

APPLY = "apply stock_levels InventoryItem.Registered"


def main() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    settings = Settings.load()
    with ShopApp(settings) as app:
        result = CommandBus(app, handlers).dispatch(RegisterItem(sku="tea", name="tea", quantity=3))
    relay = Runtime(settings).relay("shop")
    worker = Runtime(settings).worker("shop", StockLevels())
    threads = [threading.Thread(target=x.run, daemon=True) for x in (relay, worker)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 90
    try:
        while time.monotonic() < deadline:
            if any(s.name == APPLY for s in exporter.get_finished_spans()):
                break
            time.sleep(0.05)
    finally:
        relay.stop()
        worker.stop()
        for thread in threads:
            thread.join(timeout=60)
    spans = [
        {
            "name": s.name,
            "trace_id": f"{s.context.trace_id:032x}",
            "span_id": f"{s.context.span_id:016x}",
            "parent_id": f"{s.parent.span_id:016x}" if s.parent else None,
            "aggregate_id": (s.attributes or {}).get("cqrskit.aggregate_id"),
        }
        for s in exporter.get_finished_spans()
        if s.context is not None
    ]
    print(json.dumps({"aggregate_id": str(result.aggregate_id), "spans": spans}))


if __name__ == "__main__":
    main()
