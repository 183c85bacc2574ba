"""Log formats, stage quantiles and tracing without a provider."""

from __future__ import annotations

import io
import json
import logging

import pytest

from cqrskit.observability import StageSamples, command_span, configure_logging, quantile


def test_quantiles_are_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert quantile(values, 0.5) == 50
    assert quantile(values, 0.99) == 99
    assert quantile([], 0.5) is None


def test_stage_samples_keep_the_most_recent() -> None:
    samples = StageSamples(keep=3)
    samples.add("publish_to_applied", [1.0, 2.0, 3.0, 4.0])
    assert samples.snapshot()["publish_to_applied"] == [2.0, 3.0, 4.0]
    assert samples.snapshot()["append_to_publish"] == []


def _logged(fmt: str, monkeypatch: pytest.MonkeyPatch) -> str:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure_logging(fmt)  # type: ignore[arg-type]
        logging.getLogger("cqrskit.projections").warning(
            "event dead-lettered",
            extra={"projection": "orders", "position": 42, "event_id": "e1"},
        )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    return stream.getvalue()


def test_json_lines_carry_the_event_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    line = json.loads(_logged("json", monkeypatch).splitlines()[-1])
    assert line["message"] == "event dead-lettered"
    assert line["level"] == "WARNING"
    assert line["logger"] == "cqrskit.projections"
    assert (line["projection"], line["position"], line["event_id"]) == ("orders", 42, "e1")
    assert "time" in line


def test_text_lines_name_the_event_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    line = _logged("text", monkeypatch).splitlines()[-1]
    assert "WARNING cqrskit.projections: event dead-lettered" in line
    assert "[event_id=e1 projection=orders position=42]" in line


def test_without_a_tracer_provider_the_caller_traceparent_passes_through() -> None:
    given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with command_span("PlaceOrder", given) as traceparent:
        assert traceparent == given
