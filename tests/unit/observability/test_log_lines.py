"""Log lines: the level setting, and times in ISO 8601 with their offset."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator

import pytest

from cqrskit import Settings
from cqrskit.observability import configure_logging

ISO_WITH_OFFSET = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d")


@pytest.fixture(autouse=True)
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_the_level_setting_drops_what_is_below_it(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CQRSKIT_LOG_LEVEL", "warning")
    configure_logging("text", Settings.load().log_level)
    logging.getLogger("cqrskit.test").info("not shown")
    logging.getLogger("cqrskit.test").warning("shown")
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert lines[0].endswith("WARNING cqrskit.test: shown")
    assert ISO_WITH_OFFSET.match(lines[0]), lines[0]


def test_a_misspelt_level_is_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CQRSKIT_LOG_LEVEL", "loud")
    with pytest.raises(Exception, match="CQRSKIT_LOG_LEVEL"):
        Settings.load()


def test_json_lines_carry_the_time_with_its_offset(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "debug")
    logging.getLogger("cqrskit.test").debug("hello", extra={"projection": "orders"})
    line = json.loads(capsys.readouterr().err.splitlines()[-1])
    assert ISO_WITH_OFFSET.fullmatch(line["time"]), line
    assert (line["level"], line["message"], line["projection"]) == ("DEBUG", "hello", "orders")
