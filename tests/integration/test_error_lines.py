"""Errors a new user meets first: one line naming the cause and the setting, no traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from urllib.parse import urlsplit, urlunsplit

from cqrskit import Settings
from tests.integration.conftest import REPO_ROOT


def cqrskit(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cqrskit", *args],
        env={**os.environ, "CQRSKIT_APP": "examples.shop:ShopApp", **env},
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_a_wrong_postgres_password_is_named_as_such(settings: Settings, postgres_up: None) -> None:
    parts = urlsplit(settings.postgres_dsn)
    user = parts.username or "cqrskit"
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    wrong = urlunsplit(parts._replace(netloc=f"{user}:not-the-password@{host}{port}"))
    done = cqrskit("db", "init", CQRSKIT_POSTGRES_DSN=wrong)
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "password authentication failed" in lines[0]
    assert "CQRSKIT_POSTGRES_DSN" in lines[0]
    assert "not-the-password" not in done.stderr  # the secret is never echoed
    assert "Traceback" not in done.stderr


def test_a_misspelt_variable_is_one_line_naming_the_setting_meant() -> None:
    misspelt = cqrskit("relay", "status", CQRSKIT_RELAY_PAGESIZE="5")
    assert misspelt.returncode != 0
    assert misspelt.stderr.strip().splitlines() == [
        "Error: CQRSKIT_RELAY_PAGESIZE='5' is invalid: no such setting; "
        "did you mean CQRSKIT_RELAY_PAGE_SIZE?"
    ]
